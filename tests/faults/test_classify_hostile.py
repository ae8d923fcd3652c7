"""Issue 23: an oversize image, a pipe or a link to /dev/zero in a classify or compare folder is one bad image.

The good images keep their results, the bad ones are named with their reason, and
the exit status is EXIT_PARTIAL; a closed stdout (``| head -1``) ends quietly.
"""
from __future__ import annotations

import os
import shlex
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from faultkit import CALIB, CLI, REPO, vggedge
from vggedge.errors import EXIT_PARTIAL


def png_declaring(width: int, height: int) -> bytes:
    png = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for photo in sorted(CALIB.glob("*.jpg"))[:3]:
        shutil.copy(photo, folder / photo.name)
    (folder / "b_huge.png").write_bytes(png_declaring(40000, 40000))
    os.mkfifo(folder / "c_pipe.jpg")
    os.symlink("/dev/zero", folder / "d_zero.jpg")
    return folder


@pytest.mark.parametrize("command", ["classify", "compare"])
def test_bad_files_in_a_folder_keep_the_good_results(top_model: Path, hostile_folder: Path, command: str) -> None:
    args = [command, "--model", top_model, hostile_folder] if command == "classify" else \
        [command, "--images", hostile_folder, f"a={top_model}", f"b={top_model}"]
    result = vggedge(*args, timeout=120)
    assert result.returncode == EXIT_PARTIAL, (result.stdout[-2000:], result.stderr)
    assert "40000x40000" in result.stderr and "c_pipe.jpg" in result.stderr and "d_zero.jpg" in result.stderr
    assert "Traceback" not in result.stderr
    if command == "classify":
        for photo in sorted(CALIB.glob("*.jpg"))[:3]:
            assert photo.name in result.stdout
    else:
        assert "3 images" in result.stdout + result.stderr or "3 image" in result.stdout + result.stderr


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_a_closed_stdout_ends_quietly(top_model: Path, tmp_path: Path, json_output: bool) -> None:
    """``vggedge classify ... | head -1``: status 0 and nothing on stderr but the INFO lines, whether the pipe
    closes while results stream (text) or before the one final print and the interpreter's last flush (json)."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(240):  # the JSON report (about 180 KB) is far larger than a pipe's buffer (64 KB)
        shutil.copy(sorted(CALIB.glob("*.jpg"))[i % 12], folder / f"{i:03d}.jpg")
    command = shlex.join([*CLI, "classify", "--model", str(top_model), str(folder), "--top-k", "10",
                          *(["--json"] if json_output else [])])
    result = subprocess.run(["bash", "-c", f"{command} | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if not line.startswith("vggedge: INFO:")] == [], \
        result.stderr
