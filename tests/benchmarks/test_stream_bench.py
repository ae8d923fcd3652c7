"""The stream benchmark runs end to end (tiny model, fractions of a second) and reports what it claims."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("stream_bench", ROOT / "benchmarks" / "stream_bench.py")
stream_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stream_bench)


def test_stream_bench_smoke(stream_model: Path, tmp_path: Path) -> None:
    report = stream_bench.main(["--model", str(stream_model), "--batch", "2", "--duration", "0.3",
                                "--rounds", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "stream-latest.json").read_text())
    assert saved["batch"] == 2 and len(saved["ratios"]) == 1 and len(saved["inference_only"]) == 2
    assert saved["stream"][0]["classified"] >= 8 and saved["throughput_ratio"] > 0
    assert saved["live"]["e2e_p95_ms"] >= saved["live"]["e2e_p50_ms"] > 0
    assert "Median ratio" in (tmp_path / "stream-latest.md").read_text()
    assert report["cpu"] == saved["cpu"]
