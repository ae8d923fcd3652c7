"""Tests for vggedge.preprocessing_args: presets, options, JSON files, and the messages for bad values."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vggedge.errors import ConfigError, ModelError
from vggedge.preprocessing_args import (PreprocessingChoice, load_preprocessing_file, parse_scale,
                                        parse_values)
from vggedge.spec import CAFFE_BGR, PRESETS, TORCHVISION, ModelSpec, Preprocessing


def test_new_presets() -> None:
    assert PRESETS["unit"] == PRESETS["keras-rescaling"] == Preprocessing("RGB", 1 / 255, (0, 0, 0), (1, 1, 1))
    tf = PRESETS["tf"]
    pixels = np.array([0.0, 127.5, 255.0])
    assert np.allclose(pixels * tf.scale - tf.mean[0], [-1.0, 0.0, 1.0])
    assert set(PRESETS) == {"caffe-rgb", "caffe-bgr", "torchvision", "raw", "unit", "keras-rescaling", "tf"}


@pytest.mark.parametrize("text, value", [("1/255", 1 / 255), ("1 / 127.5", 1 / 127.5), ("0.5", 0.5), ("2", 2.0)])
def test_parse_scale(text: str, value: float) -> None:
    assert parse_scale(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["0", "-1", "1/0", "abc", "nan", "inf", "1/2/3", ""])
def test_parse_scale_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--scale: expected a positive number or fraction such as 1/255"):
        parse_scale(text)


def test_parse_values() -> None:
    assert parse_values("0.485, 0.456,0.406", "--mean") == (0.485, 0.456, 0.406)
    assert parse_values("127.5", "--mean") == (127.5, 127.5, 127.5)
    for bad in ("1,2", "1,2,3,4", "a,b,c", "1,,3", "nan"):
        with pytest.raises(ConfigError, match=r"--std: expected 3 comma-separated numbers in the model's channel "
                                              r"order, such as 0\.485,0\.456,0\.406, or one number"):
            parse_values(bad, "--std")


def test_options_alone_start_from_raw_rgb() -> None:
    pre = PreprocessingChoice(scale="1/255").resolve()
    assert pre == PRESETS["unit"]
    assert PreprocessingChoice().resolve() is None


def test_torchvision_written_both_ways_is_the_same_normalisation() -> None:
    """0..1 form with or without --scale 1/255, and the 0..255 form: one and the same affine map."""
    unit_form = PreprocessingChoice(scale="1/255", mean="0.485,0.456,0.406", std="0.229,0.224,0.225",
                                    resize="shorter_crop").resolve()
    assert unit_form == TORCHVISION
    said_unit = PreprocessingChoice(mean="0.485,0.456,0.406", std="0.229,0.224,0.225",
                                    mean_std_range="0..1").resolve()
    said_pixels = PreprocessingChoice(scale="1/255", mean="123.675,116.28,103.53", std="58.395,57.12,57.375",
                                      mean_std_range="0..255").resolve()
    pixels = np.array([0.0, 100.0, 255.0])
    want = (pixels[:, None] / 255 - np.array(TORCHVISION.mean)) / np.array(TORCHVISION.std)
    for pre in (said_unit, said_pixels):
        got = (pixels[:, None] * pre.scale - np.array(pre.mean)) / np.array(pre.std)
        assert np.allclose(got, want, rtol=1e-6, atol=1e-6)


def test_mean_in_the_wrong_form_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--mean 0\.485,0\.456,0\.406 looks written for pixels/255 \(the 0\.\.1 "
                                          r"form\), but pixels are 0\.\.255 here \(scale 1\): add --mean-std-range "
                                          r"0\.\.1, or --scale 1/255"):
        PreprocessingChoice(mean="0.485,0.456,0.406").resolve()
    with pytest.raises(ConfigError, match=r"--std 58\.395,57\.12,57\.375 looks written in pixel units \(the 0\.\.255"):
        PreprocessingChoice(scale="1/255", std="58.395,57.12,57.375").resolve()
    with pytest.raises(ConfigError, match=r"--mean-std-range: expected 0\.\.1 .* or 0\.\.255 \(pixel units\); "
                                          r"got '0\.\.100'"):
        PreprocessingChoice(mean="1", mean_std_range="0..100").resolve()


def test_preset_with_overrides_and_channel_order() -> None:
    pre = PreprocessingChoice(preset="caffe-bgr", channel_order="RGB", resize="shorter_crop",
                              resize_shorter="288", interpolation="area").resolve()
    assert pre.channel_order == "RGB" and pre.mean == (123.68, 116.779, 103.939)  # mean follows the order
    assert (pre.resize, pre.resize_shorter, pre.interpolation) == ("shorter_crop", 288, "area")


@pytest.mark.parametrize("field, value, message", [
    ("channel_order", "rgb", r"--channel-order: expected one of RGB, BGR; got 'rgb'"),
    ("resize", "crop", r"--resize: expected one of direct, shorter_crop; got 'crop'"),
    ("resize_shorter", "0", r"--resize-shorter: expected a positive whole number of pixels such as 256; got '0'"),
    ("resize_shorter", "25.5", r"--resize-shorter: expected a positive whole number .* got '25\.5'"),
    ("interpolation", "bilinear", r"--interpolation: expected one of linear, area, cubic, nearest; got 'bilinear'"),
    ("preset", "keras", r"--preprocessing: 'keras' is neither a preset \(caffe-rgb, caffe-bgr, torchvision, raw, "
                        r"unit, keras-rescaling, tf\) nor a \.json file"),
    ("std", "0,1,1", r"--std: std divides, so expected positive numbers; got 0,1,1"),
])
def test_bad_values_name_the_option(field: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PreprocessingChoice(**{field: value}).resolve()


def test_export_form_keeps_channel_order_apart_from_a_preset() -> None:
    assert PreprocessingChoice(preset="unit", channel_order="BGR").for_export() == (PRESETS["unit"], "BGR")
    stated, order = PreprocessingChoice(scale="1/255", channel_order="BGR").for_export()
    assert stated.channel_order == order == "BGR"
    assert PreprocessingChoice(channel_order="BGR").for_export() == (None, "BGR")


def test_json_file_forms(tmp_path: Path) -> None:
    spec_file = ModelSpec(preprocessing=CAFFE_BGR).save(tmp_path / "m.spec.json")
    assert load_preprocessing_file(spec_file) == CAFFE_BGR
    own = tmp_path / "pre.json"
    own.write_text(json.dumps({"channel_order": "BGR", "scale": "1/255", "mean": [0.406, 0.456, 0.485],
                               "std": [0.225, 0.224, 0.229], "resize": "shorter_crop"}))
    assert load_preprocessing_file(own) == TORCHVISION.with_channel_order("BGR")
    assert PreprocessingChoice(preset=str(own), interpolation="cubic").resolve().interpolation == "cubic"


def test_json_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scale": 1, "stdev": [1, 1, 1]}))
    with pytest.raises(ConfigError, match=r"bad\.json: unknown preprocessing fields \['stdev'\]; expected only"):
        load_preprocessing_file(bad)
    bad.write_text(json.dumps({"scale": "1/0"}))
    with pytest.raises(ConfigError, match=r"bad\.json: field 'scale': expected a positive number or fraction"):
        load_preprocessing_file(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not a readable JSON file"):
        load_preprocessing_file(bad)
    with pytest.raises(ConfigError, match=r"missing\.json: preprocessing file not found"):
        PreprocessingChoice(preset=str(tmp_path / "missing.json")).resolve()


def test_preprocessing_checks_names_and_sizes() -> None:
    for kwargs, message in [({"mean": (1, 2)}, r"mean has 2 values but std has 3"),
                            ({"resize_shorter": 0}, r"resize_shorter must be a positive whole number"),
                            ({"resize_shorter": 2.5}, r"resize_shorter must be a positive whole number")]:
        with pytest.raises(ModelError, match=message):
            Preprocessing(**kwargs)


def test_describe_adds_resize_size_and_interpolation_when_not_default() -> None:
    assert TORCHVISION.describe() == "RGB x0.00392157 - [0.485, 0.456, 0.406] / [0.229, 0.224, 0.225], shorter_crop"
    pre = PreprocessingChoice(preset="torchvision", resize_shorter="288", interpolation="area").resolve()
    assert pre.describe().endswith("], shorter_crop 288, area")
