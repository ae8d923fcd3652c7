"""vggedge.precision.calib_cache: entries checked on read; corrupt ones moved aside."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from vggedge.precision import calib_cache


def good_entry(path: Path) -> None:
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    data = TensorsData(CalibrationMethod.MinMax, {"x": TensorData(lowest=np.float32(-1), highest=np.float32(2))})
    calib_cache.write(data, path, used=3, skipped=["bad.jpg: empty"])


def test_written_entry_is_usable_and_records_images(tmp_path: Path) -> None:
    entry = tmp_path / "e.json"
    good_entry(entry)
    assert calib_cache.usable(entry, "minmax")
    assert calib_cache.recorded(entry, 99) == (3, ["bad.jpg: empty"])
    assert entry.stat().st_mode & 0o044  # readable by others like every other artefact
    assert [p.name for p in tmp_path.iterdir()] == ["e.json"]


@pytest.mark.parametrize("text, reason", [("{}", "not a calibration cache entry"), ('{"data"', "not valid JSON"),
                                          ("", "not valid JSON")])
def test_corrupt_entry_is_reported_and_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   text: str, reason: str) -> None:
    entry = tmp_path / "e.json"
    entry.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert not calib_cache.usable(entry, "minmax")
    assert not entry.exists()
    [aside] = tmp_path.glob("e.json.corrupt-*")
    assert aside.read_text() == text
    assert f"calibration cache entry {entry} is unusable: {reason}" in caplog.text


def test_entry_for_another_method_is_not_used(tmp_path: Path) -> None:
    entry = tmp_path / "e.json"
    good_entry(entry)
    assert calib_cache.problem(entry, "entropy") == "it was computed with minmax, not entropy"
    payload = json.loads(entry.read_text())
    payload["data"] = {}
    entry.write_text(json.dumps(payload))
    assert calib_cache.problem(entry, "minmax") == "it holds no tensor ranges"
