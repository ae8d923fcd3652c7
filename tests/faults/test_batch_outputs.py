"""Issue 23 through the command line: every name survives every output format; one writer, one model per output.

Each case asserts the exit status, a one-line message naming the file or option,
the rows kept, and that no lock or temporary is left behind.
"""
from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import stat
import threading
from pathlib import Path
from typing import Iterator

import pytest

from faultkit import start, vggedge
from vggedge.apps.batch.readers import read_rows
from vggedge.apps.batch.writers import errors_path_for
from vggedge.errors import EXIT_ERROR, EXIT_PARTIAL

#: names the OS allows that broke outputs: bytes that are not UTF-8, a newline, a form feed, U+2028, a comma, a quote
ODD_NAMES = [b"latin1-\xe9t\xe9.jpg", b"line\nbreak.jpg", b"form\x0cfeed.jpg", "para\u2028sep.jpg".encode(),
             b'comma,"quote".jpg', b"plain.jpg"]


def odd_folder(tmp_path: Path, photos: Path) -> tuple[Path, list[str]]:
    folder = tmp_path / "odd"
    os.mkdir(folder)
    sources = sorted(photos.glob("*.jpg"))
    for raw, source in zip(ODD_NAMES, sources):
        shutil.copy(source, os.path.join(os.fsencode(folder), raw))
    return folder, sorted(os.fsdecode(os.path.join(os.fsencode(folder), raw)) for raw in ODD_NAMES)


def leftovers(folder: Path) -> list[str]:
    """Locks, temporaries and part folders beside the outputs."""
    return [p.name for p in folder.iterdir() if p.name.endswith((".lock", ".tmp", ".parts"))]


def batch(*args, timeout: float = 120):
    return vggedge("batch", "--no-progress", *args, timeout=timeout)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".npy"])
