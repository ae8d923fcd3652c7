"""PNG charts for `vggedge bench --plot` (matplotlib, imported only when asked for)."""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from . import BenchReport


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'vggedge[plot]'") from None
    return plt


def plot_report(report: BenchReport, prefix: str | Path) -> list[Path]:
    """Write ``<prefix>-latency.png`` (histogram per batch) and ``<prefix>-throughput.png``."""
    plt = _pyplot()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in report.results:
        ax.hist([1000 * t for t in r.times["infer"]], bins=30, alpha=0.6, label=f"batch {r.batch}")
    ax.set(xlabel="inference latency (ms)", ylabel="iterations", title=f"{report.backend} {report.precision}")
    ax.legend()
    latency = prefix.with_name(prefix.name + "-latency.png")
    fig.tight_layout()
    fig.savefig(latency, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = [r.batch for r in report.results]
    ax.plot(sizes, [r.model_throughput for r in report.results], "o-", label="inference")
    ax.plot(sizes, [r.end_to_end_throughput for r in report.results], "s--", label="end to end")
    ax.set(xlabel="batch size", ylabel="images/s", xscale="log", title="throughput vs batch size")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.legend()
    throughput = prefix.with_name(prefix.name + "-throughput.png")
    fig.tight_layout()
    fig.savefig(throughput, dpi=100)
    plt.close(fig)
    return [latency, throughput]
