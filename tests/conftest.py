"""Suite-wide settings.

Automatic CPU tuning (vggedge/runtime/tune.py) times every CPU variant for
seconds the first time ``precision="auto"`` meets a model. The suite switches it
off for every test (``VGGEDGE_TUNE=0``, inherited by CLI subprocesses), so tests
see the feature-detection order; a test that wants tuning sets
``VGGEDGE_TUNE=1`` and points ``VGGEDGE_CACHE`` at its own tmp_path.
"""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_automatic_tuning(monkeypatch):
    monkeypatch.setenv("VGGEDGE_TUNE", "0")
