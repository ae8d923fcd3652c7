"""Calibration on augmented views: the reader feeds the documented views, ranges change deterministically,
and the views count is part of the artefact's reuse key and of the range cache's key."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vggedge.precision.views import augmented_views
from vggedge.errors import ConfigError
from vggedge.precision.calib_views import chosen_views, view_indices
from vggedge.precision.int8 import calibrate, image_reader, quantize_int8
from vggedge.preprocess import list_images, preprocess, read_image
from vggedge.spec import load_spec_for

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"


def _batches(reader) -> list[np.ndarray]:
    return [next(iter(b.values())) for b in iter(reader.get_next, None)]


def test_chosen_views_are_documented_and_spread() -> None:
    assert view_indices(4) == [0, 21, 42, 63]
    assert chosen_views(12)[:2] == ["orig", "crop65-tr"] and chosen_views(12)[6] == "flip+orig"
    assert len(set(chosen_views(84))) == 84
    for bad in (0, 85, -1):
        with pytest.raises(ConfigError, match="between 1 and 84"):
            view_indices(bad)


def test_reader_feeds_the_chosen_views(tiny_net: Path) -> None:
    spec, photos = load_spec_for(tiny_net), list_images(CALIB)[:2]
    reader = image_reader(photos, spec, 4, views=3)
    batches = _batches(reader)
    assert len(reader) == 6 and [len(b) for b in batches] == [4, 2]
    rows = np.concatenate(batches)
    named = dict(augmented_views(read_image(photos[1])))
    expected = preprocess([named[name] for name in chosen_views(3)], spec)
    np.testing.assert_array_equal(rows[3:], expected)  # the second photo's three views, in order
    reader.rewind()
    np.testing.assert_array_equal(np.concatenate(_batches(reader)), rows)  # deterministic
    assert len(_batches(image_reader(photos, spec, 4))) == 1  # views=0: the photos themselves


def _ranges(model: Path, tmp_path: Path, views: int, name: str) -> dict:
    spec = load_spec_for(model)
    path = tmp_path / f"{name}.json"
    calibrate(model, image_reader(list_images(CALIB)[:3], spec, 1, views), "minmax", 99.999, True, path,
              images=3)
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k != "vggedge"}


def test_views_change_ranges_deterministically(tiny_net: Path, tmp_path: Path) -> None:
    plain = _ranges(tiny_net, tmp_path, 0, "plain")
    first, second = _ranges(tiny_net, tmp_path, 6, "a"), _ranges(tiny_net, tmp_path, 6, "b")
    assert first == second
    assert first != plain
    assert json.loads((tmp_path / "a.json").read_text())["vggedge"]["images"] == 3  # photos, not views


def test_views_in_reuse_key_cache_tag_and_sidecar(tiny_net: Path, tmp_path: Path) -> None:
    dst, cache = tmp_path / "t.int8.onnx", tmp_path / "cache"
    plain = quantize_int8(tiny_net, CALIB, dst, limit=2, cache_dir=cache)
    viewed = quantize_int8(tiny_net, CALIB, dst, limit=2, cache_dir=cache, calib_views=4)
    assert not viewed.reused and not viewed.cache_hit
    assert viewed.cache_path != plain.cache_path and viewed.cache_path.name.endswith("-v4.json")
    calibration = load_spec_for(dst).extra["calibration"]
    assert calibration["calib_views"] == 4 and calibration["images"] == 2
    assert quantize_int8(tiny_net, CALIB, dst, limit=2, cache_dir=cache, calib_views=4).reused
    other = quantize_int8(tiny_net, CALIB, dst, limit=2, cache_dir=cache, calib_views=8)
    assert not other.reused and not other.cache_hit
    back = quantize_int8(tiny_net, CALIB, dst, limit=2, cache_dir=cache)
    assert not back.reused and back.cache_hit and back.cache_path == plain.cache_path
    assert load_spec_for(dst).extra["calibration"]["calib_views"] is None


def test_calibration_in_chunks_gives_the_same_minmax_ranges(tiny_net: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import vggedge.precision.int8 as int8_module

    monkeypatch.setattr(int8_module, "COLLECT_IMAGES", 100)
    whole = _ranges(tiny_net, tmp_path, 4, "whole")
    monkeypatch.setattr(int8_module, "COLLECT_IMAGES", 5)  # 12 views in chunks of 5, 5 and 2
    assert _ranges(tiny_net, tmp_path, 4, "chunked") == whole
