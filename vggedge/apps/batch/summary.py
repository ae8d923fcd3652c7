"""What a batch job reports when it ends (returned by ``vggedge.batch.run``, printed by the CLI)."""
from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import EXIT_OK, EXIT_PARTIAL


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children) in MiB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF).ru_maxrss
    return usage / (2**20 if sys.platform == "darwin" else 1024)


@dataclass
class BatchSummary:
    """Counts, throughput and time per stage of one batch job."""

    out: str
    errors_file: str
    engine: str
    backend: str
    precision: str
    images: int = 0  #: rows written by this run
    failed: int = 0  #: images recorded in the errors file by this run
    skipped: int = 0  #: images already done by an earlier run (``resume``)
    #: files found in input folders but not processed, by reason (e.g. ``not an image or tar name``)
    ignored: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    #: peak RSS per worker process (Ray engine: per actor / decode task process)
    worker_peak_rss_mb: dict[str, float] = field(default_factory=dict)
    #: where the images were decoded: "gpu", "cpu", or both ("cpu+gpu": Ray actors that differed)
    decoder: str = "cpu"
    decoder_reason: str = ""  #: why (the decoder choice's reason)

    @property
    def images_per_s(self) -> float:
        return (self.images + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_status(self) -> int:
        """EXIT_PARTIAL when any image failed, else EXIT_OK."""
        return EXIT_PARTIAL if self.failed else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s, "exit_status": self.exit_status}

    def format(self) -> str:
        """A few lines for people."""
        lines = [f"{self.images} images written to {self.out} ({self.engine} engine, {self.backend}, "
                 f"{self.precision}, decoded on the {self.decoder}); {self.failed} failed"
                 + (f" (see {self.errors_file})" if self.failed else "")
                 + (f"; {self.skipped} already done" if self.skipped else "")
                 + "".join(f"; {n} ignored ({why})" for why, n in sorted(self.ignored.items())),
                 f"{self.images_per_s:.1f} images/s over {self.seconds:.1f} s; peak RSS {self.peak_rss_mb:.0f} MiB"]
        if self.stages:
            lines.append("time per stage: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.stages.items()))
        if self.worker_peak_rss_mb:
            lines.append("peak RSS per worker: " + ", ".join(
                f"{k} {v:.0f} MiB" for k, v in sorted(self.worker_peak_rss_mb.items())))
        return "\n".join(lines)
