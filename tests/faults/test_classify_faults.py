"""Issue 11 item 4 through the real command line (subprocesses): bad images are reported, good ones kept.

A folder of 12 images with 3 broken ones: ``vggedge classify`` prints 9 results,
names the 3 bad files with their reasons, and exits with EXIT_PARTIAL (3);
``--strict`` stops at the first bad file with status 1. Nothing is written.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vggedge.errors import EXIT_ERROR, EXIT_PARTIAL

REPO = Path(__file__).resolve().parents[2]
BROKEN = {"b_empty.jpg": b"", "f_random.jpg": os.urandom(2048), "k_notes.png": b"shopping list, not a picture"}
REASONS = {"b_empty.jpg": "image file is empty (0 bytes)", "f_random.jpg": "not a decodable image",
           "k_notes.png": "not a decodable image"}


def vggedge(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-c", "from vggedge.cli import run; run()", *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 real photos and 3 broken files, sorted so that the broken ones fall into different batches."""
    folder = tmp_path_factory.mktemp("twelve")
    photos = sorted((REPO / "calib").glob("*.jpg"))[:9]
    for letter, photo in zip("acdeghijl", photos):
        shutil.copy(photo, folder / f"{letter}_{photo.name}")
    for name, data in BROKEN.items():
        (folder / name).write_bytes(data)
    return folder


def listing(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in folder.iterdir()}


def test_twelve_images_three_broken(folder: Path, ten_class_model: Path) -> None:
    before = listing(folder)
    done = vggedge("classify", "--model", str(ten_class_model), "--batch-size", "4", "--top-k", "2", str(folder))
    assert done.returncode == EXIT_PARTIAL, done.stderr
    headers = [line[:-1] for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert len(headers) == 9
    assert sorted(Path(h).name for h in headers) == sorted(n for n in before if n not in BROKEN)
    assert [Path(h).name for h in headers] == sorted(Path(h).name for h in headers)  # input order kept
    errors = [line for line in done.stderr.splitlines() if line.startswith("vggedge: error: ")]
    assert len(errors) == 4  # three named files, then the summary
    for name, line in zip(sorted(BROKEN), errors):
        assert line.startswith(f"vggedge: error: {folder / name}: {REASONS[name]}")
    assert errors[-1] == ("vggedge: error: 3 of 12 images could not be read (each named above); "
                          "results for the others were kept")
    assert "Traceback" not in done.stderr
    assert listing(folder) == before  # nothing written, nothing removed


def test_strict_stops_at_first_bad_file(folder: Path, ten_class_model: Path) -> None:
    done = vggedge("classify", "--strict", "--model", str(ten_class_model), "--batch-size", "1", str(folder))
    assert done.returncode == EXIT_ERROR
    headers = [line[:-1] for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert [Path(h).name[0] for h in headers] == ["a"]  # results before the bad file were printed
    assert done.stderr.strip().splitlines()[-1].startswith(f"vggedge: error: {folder / 'b_empty.jpg'}: "
                                                           "image file is empty")
    assert "Traceback" not in done.stderr


def test_json_lists_errors_in_place(folder: Path, ten_class_model: Path) -> None:
    import json

    done = vggedge("classify", "--json", "--model", str(ten_class_model), str(folder))
    assert done.returncode == EXIT_PARTIAL
    rows = json.loads(done.stdout)
    assert len(rows) == 12
    assert [Path(r["image"]).name for r in rows if "error" in r] == sorted(BROKEN)
    assert all(len(r["top_k"]) == 5 for r in rows if "error" not in r)
