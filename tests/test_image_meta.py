"""EXIF orientation and reduced-scale JPEG decoding in the one preprocessing path."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from vggedge.image_meta import jpeg_header, orientation_of
from vggedge.preprocess import decode_need, prepare, read_image, reduced_scale
from vggedge.spec import TORCHVISION, ModelSpec

REPO = Path(__file__).resolve().parents[1]


def exif_block(orientation: int, order: str = "II") -> bytes:
    """A minimal TIFF/EXIF block whose IFD0 holds only the Orientation tag."""
    e = "<" if order == "II" else ">"
    return (order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1)
            + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "H", orientation) + b"\0\0"
            + struct.pack(e + "I", 0))


def jpeg_with_orientation(image: np.ndarray, orientation: int, order: str = "II", quality: int = 95) -> bytes:
    """A real JPEG (OpenCV's encoder) with an APP1 Exif segment inserted after SOI, as cameras write it."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    payload = b"Exif\0\0" + exif_block(orientation, order)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    return data[:2] + app1 + data[2:]


def png_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    import zlib

    ok, encoded = cv2.imencode(".png", image)
    data = encoded.tobytes()
    block = exif_block(orientation, "MM")
    chunk = struct.pack(">I", len(block)) + b"eXIf" + block + struct.pack(">I", zlib.crc32(b"eXIf" + block))
    return data[:33] + chunk + data[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photograph cut to a clearly non-square, asymmetric 96x160 patch."""
    image = cv2.imread(str(REPO / "calib" / "coffee.jpg"), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(image[40:136, 60:220])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation_matches_opencv_imread(tmp_path: Path, photo: np.ndarray, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(jpeg_with_orientation(photo, orientation, "MM" if orientation % 2 else "II"))
    assert orientation_of(path.read_bytes()) == orientation
    reference = cv2.imread(str(path), cv2.IMREAD_COLOR)  # imread applies EXIF for JPEG in every OpenCV we support
    ours = read_image(path)
    assert ours.shape == reference.shape
    assert np.array_equal(ours, reference)
    assert ours.shape[:2] == ((160, 96) if orientation >= 5 else (96, 160))


def test_orientation_6_is_a_quarter_turn_clockwise(tmp_path: Path, photo: np.ndarray) -> None:
    """A phone photo: pixels stored sideways, tagged 6. Decoded upright it equals the original scene."""
    stored = cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE)  # what the sensor recorded
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_orientation(stored, 6, quality=100))
    upright = read_image(path)
    assert upright.shape == photo.shape
    assert np.abs(upright.astype(int) - photo.astype(int)).mean() < 3  # JPEG noise only
    try:
        from PIL import Image, ImageOps
    except ImportError:
        return
    with Image.open(path) as im:
        pil = np.asarray(ImageOps.exif_transpose(im))[:, :, ::-1]
    assert np.abs(upright.astype(int) - pil.astype(int)).mean() < 3


def test_png_exif_orientation_applied(tmp_path: Path, photo: np.ndarray) -> None:
    path = tmp_path / "o6.png"
    path.write_bytes(png_with_orientation(cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE), 6))
    assert np.array_equal(read_image(path), photo)


def test_prepare_sees_the_upright_image(tmp_path: Path, photo: np.ndarray) -> None:
    upright, sideways = tmp_path / "up.png", tmp_path / "side.png"
    cv2.imwrite(str(upright), photo)
    sideways.write_bytes(png_with_orientation(cv2.rotate(photo, cv2.ROTATE_90_COUNTERCLOCKWISE), 6))
    spec = ModelSpec(height=32, width=48, num_classes=None, output_kind="features", labels=None)
    assert np.array_equal(prepare(upright, spec), prepare(sideways, spec))


def test_jpeg_header_reads_stored_size() -> None:
    data = (REPO / "calib" / "coffee.jpg").read_bytes()
    stored = cv2.imread(str(REPO / "calib" / "coffee.jpg")).shape[:2]
    assert jpeg_header(data) == (1, stored)


@pytest.mark.parametrize("stored, orientation, need, scale", [
    ((1080, 1920), 1, (224, 224, 0), 4),      # direct 224: 270x480 at 1/4 covers it, 135 at 1/8 does not
    ((1080, 1920), 1, (224, 224, 256), 4),    # shorter_crop 256: 270 >= 256
    ((3000, 4000), 1, (224, 224, 256), 8),    # 375x500 at 1/8
    ((4000, 3000), 6, (224, 224, 256), 8),
    ((448, 448), 1, (224, 224, 0), 2),        # exactly half: still covered
    ((446, 900), 1, (224, 224, 0), 1),        # less than half on one side: full decode
    ((1920, 300), 6, (224, 600, 0), 1),       # upright 300x1920: 150 rows at 1/2 < 224
    ((1920, 500), 6, (224, 224, 0), 2),       # upright 500x1920
])
def test_reduced_scale_covers_the_target(stored, orientation, need, scale) -> None:
    assert reduced_scale(stored, orientation, need) == scale


def test_reduced_decode_is_used_and_keeps_orientation(tmp_path: Path) -> None:
    big = cv2.resize(cv2.imread(str(REPO / "calib" / "coffee.jpg")), (1920, 1080))
    path = tmp_path / "big6.jpg"
    path.write_bytes(jpeg_with_orientation(cv2.rotate(big, cv2.ROTATE_90_COUNTERCLOCKWISE), 6))
    spec = ModelSpec(preprocessing=TORCHVISION)  # shorter side 256, crop 224
    full = read_image(path)
    reduced = read_image(path, need=decode_need(spec))
    assert full.shape == (1080, 1920, 3) and reduced.shape == (270, 480, 3)  # 1/4, upright
    small = cv2.resize(full, (480, 270), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - reduced.astype(int)).mean() < 6
    a = prepare(path, spec, reduced_decode=False)
    b = prepare(path, spec, reduced_decode=True)
    assert a.shape == b.shape == (3, 224, 224)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


@pytest.mark.parametrize("how", ["module", "exported-name", "setter", "environment"])
def test_the_one_switch_reaches_the_decoder_and_a_caller_overrides_it(decodes, monkeypatch, how: str) -> None:
    """Each way of turning reduced decoding on is seen by the decoder; an explicit reduced_decode wins."""
    import sys

    import vggedge
    from vggedge.preprocess import set_reduced_decode

    spec = ModelSpec(height=32, width=32)
    path = REPO / "calib" / "astronaut.jpg"  # 512x512: 1/8 still covers 32x32
    prepare(path, spec)
    if how == "module":
        monkeypatch.setattr(sys.modules["vggedge.preprocess"], "REDUCED_DECODE", True)
    elif how == "exported-name":  # `vggedge.preprocess.REDUCED_DECODE = True`: lands on the exported function
        monkeypatch.setattr(vggedge.preprocess, "REDUCED_DECODE", True)
    elif how == "setter":
        set_reduced_decode(True)  # the fixture restores the module flag afterwards
    else:
        monkeypatch.setenv("VGGEDGE_REDUCED_DECODE", "1")
    on = prepare(path, spec)
    off = prepare(path, spec, reduced_decode=False)
    assert decodes.reduced == [False, True, False]
    assert on.shape == off.shape == (3, 32, 32)
