"""Issue 23 through the command line: stream's numbers, outputs and slideshows.

Every number is checked before the model loads (one line naming the option, exit 1);
an output that cannot be written is an error before any work; one oversize image
in a slideshow is skipped and counted while the images after it are classified.
An output that fails while the stream runs stops it: a closed stdout (``| head``)
quietly with status 0, any other failure with one line naming it and status 1.
"""
from __future__ import annotations

import resource
import shlex
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from faultkit import CALIB, CLI, REPO, vggedge
from vggedge.errors import EXIT_ERROR


@pytest.mark.parametrize("option,value", [
    ("--max-frames", "0"), ("--max-frames", "-5"), ("--read-timeout", "-1"), ("--read-timeout", "nan"),
    ("--read-timeout", "inf"), ("--input-rate", "-5"), ("--input-rate", "nan"), ("--input-width", "0"),
    ("--input-height", "-3"), ("--input-width", "1000000"), ("--every", "0"), ("--top-k", "0"),
    ("--smoothing", "nan"), ("--smoothing", "-1"), ("--batch-size", "1000000000")])
def test_every_number_is_checked(tmp_path: Path, option: str, value: str) -> None:
    result = vggedge("stream", str(CALIB), "--model", tmp_path / "never-loaded.onnx", option, value, timeout=60)
    assert result.returncode == EXIT_ERROR, result.stderr
    assert option in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_unwritable_outputs_fail_before_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.mp4").mkdir()
    for args, option in ((["--output", tmp_path / "dir.mp4"], "--output"),
                         (["--output", tmp_path / "file" / "o.mp4"], "--output"),
                         (["--json", tmp_path / "missing" / "f.jsonl"], "--json"),
                         (["--json", tmp_path / "file" / "f.jsonl"], "--json")):
        result = vggedge("stream", str(CALIB), "--model", tmp_path / "never-loaded.onnx", *args, timeout=60)
        assert result.returncode == EXIT_ERROR and option in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_an_oversize_slide_is_skipped_and_the_rest_classified(top_model: Path, tmp_path: Path) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    photos = sorted(CALIB.glob("*.jpg"))[:3]
    shutil.copy(photos[0], slides / "a.jpg")
    png = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", 30000, 30000)  # declares 900 MP
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    (slides / "b_huge.png").write_bytes(bytes(png))
    shutil.copy(photos[1], slides / "c.jpg")
    shutil.copy(photos[2], slides / "d.jpg")
    result = vggedge("stream", slides, "--model", top_model, "--json", "-", timeout=120)
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("{")]) == 3
    assert "30000x30000" in result.stderr and "1 corrupt" in result.stderr.replace("corrupt frames", "corrupt")


def problems(stderr: str) -> list[str]:
    """Lines of stderr other than the INFO log (model selection): errors, summaries, tracebacks."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("vggedge: INFO:")]


@pytest.mark.parametrize("output", [["--json", "-"], []], ids=["json", "text"])
def test_a_closed_stdout_ends_the_stream_quietly(top_model: Path, calib_clip: Path, output: list[str]) -> None:
    """``vggedge stream clip --loop | head -c 200``: a stream that never ends by itself stops when head exits,
    with status 0 and nothing on stderr besides the model's INFO lines (no summary, no BrokenPipeError)."""
    command = shlex.join([*CLI, "stream", str(calib_clip), "--model", str(top_model), "--loop", *output])
    result = subprocess.run(["bash", "-c", f"{command} | head -c 200 >/dev/null; exit ${{PIPESTATUS[0]}}"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert problems(result.stderr) == [], result.stderr


def test_a_full_device_stops_the_stream_with_one_line(top_model: Path, calib_clip: Path) -> None:
    result = vggedge("stream", calib_clip, "--model", top_model, "--loop", "--json", "/dev/full", timeout=120)
    assert result.returncode == EXIT_ERROR, result.stderr
    assert problems(result.stderr) == ["vggedge: error: output json:///dev/full: cannot write (No space left on "
                                       "device, ENOSPC); the stream was stopped"], result.stderr


def _file_size_limit(size: int):
    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return setup


def test_a_file_sink_that_fills_up_stops_the_stream_with_one_line(top_model: Path, calib_clip: Path,
                                                                  tmp_path: Path) -> None:
    """A JSON lines file that cannot grow any more (RLIMIT_FSIZE: the disk it is on is full, for this process)
    stops a looping stream with one line naming the file and the OS error."""
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen([*CLI, "stream", str(calib_clip), "--model", str(top_model), "--loop", "--json",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=_file_size_limit(16384))
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_ERROR, stderr
    assert problems(stderr) == [f"vggedge: error: output json://{out}: cannot write (File too large, EFBIG); the "
                                "stream was stopped"], stderr
    assert 0 < out.stat().st_size <= 16384 and stdout == ""
