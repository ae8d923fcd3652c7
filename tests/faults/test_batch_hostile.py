"""Issue 23 through the command line: hostile and broken inputs to ``vggedge batch``.

Every case asserts the exit status, a message or error row naming the file, that
every good image still got its row, and that nothing is left behind. Memory
bombs run under a hard address-space limit (the model's footprint plus 1 GiB);
hang cases under a timeout they must finish well inside.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from faultkit import decode_workers, exited, start, vggedge
from vggedge.errors import EXIT_ERROR, EXIT_PARTIAL

GIB = 2**30
LIMIT_AS = 2 * GIB  # a 3-image job runs in 1.5 GiB (measured); two decoded bombs below need 1.6-2 GiB more
BOMB = 16384  # the largest WebP allows: 268 MP, 0.8-1 GiB decoded


def run_batch(folder: Path, out: Path, model: Path, *extra, timeout: float = 120, **kw):
    return vggedge("batch", folder, "--out", out, "--model", model, "--no-progress", *extra, timeout=timeout, **kw)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def errors_of(out: Path) -> dict[str, dict]:
    return {Path(e["path"]).name: e for e in rows(out.with_name(out.name + ".errors.jsonl"))}


def three_photos(folder: Path, photos: Path) -> list[str]:
    folder.mkdir(exist_ok=True)
    names = sorted(p.name for p in photos.glob("*.jpg"))[:3]
    for name in names:
        shutil.copy(photos / name, folder / name)
    return names


def pil_bytes(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, fmt, **kw)
    return buf.getvalue()


def png_bomb() -> bytes:
    data = bytearray(pil_bytes("PNG"))
    data[16:24] = struct.pack(">II", BOMB, BOMB)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def gif_bomb() -> bytes:
    data = bytearray(pil_bytes("GIF"))
    data[6:10] = struct.pack("<HH", BOMB, BOMB)
    pos = data.index(b"\x2c", 13)
    data[pos + 5:pos + 9] = struct.pack("<HH", BOMB, BOMB)
    return bytes(data)


def webp_bomb() -> bytes:
    data = bytearray(pil_bytes("WEBP", lossless=True))
    bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
    data[21:25] = (bits | (BOMB - 1) | ((BOMB - 1) << 14)).to_bytes(4, "little")
    return bytes(data)


def tiff_bomb() -> bytes:
    data = bytearray(pil_bytes("TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):
            struct.pack_into("<H" if kind == 3 else "<I", data, at + 8, BOMB)
    return bytes(data)


def bmp_bomb() -> bytes:
    data = bytearray(pil_bytes("BMP"))
    data[18:26] = struct.pack("<ii", BOMB, BOMB)
    return bytes(data)


def test_pixel_bombs_of_every_format_are_refused_before_decoding(model_copy: Path, photos: Path,
                                                                 tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good = three_photos(folder, photos)
    bombs = {"bomb.png": png_bomb(), "bomb.gif": gif_bomb(), "bomb.webp": webp_bomb(), "bomb.tiff": tiff_bomb(),
             "bomb.bmp": bmp_bomb()}
    for name, data in bombs.items():
        (folder / name).write_bytes(data)
        (folder / ("x" + name)).write_bytes(data)  # two of each: memory must not grow with their number
    out = tmp_path / "out.jsonl"
    result = run_batch(folder, out, model_copy, "--workers", "2", "--max-pixels", "1000000",
                       address_space=LIMIT_AS)
    assert result.returncode == EXIT_PARTIAL, result.stderr
    assert "MemoryError" not in result.stderr and "Traceback" not in result.stderr
    errors = errors_of(out)
    assert set(errors) == set(bombs) | {"x" + n for n in bombs}
    for name, error in errors.items():
        assert error["kind"] == "too-large" and f"{BOMB}x{BOMB}" in error["reason"] \
            and "--max-pixels" in error["reason"], (name, error)
    assert sorted(Path(r["path"]).name for r in rows(out)) == good


def test_special_files_are_refused_without_opening_them(model_copy: Path, photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good = three_photos(folder, photos)
    os.mkfifo(folder / "pipe.jpg")
    os.mkfifo(folder / "pipe.tar")
    os.symlink("/dev/zero", folder / "zero.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.png"))
    out = tmp_path / "out.jsonl"
    try:
        result = run_batch(folder, out, model_copy, "--workers", "2", timeout=60, address_space=LIMIT_AS)
    finally:
        server.close()
    assert result.returncode == EXIT_PARTIAL, result.stderr
    errors = errors_of(out)
    assert {n: e["kind"] for n, e in errors.items()} == {"pipe.jpg": "unreadable", "pipe.tar": "unreadable",
                                                         "zero.jpg": "unreadable", "sock.png": "unreadable"}
    assert "named pipe" in errors["pipe.jpg"]["reason"] and "device" in errors["zero.jpg"]["reason"]
    assert "socket" in errors["sock.png"]["reason"] and "named pipe" in errors["pipe.tar"]["reason"]
    assert sorted(Path(r["path"]).name for r in rows(out)) == good


def test_a_tar_member_over_max_bytes_is_refused_from_its_header(model_copy: Path, photos: Path,
                                                                tmp_path: Path) -> None:
    shard = tmp_path / "shard.tar.gz"
    with tarfile.open(shard, "w:gz") as tar:
        tar.add(sorted(photos.glob("*.jpg"))[0], arcname="a_good.jpg")
        big = tarfile.TarInfo("b_big.jpg")
        big.size = 8 * 2**20  # zeros: compresses to a few KB
        tar.addfile(big, io.BytesIO(bytes(big.size)))
    out = tmp_path / "out.jsonl"
    result = run_batch(shard, out, model_copy, "--max-bytes", str(2**20), address_space=LIMIT_AS)
    assert result.returncode == EXIT_PARTIAL, result.stderr
    [error] = rows(out.with_name(out.name + ".errors.jsonl"))
    assert error["path"].endswith("::b_big.jpg") and error["kind"] == "too-large"
    assert f"{8 * 2**20} bytes" in error["reason"] and "not read" in error["reason"]
    assert [r["path"].rsplit("::", 1)[1] for r in rows(out)] == ["a_good.jpg"]


def test_slow_and_endless_urls_end_in_error_rows(model_copy: Path, photos: Path, tmp_path: Path,
                                                 slow_server: str) -> None:
    folder = tmp_path / "in"
    good = three_photos(folder, photos)
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    result = vggedge("batch", folder, f"{slow_server}/drip.jpg", f"{slow_server}/big.jpg",
                     f"{slow_server}/huge.jpg", "--out", out, "--model", model_copy, "--no-progress",
                     "--read-timeout", "1", "--max-bytes", str(4 * 2**20), timeout=60, address_space=LIMIT_AS)
    assert time.monotonic() - t0 < 40
    assert result.returncode == EXIT_PARTIAL, result.stderr
    errors = errors_of(out)
    assert errors["drip.jpg"]["kind"] == "unreadable" and "--read-timeout" in errors["drip.jpg"]["reason"]
    assert errors["big.jpg"]["kind"] == "too-large" and errors["huge.jpg"]["kind"] == "too-large"
    assert "Content-Length" in errors["huge.jpg"]["reason"]
    assert sorted(Path(r["path"]).name for r in rows(out)) == good


def test_jpeg_with_data_after_its_end_is_classified(model_copy: Path, photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good = three_photos(folder, photos)
    motion = (folder / good[0]).read_bytes() + b"\0\0\0\x18ftypmp42" + os.urandom(300_000)
    (folder / "motion.jpg").write_bytes(motion)
    out = tmp_path / "out.jsonl"
    result = run_batch(folder, out, model_copy)
    assert result.returncode == 0, result.stderr
    written = {Path(r["path"]).name: r["features"] for r in rows(out)}
    assert sorted(written) == sorted(good + ["motion.jpg"])
    assert written["motion.jpg"] == pytest.approx(written[good[0]], abs=1e-4)


def test_every_file_found_is_accounted_for(model_copy: Path, photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good = three_photos(folder, photos)
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (folder / "notes.md").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0" * 10)
    out = tmp_path / "out.jsonl"
    result = run_batch(folder, out, model_copy, "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(Path(r["path"]).name for r in rows(out)) == sorted(good + ["anim.gif"])
    summary = json.loads(result.stdout)
    assert summary["ignored"] == {"not an image or tar name": 2}


def test_a_list_file_naming_itself_is_one_line_error(model_copy: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("list.txt\n")
    out = tmp_path / "out.jsonl"
    result = run_batch(listing, out, model_copy, timeout=60)
    assert result.returncode == EXIT_ERROR
    assert "includes itself" in result.stderr and "list.txt" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_sigterm_stops_a_job_waiting_on_a_slow_url(model_copy: Path, photos: Path, tmp_path: Path,
                                                   slow_server: str, kind: str) -> None:
    import signal

    from faultkit import interrupt_after

    folder = tmp_path / "in"
    three_photos(folder, photos)
    out = tmp_path / "out.jsonl"
    proc = start(["batch", folder, *[f"{slow_server}/drip{i}.jpg" for i in range(4)], "--out", out,
                  "--model", model_copy, "--no-progress", "--read-timeout", "30", "--workers", "2",
                  "--worker-kind", kind])
    t0 = time.monotonic()
    result = interrupt_after(proc, "CPU variant", 2.0, timeout=60, sig=signal.SIGTERM)
    assert time.monotonic() - t0 < 20, "SIGTERM waited for the slow reads"
    assert result.returncode == 130, result.stderr
    assert not out.with_name(out.name + ".lock").exists()


def test_a_killed_worker_process_is_a_one_line_error(model_copy: Path, photos: Path, tmp_path: Path,
                                                     slow_server: str) -> None:
    import signal

    folder = tmp_path / "in"
    three_photos(folder, photos)
    out = tmp_path / "out.jsonl"
    proc = start(["batch", folder, f"{slow_server}/drip.jpg", "--out", out, "--model", model_copy,
                  "--no-progress", "--read-timeout", "30", "--workers", "1", "--worker-kind", "process"])
    workers = decode_workers(proc)
    killed = 0
    for child in workers:
        try:
            os.kill(child, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    assert killed, "every worker process ended before it could be killed"
    out_text, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_ERROR, err
    assert "decode worker process died" in err and "--resume" in err and "Traceback" not in err
    assert not out.with_name(out.name + ".lock").exists()


def test_worker_processes_end_when_the_job_is_killed(model_copy: Path, photos: Path, tmp_path: Path,
                                                    slow_server: str) -> None:
    """SIGKILL (the OOM killer, kill -9) gives the job no chance to stop its workers: they must see it is gone."""
    import signal

    folder = tmp_path / "in"
    three_photos(folder, photos)
    proc = start(["batch", folder, f"{slow_server}/drip.jpg", "--out", tmp_path / "out.jsonl", "--model",
                  model_copy, "--no-progress", "--read-timeout", "30", "--workers", "2", "--worker-kind", "process"],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = decode_workers(proc)
    proc.kill()
    proc.wait(timeout=30)

    deadline = time.monotonic() + 30
    while not all(exited(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if not exited(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "decode worker processes outlived their killed job"
