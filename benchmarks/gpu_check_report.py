"""The pure parts of the GPU check: arguments, overlap from event timestamps, sections, summaries.

No GPU needed: tested on CPUs in ``tests/benchmarks/test_gpu_check.py``. The GPU
sections live in ``gpu_check.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

SECTIONS = ("environment", "kernel", "parity", "noise", "decode", "item6", "overlap", "jobs", "peers")
# row labels of the peers section (gpu_check_jobs.py), read back by :func:`targets`
RAW = "raw onnxruntime-gpu IOBinding, prefer_nhwc={}"
VGG_HOST = "vggedge run(), host input (H2D each batch), cuda_graph={}"
VGG_DEVICE = "vggedge run_on_device (input already on the GPU), cuda_graph={}"
TORCH = "torch FP16 channels_last + cudnn.benchmark"
TORCH_E2E = "torch + torchvision GPU decode, end to end"
BLOCKING = "vggedge infer() blocking"
OVERLAP = "vggedge run() overlapped, {} slot(s)"
DEFAULT_SLOTS = 2
Interval = tuple[float, float]


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32); ArgumentTypeError for anything else."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes {text!r}: expected comma-separated integers like 1,8,32")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes {text!r}: each must be >= 1")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; ``--out`` defaults to ``$OUT``."""
    parser = argparse.ArgumentParser(description="The one GPU check (see benchmarks/gpu_check.py).")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"),
                        help="folder for gpu_check.json / gpu_check.md (default: $OUT)")
    parser.add_argument("--batches", type=parse_batches, default=(1, 8, 32), help="batch sizes (default 1,8,32)")
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="wall-clock budget; sections that would start after it are skipped (default 240)")
    parser.add_argument("--sections", type=lambda s: tuple(s.split(",")), default=SECTIONS,
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--files", type=int, default=2000,
                        help="distinct 1080p JPEG files for the jobs/peers sections (default 2000; 512 with --quick)")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("--out is required (or set $OUT)")
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    return args


def _union(intervals: list[Interval]) -> list[Interval]:
    merged: list[list[float]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _intersection(a: Interval, spans: list[Interval]) -> float:
    return sum(max(0.0, min(a[1], b[1]) - max(a[0], b[0])) for b in spans)


def overlap_report(timeline: list[dict[str, Interval]]) -> dict[str, Any]:
    """How much of the copy time ran while another batch computed, from event timestamps (ms).

    ``timeline``: one ``{"h2d": (start, end), "compute": (start, end), "d2h": (start, end)}``
    per batch, on one clock. A copy overlapping its *own* batch's compute is impossible
    (same stream), so only other batches' compute counts.
    """
    copy_ms = overlap_ms = 0.0
    for i, batch in enumerate(timeline):
        others = _union([b["compute"] for j, b in enumerate(timeline) if j != i])
        for stage in ("h2d", "d2h"):
            copy_ms += batch[stage][1] - batch[stage][0]
            overlap_ms += _intersection(batch[stage], others)
    starts = [b["h2d"][0] for b in timeline]
    ends = [b["d2h"][1] for b in timeline]
    compute_ms = sum(b["compute"][1] - b["compute"][0] for b in timeline)
    return {"batches": len(timeline), "span_ms": (max(ends) - min(starts)) if timeline else 0.0,
            "copy_ms": copy_ms, "compute_ms": compute_ms, "copy_compute_overlap_ms": overlap_ms,
            "overlap_fraction": overlap_ms / copy_ms if copy_ms > 0 else 0.0,
            "copies_overlap_compute": overlap_ms > 0.0}


def run_section(name: str, fn: Callable[[], dict], deadline: float, clock: Callable[[], float] = time.monotonic
                ) -> dict[str, Any]:
    """Run one section: {"status": ok|failed|skipped, "seconds", "result" | "error" | "reason"}."""
    if clock() >= deadline:
        return {"status": "skipped", "reason": "time budget spent", "seconds": 0.0}
    t0 = clock()
    try:
        result = fn()
    except SkipSection as skip:
        return {"status": "skipped", "reason": str(skip), "seconds": clock() - t0}
    except Exception as exc:  # recorded, never fatal: the other sections still run
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8), "seconds": clock() - t0}
    status = "failed" if result.get("passed") is False else "ok"
    return {"status": status, "result": result, "seconds": clock() - t0}


