"""Bad spec sidecars stop every command at load time, naming the sidecar file and the field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultkit import CALIB, tree, vggedge


def edit_spec(model: Path, change) -> Path:
    sidecar = model.with_name("m.spec.json")
    data = json.loads(sidecar.read_text())
    change(data)
    sidecar.write_text(json.dumps(data))
    return sidecar


def set_pre(key, value):
    return lambda d: d["preprocessing"].__setitem__(key, value)


CASES = {
    "std-zero": (set_pre("std", [58.4, 0.0, 57.4]),
                 "spec field 'preprocessing.std' is [58.4, 0.0, 57.4]; std[1] = 0.0 would divide by zero"),
    "mean-missing": (lambda d: d["preprocessing"].pop("mean"),
                     "required spec fields missing: ['preprocessing.mean']"),
    "height-missing": (lambda d: d.pop("height"), "required spec fields missing: ['height']"),
    "height-text": (lambda d: d.__setitem__("height", "32"), "field 'height' is '32'; expected a positive integer"),
    "scale-negative": (set_pre("scale", -1), "field 'preprocessing.scale' is -1; expected a finite number > 0"),
    "mean-short": (set_pre("mean", [1.0, 2.0]), "field 'preprocessing.mean' is [1.0, 2.0]; expected a list of 3"),
    "size-disagrees": (lambda d: d.update(height=64, width=64),
                       "field 'height' is 64, but the model {model} takes input 'images' of shape "
                       "[batch, 3, 32, 32] (NCHW: height 32)"),
    "input-name": (lambda d: d.__setitem__("input_name", "input_1"),
                   "field 'input_name' is 'input_1', but the model {model} has inputs ['images']"),
    "dtype-disagrees": (lambda d: d.update(dtype="float16"),
                        "field 'dtype' is 'float16', but the model {model} takes input 'images' of shape "
                        "[batch, 3, 32, 32] of float32"),
    "not-an-object": (lambda d: d.clear() or d.update(spec_version=1), "required spec fields missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sidecar_is_refused_naming_file_and_field(model_copy: Path, case: str) -> None:
    change, expected = CASES[case]
    sidecar = edit_spec(model_copy, change)
    before = tree(model_copy.parent)
    result = vggedge("build", "--precision", "fp32", "--model", model_copy)
    assert result.returncode == 1, result.stdout
    assert f"vggedge: error: {sidecar}: " in result.stderr
    assert expected.format(model=model_copy) in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert tree(model_copy.parent) == before


def test_classify_refuses_zero_std_instead_of_printing_nan(model_copy: Path) -> None:
    sidecar = edit_spec(model_copy, set_pre("std", [0, 0, 0]))
    result = vggedge("classify", "--model", model_copy, CALIB / "coffee.jpg")
    assert result.returncode == 1
    assert f"vggedge: error: {sidecar}: spec field 'preprocessing.std'" in result.stderr
    assert "nan" not in result.stdout.lower()
