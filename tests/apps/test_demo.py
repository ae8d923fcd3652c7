"""The demo's flow on a small model: what will run gets its files prepared, bad photos are reported, not fatal."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vggedge.apps import demo
from vggedge.cli import main
from vggedge.errors import EXIT_PARTIAL, ConfigError, ImageError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted((REPO / "calib").glob("*.jpg"))[:3]:
        shutil.copy(photo, folder / photo.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return folder


@pytest.fixture
def small_demo(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    prepared = []
    monkeypatch.setattr(demo, "prepare_model", lambda weights, out, seed: (model_copy, True))
    monkeypatch.setattr(demo, "prepare_artefacts",
                        lambda model, backend, calib, precision: prepared.append((model, backend, precision)) or "ort-cpu")
    return prepared


def test_demo_reports_bad_photo_and_goes_on(small_demo: list, photos: Path, model_copy: Path) -> None:
    report = demo.run_demo(images=photos, backend="ort-cpu", top_k=2, batch_size=2)
    assert small_demo == [(model_copy, "ort-cpu", "auto")]  # the backend that will run prepares its files first
    assert [p.name for p, _ in report.results] == ["astronaut.jpg", "cameraman.jpg", "cat_chelsea.jpg"]
    assert all(len(preds) == 2 for _, preds in report.results)
    assert [(p.name, "not a decodable image" in why) for p, why in report.failed] == [("broken.jpg", True)]
    assert "broken.jpg: FAILED: " in demo.format_report(report)
    with pytest.raises(ImageError, match="broken.jpg"):
        demo.run_demo(images=photos, backend="ort-cpu", strict=True)


def test_demo_cli_exit_partial(small_demo: list, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--images", str(photos), "--backend", "ort-cpu", "--batch-size", "2"]) == EXIT_PARTIAL
    assert "1 of 4 images could not be read" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [(dict(top_k=0), "top_k=0"), (dict(batch_size=-2), "batch_size=-2")])
def test_demo_checks_counts_first(kwargs: dict, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "prepare_model", lambda *a: pytest.fail("checks must come before the export"))
    with pytest.raises(ConfigError, match=message):
        demo.run_demo(**kwargs)
