"""Issue 23 through the command line: stream's numbers, outputs and slideshows.

Every number is checked before the model loads (one line naming the option, exit 1);
an output that cannot be written is an error before any work; one oversize image
in a slideshow is skipped and counted while the images after it are classified.
"""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from faultkit import CALIB, vggedge
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
