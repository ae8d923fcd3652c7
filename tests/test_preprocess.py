"""Tests for vggedge.preprocess: decoding, resizing, normalisation, layouts and listing."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from vggedge.errors import ImageError
from vggedge.preprocess import list_images, prepare, preprocess, read_image, to_bgr
from vggedge.spec import CAFFE_BGR, CAFFE_RGB, RAW_PIXELS, TORCHVISION, ModelSpec, Preprocessing

# A 2x2 BGR image with a different colour in every pixel (OpenCV order: B, G, R).
TINY_BGR = np.array([[[10, 20, 30], [40, 50, 60]],
                     [[70, 80, 90], [100, 110, 120]]], dtype=np.uint8)


def tiny_spec(pre: Preprocessing, **changes: object) -> ModelSpec:
    """A 2x2 model spec, so a 2x2 image is not resampled."""
    return ModelSpec(height=2, width=2, preprocessing=pre).replace(**changes)


def write(path: Path, image: np.ndarray, params: list[int] | None = None) -> Path:
    assert cv2.imwrite(str(path), image, params or [])
    return path


# read_image --------------------------------------------------------------------
def test_read_grayscale_png_2d(tmp_path: Path) -> None:
    gray = np.array([[0, 50], [128, 255]], dtype=np.uint8)
    image = read_image(write(tmp_path / "g.png", gray))
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], gray)


def test_read_grayscale_png_hxwx1(tmp_path: Path) -> None:
    gray = np.array([[[7], [9]], [[11], [13]]], dtype=np.uint8)
    image = read_image(write(tmp_path / "g1.png", gray))
    assert image.shape == (2, 2, 3)
    np.testing.assert_array_equal(image, np.repeat(gray, 3, axis=2))
    # An in-memory HxWx1 array takes the same path.
    np.testing.assert_array_equal(to_bgr(gray), np.repeat(gray, 3, axis=2))


def test_read_rgba_png_drops_alpha_keeps_colour(tmp_path: Path) -> None:
    bgra = np.array([[[10, 20, 30, 0], [40, 50, 60, 128]],
                     [[70, 80, 90, 255], [1, 2, 3, 64]]], dtype=np.uint8)
    image = read_image(write(tmp_path / "rgba.png", bgra))
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, bgra[:, :, :3])


def test_read_16bit_png_scaled_to_0_255_float(tmp_path: Path) -> None:
    deep = np.zeros((2, 3, 3), dtype=np.uint16)
    deep[0, 0] = (65535, 32768, 0)
    deep[1, 2] = (257, 1000, 65535)
    image = read_image(write(tmp_path / "deep.png", deep))
    assert image.dtype == np.float32 and image.shape == (2, 3, 3)
    np.testing.assert_allclose(image[0, 0], [255.0, 32768 * 255 / 65535, 0.0], rtol=1e-6)
    np.testing.assert_allclose(image[1, 2], [1.0, 1000 * 255 / 65535, 255.0], rtol=1e-6)
    assert image.max() == pytest.approx(255.0) and image.min() == 0.0


def test_read_jpeg(tmp_path: Path) -> None:
    colour = np.full((16, 16, 3), (30, 120, 200), dtype=np.uint8)
    image = read_image(write(tmp_path / "c.jpg", colour, [cv2.IMWRITE_JPEG_QUALITY, 100]))
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(image.astype(int), colour.astype(int), atol=3)


def test_read_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match=re.escape(str(path)) + ": cannot read image file"):
        read_image(path)


def test_read_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=re.escape(str(path)) + r": image file is empty \(0 bytes\)"):
        read_image(path)


def test_read_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"this is not a JPEG at all" * 4)
    with pytest.raises(ImageError, match=re.escape(str(path)) + r": not a decodable image \(100 bytes\)"):
        read_image(path)


def test_to_bgr_rejects_unsupported_layouts() -> None:
    with pytest.raises(ImageError, match=r"<array>: unsupported pixel type float64"):
        to_bgr(np.zeros((2, 2, 3), dtype=np.float64))
    with pytest.raises(ImageError, match=r"shape \(2, 2, 2\); expected HxW, HxWx1, HxWx3 or HxWx4"):
        to_bgr(np.zeros((2, 2, 2), dtype=np.uint8))


# normalisation per preset -------------------------------------------------------
def test_prepare_caffe_rgb_flips_to_rgb() -> None:
    out = prepare(TINY_BGR, tiny_spec(CAFFE_RGB))
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    r = np.array([[30, 60], [90, 120]], dtype=np.float32)
    g = np.array([[20, 50], [80, 110]], dtype=np.float32)
    b = np.array([[10, 40], [70, 100]], dtype=np.float32)
    np.testing.assert_allclose(out[0], r - 123.68, atol=1e-4)
    np.testing.assert_allclose(out[1], g - 116.779, atol=1e-4)
    np.testing.assert_allclose(out[2], b - 103.939, atol=1e-4)
    assert out[0, 0, 0] == pytest.approx(30 - 123.68, abs=1e-4)


def test_prepare_caffe_bgr_keeps_bgr() -> None:
    out = prepare(TINY_BGR, tiny_spec(CAFFE_BGR))
    np.testing.assert_allclose(out[0], [[10 - 103.939, 40 - 103.939], [70 - 103.939, 100 - 103.939]], atol=1e-4)
    np.testing.assert_allclose(out[1], [[20 - 116.779, 50 - 116.779], [80 - 116.779, 110 - 116.779]], atol=1e-4)
    np.testing.assert_allclose(out[2], [[30 - 123.68, 60 - 123.68], [90 - 123.68, 120 - 123.68]], atol=1e-4)


def test_prepare_torchvision_scale_mean_std() -> None:
    # resize_shorter equal to the image's short side: the crop keeps every pixel unresampled.
    pre = dataclasses.replace(TORCHVISION, resize_shorter=2)
    out = prepare(TINY_BGR, tiny_spec(pre))
    assert out[0, 0, 0] == pytest.approx((30 / 255 - 0.485) / 0.229, abs=1e-5)  # R of pixel (0, 0)
    assert out[1, 0, 0] == pytest.approx((20 / 255 - 0.456) / 0.224, abs=1e-5)  # G
    assert out[2, 0, 0] == pytest.approx((10 / 255 - 0.406) / 0.225, abs=1e-5)  # B
    assert out[0, 1, 1] == pytest.approx((120 / 255 - 0.485) / 0.229, abs=1e-5)
    assert out[2, 1, 1] == pytest.approx((100 / 255 - 0.406) / 0.225, abs=1e-5)


def test_prepare_torchvision_default_crop_of_flat_colour() -> None:
    flat = np.full((3, 5, 3), (10, 20, 30), dtype=np.uint8)  # resized to 256 then cropped: still flat
    out = prepare(flat, tiny_spec(TORCHVISION))
    expected = [(30 / 255 - 0.485) / 0.229, (20 / 255 - 0.456) / 0.224, (10 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(out, np.broadcast_to(np.array(expected)[:, None, None], (3, 2, 2)), atol=1e-5)


# resizing ----------------------------------------------------------------------
def test_preprocess_direct_resize_shape() -> None:
    spec = ModelSpec(height=8, width=6, preprocessing=RAW_PIXELS)
    images = [np.full((20, 30, 3), 50, np.uint8), np.full((5, 4, 3), 200, np.uint8)]
    batch = preprocess(images, spec)
    assert batch.shape == (2, 3, 8, 6) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], 50.0)
    np.testing.assert_allclose(batch[1], 200.0)


def test_shorter_crop_takes_centre_without_resampling() -> None:
    # Pixel value = column index; a 4x8 image with resize_shorter=4 is cropped, never squashed.
    cols = np.tile(np.arange(8, dtype=np.uint8) * 10, (4, 1))
    image = np.dstack([cols] * 3)
    pre = Preprocessing("BGR", 1.0, (0, 0, 0), (1, 1, 1), resize="shorter_crop", resize_shorter=4)
    out = prepare(image, ModelSpec(height=4, width=4, preprocessing=pre))
    np.testing.assert_array_equal(out[0], np.tile([20, 30, 40, 50], (4, 1)))


def test_shorter_crop_resizes_then_crops_centre() -> None:
    # Four vertical bands; shorter side 8 -> 4 gives 4x8, centre 4 columns are bands 2 and 3.
    bands = np.repeat(np.array([10, 50, 150, 200], dtype=np.uint8), 4)
    image = np.dstack([np.tile(bands, (8, 1))] * 3)
    pre = Preprocessing("BGR", 1.0, (0, 0, 0), (1, 1, 1), resize="shorter_crop", resize_shorter=4)
    cropped = prepare(image, ModelSpec(height=4, width=4, preprocessing=pre))
    np.testing.assert_allclose(cropped[0], np.tile([50, 50, 150, 150], (4, 1)))
    squashed = prepare(image, ModelSpec(height=4, width=4, preprocessing=dataclasses.replace(pre, resize="direct")))
    np.testing.assert_allclose(squashed[0], np.tile([10, 50, 150, 200], (4, 1)))


# layout, dtype, out= --------------------------------------------------------------
def test_prepare_nhwc_layout() -> None:
    out = prepare(TINY_BGR, tiny_spec(CAFFE_RGB, layout="NHWC"))
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[0, 1], [60 - 123.68, 50 - 116.779, 40 - 103.939], atol=1e-4)
    assert preprocess([TINY_BGR, TINY_BGR], tiny_spec(CAFFE_RGB, layout="NHWC")).shape == (2, 2, 2, 3)


def test_prepare_float16() -> None:
    spec = tiny_spec(CAFFE_RGB, dtype="float16")
    out = prepare(TINY_BGR, spec)
    assert out.dtype == np.float16 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(out.astype(np.float32), prepare(TINY_BGR, tiny_spec(CAFFE_RGB)), atol=0.1)
    batch = preprocess([TINY_BGR], spec)
    assert batch.dtype == np.float16 and batch.shape == (1, 3, 2, 2)


def test_prepare_writes_into_given_buffer() -> None:
    spec = tiny_spec(CAFFE_BGR)
    buffer = np.zeros((3, 3, 2, 2), dtype=np.float32)
    result = prepare(TINY_BGR, spec, out=buffer[1])
    assert result is not None and np.shares_memory(result, buffer)
    np.testing.assert_allclose(buffer[1], prepare(TINY_BGR, spec))
    assert not buffer[0].any() and not buffer[2].any()


def test_preprocess_paths_and_arrays_agree(tmp_path: Path) -> None:
    path = write(tmp_path / "tiny.png", TINY_BGR)
    batch = preprocess([path, TINY_BGR, str(path)], tiny_spec(CAFFE_RGB))
    np.testing.assert_array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[0], batch[2])


def test_preprocess_empty_list() -> None:
    with pytest.raises(ImageError, match=r"preprocess\(\) got no images"):
        preprocess([], tiny_spec(CAFFE_RGB))


def test_prepare_missing_path_names_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="gone.jpg"):
        prepare(tmp_path / "gone.jpg", tiny_spec(CAFFE_RGB))


# list_images -----------------------------------------------------------------------
def test_list_images_sorted_recursive_images_only(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.PNG", "sub/c.jpeg", "sub/deeper/a.bmp", "notes.txt", "sub/x.json", "noext"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()  # a directory with an image suffix is not an image
    found = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/a.bmp"]
    assert found == sorted(found)


def test_list_images_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=re.escape(str(tmp_path / "missing")) + ": not a directory"):
        list_images(tmp_path / "missing")
