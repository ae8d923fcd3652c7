"""`vggedge export --out` at bad paths, and interrupted exports: a message naming the path, no temporaries."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from faultkit import SMALL, start, strays, tree, vggedge


def test_out_is_a_directory(tmp_path: Path) -> None:
    result = vggedge("export", *SMALL, "--out", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"vggedge: error: {tmp_path}: is a directory; expected the path of the ONNX model to write "
        f"(for example {tmp_path / 'vgg16.onnx'})")
    assert tree(tmp_path) == {}


def test_out_below_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "sub" / "m.onnx"
    result = vggedge("export", *SMALL, "--out", out)
    assert result.returncode == 1
    assert f"vggedge: error: {out}: {blocker} is a file, not a folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(tmp_path) == {"notes.txt": len("a file, not a folder")}


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's /sys, where even root cannot create files")
def test_out_in_an_unwritable_folder_root_included() -> None:
    result = vggedge("export", *SMALL, "--out", "/sys/vggedge-faults.onnx")
    assert result.returncode == 1
    assert "vggedge: error: /sys/vggedge-faults.onnx: folder /sys is not writable" in result.stderr
    assert "expected a writable location for the ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders; covered by the /sys case")
def test_out_in_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = vggedge("export", *SMALL, "--out", folder / "m.onnx")
    finally:
        folder.chmod(0o755)
    assert result.returncode == 1
    assert f"vggedge: error: {folder / 'm.onnx'}: folder {folder} is not writable" in result.stderr
    assert tree(folder) == {}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_while_the_model_is_written_leaves_no_temporary(tmp_path: Path, sig: int) -> None:
    """SIGINT or SIGTERM the moment the temporary file appears: it is removed, and nothing takes the final name."""
    out = tmp_path / "m.onnx"
    proc = start(["export", *SMALL, "--out", out])
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    _, err = proc.communicate(timeout=300)
    if proc.returncode == 0:  # finished between the poll and the signal: then it must be complete
        assert out.is_file() and out.with_name("m.spec.json").is_file()
    else:
        assert proc.returncode == 130, err
        assert err.rstrip().endswith("vggedge: interrupted; partial files were removed and finished ones kept")
        assert tree(tmp_path) == {}
    assert strays(tmp_path, allowed=["m.onnx"]) == []
    rerun = vggedge("export", *SMALL, "--out", out)
    assert rerun.returncode == 0 and out.is_file() and strays(tmp_path, allowed=["m.onnx"]) == []


@pytest.mark.parametrize("delay", [1.0, 3.0])
def test_interrupted_full_size_export_leaves_nothing(tmp_path: Path, delay: float) -> None:
    """Interrupted while building the 553 MB graph: no file at all (the .tmp exists only while writing)."""
    from faultkit import interrupt_after

    out = tmp_path / "vgg16.onnx"
    result = interrupt_after(start(["export", "--weights", "random:0", "--out", out]), "exporting", delay)
    if result.returncode == 0:
        assert out.is_file()
    else:
        assert result.returncode == 130 and "Traceback" not in result.stderr
        assert tree(tmp_path) == {}
    out.unlink(missing_ok=True)
