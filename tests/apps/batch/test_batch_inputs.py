"""Input expansion for batch jobs: folders, globs, list files, tar shards; and the per-image decode checks."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from batch_images import MAX_PIXELS

from vggedge.apps.batch.decode import Limits, header_size, load_item
from vggedge.apps.batch.inputs import Item, count_items, expand, iter_items
from vggedge.errors import ConfigError
from vggedge.preprocess import prepare
from vggedge.spec import ModelSpec


def make_tree(root: Path) -> None:
    (root / "b" / "c").mkdir(parents=True)
    for name in ("b/c/3.png", "a.jpg", "b/2.JPEG", "notes.txt.bak"):
        (root / name).write_bytes(b"x")


def test_folders_are_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert expand([tmp_path]) == [str(tmp_path / "a.jpg"), str(tmp_path / "b" / "2.JPEG"),
                                  str(tmp_path / "b" / "c" / "3.png")]


def test_globs_list_files_and_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\nb/2.JPEG\n\na.jpg\nmissing.jpg\n")
    monkeypatch.chdir(tmp_path)
    entries = expand(["**/*.png", str(listing), "a.jpg"])
    # relative list entries resolve against the list's folder; a listed missing file is kept (reported later)
    assert entries == [str(tmp_path / "b" / "c" / "3.png"), str(tmp_path / "b" / "2.JPEG"),
                       str(tmp_path / "a.jpg"), str(tmp_path / "missing.jpg")]
    with pytest.raises(ConfigError, match="no such file, folder or glob"):
        expand(["nowhere/"])
    with pytest.raises(ConfigError, match="no inputs"):
        expand([])


def test_tar_shards_stream_image_members_and_skip_done(tmp_path: Path) -> None:
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("s1.jpg", b"one"), ("s1.json", b"{}"), ("s2.png", b"two")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    entries = expand([tmp_path])
    assert entries == [str(shard)] and count_items(entries) == 2
    assert list(iter_items(entries)) == [Item(f"{shard}::s1.jpg", b"one"), Item(f"{shard}::s2.png", b"two")]
    assert list(iter_items(entries, skip={f"{shard}::s1.jpg"})) == [Item(f"{shard}::s2.png", b"two")]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    [item] = list(iter_items([str(bad)]))
    assert item.error and "unreadable" in item.error


def test_header_size_reads_every_format_without_decoding() -> None:
    image = np.zeros((30, 50, 3), np.uint8)
    for suffix in (".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm"):
        assert header_size(cv2.imencode(suffix, image)[1].tobytes()) == (50, 30), suffix
    assert header_size(b"this is text, not an image") is None


def test_load_item_matches_the_one_preprocessing_path_and_reports_bad_files(image_set) -> None:
    folder, good, broken = image_set
    spec = ModelSpec(height=32, width=32)
    limits = Limits(max_pixels=MAX_PIXELS)
    for path in good[:3] + good[-2:]:
        loaded = load_item(Item(path), spec, limits)
        assert loaded.error is None
        np.testing.assert_array_equal(loaded.tensor, prepare(path, spec))
    for path, kind in broken.items():
        loaded = load_item(Item(path), spec, limits)
        assert (loaded.tensor, loaded.kind) == (None, kind) and loaded.error
    small = load_item(Item(good[0]), spec, Limits(max_bytes=100))
    assert small.kind == "too-large" and "--max-bytes" in small.error
    gray = folder.parent / "gray16.png"
    cv2.imwrite(str(gray), np.full((40, 40), 40000, np.uint16))
    np.testing.assert_array_equal(load_item(Item(str(gray)), spec, limits).tensor, prepare(gray, spec))
    os.unlink(gray)


def _jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A real JPEG with a minimal Exif APP1 segment (IFD0: Orientation only) after SOI, as cameras write it."""
    import struct

    exif = (b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, 3, 1)
            + struct.pack("<H", orientation) + b"\0\0" + struct.pack("<I", 0))
    payload = b"Exif\0\0" + exif
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def test_load_item_decodes_upright_through_read_images_decoder(tmp_path: Path) -> None:
    """A camera JPEG stored sideways (EXIF orientation 6) reaches the model upright, from a file or from bytes."""
    calib = Path(__file__).resolve().parents[3] / "calib" / "coffee.jpg"
    upright = np.ascontiguousarray(cv2.imread(str(calib))[40:136, 60:220])  # 96x160: rotation matters
    path = tmp_path / "sideways.jpg"
    path.write_bytes(_jpeg_with_orientation(cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE), 6))
    spec = ModelSpec(height=24, width=40)
    expected = prepare(path, spec)  # read_image: EXIF applied
    from_file = load_item(Item(str(path)), spec, Limits())
    from_bytes = load_item(Item("shard.tar::sideways.jpg", data=path.read_bytes()), spec, Limits())
    np.testing.assert_array_equal(from_file.tensor, expected)
    np.testing.assert_array_equal(from_bytes.tensor, expected)
    stored = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.abs(prepare(stored, spec) - expected).mean() > 0.1  # the stored (sideways) pixels differ
    assert np.abs(prepare(upright, spec) - expected).mean() < np.abs(prepare(stored, spec) - expected).mean() / 4


def test_load_item_follows_the_reduced_decode_switch(decodes, monkeypatch) -> None:
    photo = Path(__file__).resolve().parents[3] / "calib" / "astronaut.jpg"  # 512x512 for 32x32: 1/8 covers it
    spec = ModelSpec(height=32, width=32)
    full = load_item(Item(str(photo)), spec, Limits())
    monkeypatch.setenv("VGGEDGE_REDUCED_DECODE", "1")
    small = load_item(Item(str(photo)), spec, Limits())
    assert decodes.reduced == [False, True]
    np.testing.assert_array_equal(small.tensor, prepare(photo, spec, reduced_decode=True))
    assert full.tensor.shape == small.tensor.shape
