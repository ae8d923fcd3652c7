"""Where the repository's shipped data and built artefacts live (one definition for every module)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Sample photographs and the default INT8 calibration set (sources in calib/SOURCES.md).
CALIB_DIR = REPO_ROOT / "calib"
#: Built artefacts (ignored by git).
ENGINES_DIR = REPO_ROOT / "engines"
#: Photographs calibration never sees: the default evaluation set of `vggedge compare` (sources in calib/SOURCES.md).
EVAL_DIR = REPO_ROOT / "eval"
