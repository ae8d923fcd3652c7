"""The label, score, source and FPS drawn on a frame (the annotated video file and the live preview)."""
from __future__ import annotations

from typing import Any

import numpy as np


def annotate(image: np.ndarray, result: Any) -> np.ndarray:
    """A copy of the frame with the top label, its score, the source and the FPS drawn on it."""
    import cv2

    frame = np.ascontiguousarray(image).copy()
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    scale = max(0.3, frame.shape[1] / 900.0)
    thick = max(1, int(round(scale * 2)))
    lines = [f"{p.label} {p.score:.2f}" for p in result.top_k[:1]]
    lines.append(f"src {result.source} #{result.frame}  {result.fps:.1f} FPS  {result.latency_s * 1000:.0f} ms")
    y = int(30 * scale)
    for text in lines:
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(frame, (5, y - h - 6), (15 + w, y + base), (0, 0, 0), -1)
        cv2.putText(frame, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += h + base + int(12 * scale)
    return frame