def test_every_name_round_trips_through_every_format(model_copy: Path, photos: Path, tmp_path: Path,
                                                     suffix: str) -> None:
    folder, names = odd_folder(tmp_path, photos)
    out = tmp_path / f"out{suffix}"
    result = batch(folder, "--out", out, "--model", model_copy, "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    written = read_rows(out)
    assert sorted(r["path"] for r in written) == names
    for row in written:  # each vector belongs to its own file: compare with a run on that file alone
        assert os.path.exists(os.fsencode(row["path"]))
    again = batch(folder, "--out", out, "--model", model_copy, "--resume")
    assert again.returncode == 0, again.stderr
    assert sorted(r["path"] for r in read_rows(out)) == names  # a finished job resumed appends nothing
    assert leftovers(tmp_path) == []


def test_npy_rows_belong_to_their_names(model_copy: Path, photos: Path, tmp_path: Path) -> None:
    folder, names = odd_folder(tmp_path, photos)
    out = tmp_path / "all.npy"
    assert batch(folder, "--out", out, "--model", model_copy).returncode == 0
    rows = {r["path"]: r["features"] for r in read_rows(out)}
    single = tmp_path / "one.jsonl"
    name = next(n for n in names if "\n" in n)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(os.fsencode(name), one / "x.jpg")
    assert batch(one, "--out", single, "--model", model_copy).returncode == 0
    [alone] = read_rows(single)
    assert rows[name] == pytest.approx(alone["features"], abs=1e-4)


def test_resume_with_another_model_or_features_is_refused(model_copy: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert batch(photos, "--out", out, "--model", model_copy).returncode == 0
    before = out.read_bytes()
    other = tmp_path / "other" / "m.onnx"  # the same file name, other weights
    other.parent.mkdir()
    exported = vggedge("export", "--weights", "random:5", "--input-shape", "32,32,3", "--no-include-top",
                       "--pooling", "avg", "--out", other)
    assert exported.returncode == 0, exported.stderr
    result = batch(photos, "--out", out, "--model", other, "--resume")
    assert result.returncode == EXIT_ERROR and "model_sha256" in result.stderr and str(out) in result.stderr
    shown = [line for line in result.stderr.splitlines() if not line.startswith("vggedge: INFO:")]
    assert len(shown) == 1 and shown[0].startswith("vggedge: error:") and "Traceback" not in result.stderr
    assert out.read_bytes() == before


def test_two_jobs_on_one_output_the_second_refuses(model_copy: Path, photos: Path, tmp_path: Path,
                                                   slow_server: str) -> None:
    import signal
    import time

    big = tmp_path / "many"
    big.mkdir()
    for i in range(40):
        for photo in sorted(photos.glob("*.jpg")):
            os.link(photo, big / f"{i:02d}_{photo.name}")
    out = tmp_path / "out.jsonl"
    # a URL sending a byte every 0.3 s keeps the first job (and its lock) alive however fast the rest goes
    first = start(["batch", big, f"{slow_server}/drip.jpg", "--out", out, "--model", model_copy, "--no-progress",
                   "--batch-size", "4", "--read-timeout", "30"])
    try:
        lock = out.with_name(out.name + ".lock")
        for _ in range(600):
            if lock.exists() and out.exists():
                break
            time.sleep(0.05)
        second = batch(big, "--out", out, "--model", model_copy, "--resume")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert second.returncode == EXIT_ERROR and "being written by another job" in second.stderr, second.stderr
    assert first.returncode == 130
    assert not lock.exists()
    rows = read_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) <= 480  # one writer: no row twice
    third = batch(big, "--out", out, "--model", model_copy, "--resume")
    assert third.returncode == 0, third.stderr
    rows = read_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == 480
    assert not lock.exists()


@pytest.mark.parametrize("line", [b"{not json\n", b"[1, 2]\n", b'{"kind": "x"}\n'])
def test_resume_over_a_corrupt_line_is_a_one_line_error(model_copy: Path, photos: Path, tmp_path: Path,
                                                        line: bytes) -> None:
    out = tmp_path / "out.jsonl"
    assert batch(photos, "--out", out, "--model", model_copy).returncode == 0
    with open(out, "ab") as handle:
        handle.write(line)
    result = batch(photos, "--out", out, "--model", model_copy, "--resume")
    assert result.returncode == EXIT_ERROR and "line 13 is not a result row" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_outputs_are_one_line_errors(model_copy: Path, photos: Path, tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.jsonl").mkdir()
    cases = {locked / "out.jsonl": "cannot write", tmp_path / "file" / "out.jsonl": "cannot create its folder",
             tmp_path / "dir.jsonl": "is a folder"}
    try:
        for out, message in cases.items():
            if message == "cannot write" and os.access(locked, os.W_OK):
                continue  # running as root: permissions do not stop writes
            result = batch(photos, "--out", out, "--model", model_copy)
            assert result.returncode == EXIT_ERROR and message in result.stderr and str(out) in result.stderr, \
                result.stderr
            assert "Traceback" not in result.stderr
    finally:
        locked.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("option,value", [("--batch-size", "1000000000"), ("--read-timeout", "nan"),
                                          ("--read-timeout", "-1"), ("--read-timeout", "inf"),
                                          ("--max-pixels", "0"), ("--workers", "-2")])
def test_absurd_numbers_are_refused(model_copy: Path, photos: Path, tmp_path: Path, option: str,
                                    value: str) -> None:
    out = tmp_path / "out.jsonl"
    result = batch(photos, "--out", out, "--model", model_copy, option, value)
    assert result.returncode == EXIT_ERROR, result.stderr
    assert option.lstrip("-").replace("-", "_") in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_an_unknown_output_name_in_the_sidecar_is_refused_before_work(model_copy: Path, photos: Path,
                                                                       tmp_path: Path) -> None:
    import json

    sidecar = model_copy.with_name("m.spec.json")
    data = json.loads(sidecar.read_text())
    data["output_name"] = "no_such_output"
    sidecar.write_text(json.dumps(data))
    out = tmp_path / "out.jsonl"
    result = batch(photos, "--out", out, "--model", model_copy)
    assert result.returncode == EXIT_ERROR and "'output_name' is 'no_such_output'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not out.with_name("out.jsonl.errors.jsonl").exists() and leftovers(tmp_path) == []


def test_a_full_disk_is_a_one_line_error_and_resume_finishes(model_copy: Path, photos: Path, tmp_path: Path) -> None:
    """``ulimit -f``: writes past the limit fail with EFBIG, as on a full disk."""
    import resource
    import subprocess

    from faultkit import CLI, REPO

    out = tmp_path / "out.jsonl"

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run([*CLI, "batch", "--no-progress", str(photos), "--out", str(out), "--model",
                           str(model_copy), "--batch-size", "2"], capture_output=True, text=True, timeout=120,
                          cwd=REPO, preexec_fn=small_files)
    assert proc.returncode == EXIT_ERROR, proc.stderr
    assert f"output {out}: cannot write" in proc.stderr and "--resume" in proc.stderr
    assert "Traceback" not in proc.stderr
    kept = len(read_rows(out))
    assert 0 < kept < 12
    again = batch(photos, "--out", out, "--model", model_copy, "--resume")
    assert again.returncode == 0, again.stderr
    assert sorted(r["path"] for r in read_rows(out)) == sorted(str(p) for p in photos.glob("*.jpg"))


class _Photos(http.server.BaseHTTPRequestHandler):
    """Serves ``folder/NAME`` at ``/NAME`` to requests carrying Basic auth ``user:secret`` (401 otherwise);
    every path asked for is recorded in ``served``."""

    folder: Path
    served: list[str]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.served.append(self.path)
        path = self.folder / self.path.lstrip("/")
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"user:secret").decode():
            self.send_error(401)
        elif not path.is_file():
            self.send_error(404)
        else:
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


@pytest.fixture
def photo_server(photos: Path) -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server of the photos behind a password: (port, paths requested)."""
    served: list[str] = []
    handler = type("Handler", (_Photos,), {"folder": photos, "served": served})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], served
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".npy"])
def test_url_credentials_are_never_stored_and_resume_still_skips(model_copy: Path, photos: Path, tmp_path: Path,
                                                                 photo_server: tuple[int, list[str]],
                                                                 suffix: str) -> None:
    """Rows and error rows of URL inputs are keyed without the password, in every format and every file beside
    the output; a --resume matches the inputs (read with their password) to those keys and fetches nothing."""
    port, served = photo_server
    names = sorted(p.name for p in photos.glob("*.jpg"))[:3] + ["missing.jpg"]
    urls = [f"http://user:secret@127.0.0.1:{port}/{name}" for name in names]
    out = tmp_path / "out" / f"r{suffix}"
    first = batch(*urls, "--out", out, "--model", model_copy, "--json")
    assert first.returncode == EXIT_PARTIAL, first.stderr
    assert sorted(served) == sorted(f"/{name}" for name in names)  # read with the password: authorised
    written = {p.name: p.read_bytes() for p in out.parent.iterdir() if p.is_file()}
    assert f"r{suffix}" in written and f"r{suffix}.errors.jsonl" in written
    assert [name for name, data in written.items() if b"secret" in data] == []
    assert "secret" not in first.stdout + first.stderr
    shown = f"http://user:***@127.0.0.1:{port}/"
    assert sorted(r["path"] for r in read_rows(out)) == [shown + name for name in names[:3]]
    assert [r["path"] for r in read_rows(errors_path_for(out))] == [shown + "missing.jpg"]
    served.clear()
    again = batch(*urls, "--out", out, "--model", model_copy, "--json", "--resume")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["images"], summary["failed"], summary["skipped"]) == (0, 0, 4) and served == []
    assert len(read_rows(out)) == 3 and leftovers(out.parent) == []
