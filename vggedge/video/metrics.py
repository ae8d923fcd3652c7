"""The stream's numbers in the Prometheus text format (prometheus-client), read at scrape time."""
from __future__ import annotations

from typing import Any, Iterator

from ..redact import redact_uri
from .stages import STAGE_HELP


class StreamCollector:
    """A prometheus-client collector reading a :class:`~vggedge.apps.stream.stats.StreamStats` on each scrape."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        summary = self.stats.summary()
        counters = {"frames": "frames read", "classified": "frames classified",
                    "dropped": "frames dropped by the latest-frame policy", "corrupt": "corrupt frames skipped",
                    "reconnects": "reconnections after a failure or stalled read"}
        for key, text in counters.items():
            family = CounterMetricFamily(f"vggedge_stream_{key}", f"Total {text}, per source", labels=["source", "uri"])
            for i, s in enumerate(summary["sources"]):
                family.add_metric([str(i), redact_uri(s["uri"])], s[key])
            yield family
        up = GaugeMetricFamily("vggedge_stream_source_up", "1 while the source is connected", labels=["source", "uri"])
        fps = GaugeMetricFamily("vggedge_stream_fps", "Classified frames per second (last 2 s), per source",
                                labels=["source", "uri"])
        for i, s in enumerate(summary["sources"]):
            up.add_metric([str(i), redact_uri(s["uri"])], 1.0 if s["connected"] else 0.0)
            fps.add_metric([str(i), redact_uri(s["uri"])], self.stats.fps(i))
        yield up
        yield fps
        latency = GaugeMetricFamily("vggedge_stream_latency_seconds",
                                    "Latency percentiles per stage: " + "; ".join(f"{k}: {v}" for k, v in
                                                                                  STAGE_HELP.items()),
                                    labels=["stage", "quantile"])
        for stage, values in summary["latency_ms"].items():
            for name, ms in values.items():
                latency.add_metric([stage, f"0.{name[1:]}"], ms / 1000.0)
        yield latency


def metrics_text(stats: Any) -> tuple[bytes, str]:
    """(body, content type) of a /metrics response for these stats."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StreamCollector(stats))
    return generate_latest(registry), CONTENT_TYPE_LATEST
