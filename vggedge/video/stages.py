"""The stages a stream's frames pass through, in pipeline order, with what each measures.

Shared by the stream's statistics (apps/stream/stats.py), its Prometheus
metrics (video/metrics.py) and the CLI's summary, so the names agree everywhere.
"""
from __future__ import annotations

#: the stages whose latencies the stream records, in pipeline order
STAGES = ("wait", "prepare", "infer", "output", "e2e")
STAGE_HELP = {
    "wait": "capture to the start of preprocessing (time queued for a batch)",
    "prepare": "OpenCV preprocessing of the batch",
    "infer": "inference of the batch",
    "output": "writing results to sinks (JSON, video, preview)",
    "e2e": "capture to result (end-to-end)",
}
