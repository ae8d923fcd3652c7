"""``vggedge.batch``: the batch-inference API (implemented in :mod:`vggedge.apps.batch`).

``vggedge.batch.run(inputs, out=..., model=..., engine="local")`` returns a
:class:`BatchSummary`; see :mod:`vggedge.apps.batch` for the options.
"""
from __future__ import annotations

from .apps.batch import ENGINES, BatchOptions, BatchSummary, errors_path_for, read_rows, run

__all__ = ["ENGINES", "BatchOptions", "BatchSummary", "errors_path_for", "read_rows", "run"]
