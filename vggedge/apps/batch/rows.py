"""One result row per image, the same for every engine and output format.

Classification rows: ``path``, ``top_k_index``, ``top_k_label``, ``top_k_score``;
feature rows: ``path``, ``features``. ``path`` is the input's row key (a URL without
its credentials: :func:`~vggedge.apps.batch.names.row_key`). Both carry ``model``, ``precision``,
``backend`` and the timing columns ``decode_ms`` (this image's read, decode and
preprocessing) and ``infer_ms`` (its share of the batch's inference).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...model.labels import labels_for, top_k
from ...redact import redact_uri
from ...spec import ModelSpec
from .names import row_key

TIMING_COLUMNS = ("decode_ms", "infer_ms")
META_COLUMNS = ("model", "precision", "backend")
ERROR_COLUMNS = ("path", "kind", "reason")


def columns(features: bool) -> tuple[str, ...]:
    """Column names in output order."""
    result = ("features",) if features else ("top_k_index", "top_k_label", "top_k_score")
    return ("path", *result, *META_COLUMNS, *TIMING_COLUMNS)


@dataclass
class RowMaker:
    """Turns a batch of model outputs into rows (top-k predictions, or the feature vectors)."""

    spec: ModelSpec
    model: str
    precision: str
    backend: str
    k: int = 5
    features: bool = False

    def __post_init__(self) -> None:
        self.features = self.features or self.spec.output_kind == "features"
        self.labels = None if self.features else labels_for(self.spec.labels, self.spec.num_classes)
        if self.labels is not None:
            self.k = max(1, min(self.k, len(self.labels)))

    def rows(self, keys: Sequence[str], outputs: np.ndarray, decode_s: Sequence[float],
             infer_s: float) -> list[dict[str, Any]]:
        """Rows for ``keys`` from their outputs (one per key, same order)."""
        outputs = np.asarray(outputs, dtype=np.float32).reshape(len(keys), -1)
        infer_ms = 1000.0 * infer_s / max(1, len(keys))
        meta = {"model": self.model, "precision": self.precision, "backend": self.backend}
        if self.features:
            result = [{"features": [float(v) for v in row]} for row in outputs]
        else:
            result = [{"top_k_index": [p.index for p in preds], "top_k_label": [p.label for p in preds],
                       "top_k_score": [float(p.score) for p in preds]}
                      for preds in top_k(outputs, self.labels, self.k)]
        return [{"path": row_key(key), **res, **meta, "decode_ms": 1000.0 * d, "infer_ms": infer_ms}
                for key, res, d in zip(keys, result, decode_s)]


def error_row(key: str, kind: str | None, reason: str | None) -> dict[str, Any]:
    """One line of the errors file (keyed by the input's row key; URLs in the reason redacted too)."""
    return {"path": row_key(key), "kind": kind or "error", "reason": redact_uri(reason) if reason else "unknown error"}
