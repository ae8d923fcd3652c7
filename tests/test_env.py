"""Environment overrides are validated in one place, first, by the API and the CLI alike."""
from __future__ import annotations

import logging
import time

import pytest

from vggedge import env
from vggedge.cli import main
from vggedge.errors import ConfigError


def test_valid_and_unset_values_pass():
    env.check({"VGGEDGE_CPU_VARIANT": "int8", "VGGEDGE_TUNE": "0", "PATH": "/bin"})
    env.check({})


@pytest.mark.parametrize("name, value, expected", [
    ("VGGEDGE_CPU_VARIANT", "bogus", r"VGGEDGE_CPU_VARIANT='bogus': expected one of ov-int8, ov-bf16, int8, int8-trt, fp32"),
    ("VGGEDGE_TUNE", "yes", r"VGGEDGE_TUNE='yes': expected 0 \(off\) or 1 \(on\)"),
    ("VGGEDGE_REDUCED_DECODE", "on", r"VGGEDGE_REDUCED_DECODE='on': expected 0 \(off\) or 1 \(on\)"),
])
def test_bad_values_are_named(name, value, expected):
    with pytest.raises(ConfigError, match=expected):
        env.check({name: value})


def test_cache_pointing_at_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="VGGEDGE_CACHE=.*expected a folder, but it is an existing file"):
        env.check({"VGGEDGE_CACHE": str(tmp_path / "f")})


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        env.check({"VGGEDGE_CPU_VARIANT": "x", "VGGEDGE_TUNE": "2"})
    assert "VGGEDGE_CPU_VARIANT" in str(err.value) and "VGGEDGE_TUNE" in str(err.value)


def test_unknown_name_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="vggedge.env"):
        env.check({"VGGEDGE_CPU_VARAINT": "int8"})
    assert "VGGEDGE_CPU_VARAINT is not one vggedge reads" in caplog.text


def test_accessors(monkeypatch, tmp_path):
    monkeypatch.delenv("VGGEDGE_TUNE")
    assert env.tune_enabled() is True  # on by default, outside the test suite
    monkeypatch.setenv("VGGEDGE_TUNE", "0")
    assert env.tune_enabled() is False
    monkeypatch.setenv("VGGEDGE_CACHE", str(tmp_path))
    assert env.cache_dir() == tmp_path
    monkeypatch.delenv("VGGEDGE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert env.cache_dir() == tmp_path / "xdg" / "vggedge"
    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "nope")
    with pytest.raises(ConfigError, match="VGGEDGE_CPU_VARIANT"):
        env.cpu_variant()


def test_decoder_wanted_is_explicit_then_environment_then_auto(monkeypatch):
    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    assert env.decoder_wanted(None) == "auto"
    monkeypatch.setenv("VGGEDGE_DECODER", "cpu")
    assert env.decoder_wanted(None) == "cpu"
    assert env.decoder_wanted("gpu") == "gpu" and env.decoder_wanted("auto") == "auto"  # an explicit choice wins
    with pytest.raises(ConfigError, match="decoder 'nvjpeg': choose one of auto, gpu, cpu"):
        env.decoder_wanted("nvjpeg")
    monkeypatch.setenv("VGGEDGE_DECODER", "GPU")
    with pytest.raises(ConfigError, match="VGGEDGE_DECODER='GPU': expected one of auto, gpu, cpu"):
        env.decoder_wanted(None)


@pytest.mark.parametrize("argv", [["classify", "--model", "missing.onnx", "missing.png"],
                                  ["demo", "--out", "OUT"], ["info"]])
def test_cli_refuses_a_bad_override_before_any_work(argv, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "bogus")
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    start = time.perf_counter()
    assert main(argv) == 1
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "vggedge: error: environment variable VGGEDGE_CPU_VARIANT='bogus'" in err
    assert "missing.onnx" not in err  # refused before the model was even looked at
    assert not (tmp_path / "out").exists()  # the demo exported nothing


def test_api_refuses_a_bad_override_before_any_work(monkeypatch, tmp_path):
    from vggedge.apps.demo import run_demo
    from vggedge.runtime.select import select_runner

    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "bogus")
    with pytest.raises(ConfigError, match="VGGEDGE_CPU_VARIANT='bogus'"):
        run_demo(out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="VGGEDGE_CPU_VARIANT='bogus'"):
        select_runner(tmp_path / "any.onnx", "ort-cpu")  # the file is not even needed