def median_rate(values: Sequence[float]) -> float:
    """The median of some rates (the middle one, or the mean of the two middle ones)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _rate(rows: list[dict], what: str, batch: int) -> float | None:
    found = [r["img_s"] for r in rows if r.get("what") == what and r.get("batch") == batch and r.get("img_s")]
    return max(found) if found else None


def _job(rows: list[dict], job: str, batch: int, key: str, decoder: str = "gpu") -> float | None:
    found = [r.get(key) for r in rows if r.get("job") == job and r.get("batch") == batch
             and str(r.get("decoder", "")).startswith(decoder) and r.get(key)]
    return max(found) if found else None


def _target(name: str, value: float | None, base: float | None, threshold: float) -> dict[str, Any]:
    ratio = value / base if value and base else None
    return {"target": name, "value": value, "against": base, "ratio": ratio, "threshold": threshold,
            "met": None if ratio is None else ratio >= threshold}


def targets(jobs: list[dict], peers: list[dict]) -> list[dict[str, Any]]:
    """The issue's targets as ratios from one run's rows (``met`` None when a side was not measured).

    Inference only: vggedge with its input already on the GPU (the better of plain and
    CUDA-graph runs) against raw onnxruntime-gpu with the same options (>= 1.0) and torch
    FP16 channels_last (>= 0.9), at b32 and b128. ``batch`` (GPU decoding) against
    vggedge's own inference-only rate at b128 (>= 0.8) and torch + torchvision GPU decode
    end to end (>= 1.5). ``bench --end-to-end`` b32 against inference only (>= 0.8).
    Batch 1: overlapped run() with the default slots against blocking infer() (>= 1.0).
    """
    out = []
    for b in (32, 128):
        vgg = max((v for v in (_rate(peers, VGG_DEVICE.format(g), b) for g in (False, True)) if v), default=None)
        out.append(_target(f"inference b{b} vs raw onnxruntime-gpu (prefer_nhwc)", vgg, _rate(peers, RAW.format(1), b),
                           1.0))
        out.append(_target(f"inference b{b} vs torch FP16 channels_last", vgg, _rate(peers, TORCH, b), 0.9))
    batch = _job(jobs, "batch", 128, "e2e_img_s")
    out.append(_target("batch (GPU decode) vs vggedge inference-only b128", batch,
                       _job(jobs, "bench --end-to-end", 128, "infer_img_s"), 0.8))
    out.append(_target("batch (GPU decode) vs torch + torchvision GPU decode", batch, _rate(peers, TORCH_E2E, 32), 1.5))
    out.append(_target("bench --end-to-end b32 vs inference only", _job(jobs, "bench --end-to-end", 32, "e2e_img_s"),
                       _job(jobs, "bench --end-to-end", 32, "infer_img_s"), 0.8))
    out.append(_target("batch 1: overlapped run() vs blocking infer()", _rate(peers, OVERLAP.format(DEFAULT_SLOTS), 1),
                       _rate(peers, BLOCKING, 1), 1.0))
    return out


class SkipSection(Exception):
    """A section that cannot run here (the reason is recorded)."""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def render_markdown(summary: dict[str, Any]) -> str:
    """The Markdown report: one status line per section, then its numbers."""
    env = summary.get("sections", {}).get("environment", {}).get("result", {})
    lines = [f"# vggedge GPU check ({summary.get('started', '?')})", "",
             f"GPU: {env.get('gpu', '?')}; driver {env.get('driver', '?')}; commit {summary.get('commit', '?')}; "
             f"total {summary.get('seconds', 0.0):.1f} s", "",
             "| section | status | seconds | note |", "|---|---|---|---|"]
    for name, section in summary.get("sections", {}).items():
        note = section.get("error") or section.get("reason") or section.get("result", {}).get("note", "")
        lines.append(f"| {name} | {section['status']} | {section.get('seconds', 0.0):.1f} | {note} |")
    if summary.get("targets"):
        lines += ["", "## targets", "", "| target | value | against | ratio | needed | met |", "|---|---|---|---|---|---|"]
        lines += [f"| {t['target']} | {_fmt(t['value'])} | {_fmt(t['against'])} | {_fmt(t['ratio'])} | "
                  f">= {t['threshold']} | {'?' if t['met'] is None else ('yes' if t['met'] else 'NO')} |"
                  for t in summary["targets"]]
    for name, section in summary.get("sections", {}).items():
        result = section.get("result")
        if not result:
            continue
        lines += ["", f"## {name}", ""]
        rows = result.get("rows")
        if rows:
            keys = list(dict.fromkeys(k for row in rows for k in row))  # every row's columns, first seen first
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(row.get(k)) for k in keys) + " |" for row in rows]
        for key, value in result.items():
            if key not in ("rows", "note"):
                lines.append(f"- {key}: {_fmt(value)}")
    return "\n".join(lines) + "\n"


def write_summary(summary: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``gpu_check.json`` and ``gpu_check.md`` under ``out``; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "gpu_check.json", out / "gpu_check.md"
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(summary))
    return json_path, md_path
