"""The pure parts of the GPU check (arguments, overlap from event timestamps, summaries), run without a GPU."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load("gpu_check")  # puts benchmarks/ on sys.path for its report module
pure = _load("gpu_check_report")


def test_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OUT", str(tmp_path))
    args = pure.parse_args([])
    assert args.out == tmp_path and args.batches == (1, 8, 32) and args.sections == pure.SECTIONS
    args = pure.parse_args(["--out", "x", "--batches", "4,16", "--sections", "kernel,jobs", "--quick", "--files", "64"])
    assert args.out == Path("x") and args.batches == (4, 16) and args.sections == ("kernel", "jobs") and args.quick
    assert args.files == 64 and pure.parse_args(["--out", "x"]).files == 2000
    for bad in (["--batches", "8,x"], ["--batches", "0"], ["--sections", "kernel,nope"]):
        with pytest.raises(SystemExit):
            pure.parse_args(bad)
    monkeypatch.delenv("OUT")
    with pytest.raises(SystemExit):
        pure.parse_args([])


def batch(h2d: tuple, compute: tuple, d2h: tuple) -> dict:
    return {"h2d": h2d, "compute": compute, "d2h": d2h}


def test_overlap_report_serial_timeline_has_none() -> None:
    serial = [batch((0, 1), (1, 5), (5, 6)), batch((6, 7), (7, 11), (11, 12))]
    report = pure.overlap_report(serial)
    assert report["copy_compute_overlap_ms"] == 0 and not report["copies_overlap_compute"]
    assert report["span_ms"] == 12 and report["copy_ms"] == 4 and report["compute_ms"] == 8


def test_overlap_report_pipelined_timeline() -> None:
    # batch 1's upload (2..3) runs during batch 0's compute (1..5); batch 0's download (5..6) during batch 1's (5..9)
    pipelined = [batch((0, 1), (1, 5), (5, 6)), batch((2, 3), (5, 9), (9, 10)), batch((4, 6), (9, 13), (13, 14))]
    report = pure.overlap_report(pipelined)
    # copies overlapping another batch's compute: b0 d2h 1, b1 h2d 1, b1 d2h 0 (b2 computes 9..13: 1), b2 h2d 2
    assert report["copy_compute_overlap_ms"] == pytest.approx(1 + 1 + 1 + 2)
    assert report["copies_overlap_compute"] and report["overlap_fraction"] == pytest.approx(5 / 7)
    assert pure.overlap_report([])["batches"] == 0


def test_run_section_records_every_outcome() -> None:
    ok = pure.run_section("a", lambda: {"x": 1}, deadline=float("inf"))
    assert ok["status"] == "ok" and ok["result"] == {"x": 1}

    def boom() -> dict:
        raise RuntimeError("no device")

    failed = pure.run_section("b", boom, deadline=float("inf"))
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: no device" and "boom" in failed["traceback"]

    def skip() -> dict:
        raise pure.SkipSection("onnxruntime-gpu not installed")

    assert pure.run_section("c", skip, float("inf"))["reason"] == "onnxruntime-gpu not installed"
    assert pure.run_section("d", lambda: {}, deadline=0.0, clock=lambda: 1.0)["reason"] == "time budget spent"
    assert pure.run_section("e", lambda: {"passed": False}, float("inf"))["status"] == "failed"


def test_summary_json_and_markdown(tmp_path: Path) -> None:
    summary = {"started": "2026-12-02T06:00:00+00:00", "commit": "abc123", "seconds": 12.5, "sections": {
        "environment": {"status": "ok", "seconds": 0.2, "result": {"gpu": "NVIDIA H200", "driver": "580"}},
        "overlap": {"status": "ok", "seconds": 9.0, "result": {
            "rows": [{"batch": 8, "blocking_img_s": 1000.0, "overlapped_img_s": 1500.0, "ratio": 1.5}],
            "model": "vgg16.fp16.onnx", "note": "ort-cuda"}},
        "e2e": {"status": "skipped", "seconds": 0.0, "reason": "torch sees no CUDA device"}}}
    json_path, md_path = pure.write_summary(summary, tmp_path / "out")
    assert json.loads(json_path.read_text()) == summary
    text = md_path.read_text()
    assert "GPU: NVIDIA H200; driver 580; commit abc123" in text
    assert "| e2e | skipped | 0.0 | torch sees no CUDA device |" in text
    assert "| batch | blocking_img_s | overlapped_img_s | ratio |" in text and "| 8 | 1000 | 1500 | 1.5 |" in text
    assert "- model: vgg16.fp16.onnx" in text


def test_main_without_a_gpu_skips_with_reasons(tmp_path: Path) -> None:
    assert gpu_check.main(["--out", str(tmp_path), "--sections", "environment,kernel,parity"]) == 0
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["sections"]["environment"]["status"] == "ok"
    assert summary["sections"]["kernel"]["status"] == "skipped" and "pycuda" in summary["sections"]["kernel"]["reason"]
    assert (tmp_path / "gpu_check.md").is_file()


def test_shell_script_parses_and_refuses_outside_the_repository(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env={"OUT": str(tmp_path / "out"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "run from the repository root" in done.stdout
    assert "run from the repository root" in (tmp_path / "out" / "log").read_text()


#: an in-tree PEP 517 backend (no setuptools or wheel needed): a wheel holding pycuda/__init__.py and driver.py
_BACKEND = """
import base64, hashlib, zipfile

FILES = {"pycuda/__init__.py": "", "pycuda/driver.py": "def init():\\n    pass\\n"}
DIST = "pycuda-0.0.dist-info"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "pycuda-0.0-py3-none-any.whl"
    files = dict(FILES)
    files[DIST + "/METADATA"] = "Metadata-Version: 2.1\\nName: pycuda\\nVersion: 0.0\\n"
    files[DIST + "/WHEEL"] = "Wheel-Version: 1.0\\nGenerator: stand-in\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    with zipfile.ZipFile(wheel_directory + "/" + name, "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(text.encode())}")
        whl.writestr(DIST + "/RECORD", "\\n".join(record + [DIST + "/RECORD,,"]) + "\\n")
    return name
"""


def _stand_in_pycuda_sdist(folder: Path) -> None:
    """A pycuda sdist whose configure.py prints its arguments and whose wheel holds a pycuda.driver."""
    import tarfile

    src = folder / "src" / "pycuda-0.0"
    src.mkdir(parents=True)
    (src / "configure.py").write_text("import sys\nprint('configure', *sys.argv[1:])\n")
    (src / "backend.py").write_text(_BACKEND)
    (src / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                                        'backend-path = ["."]\n')
    with tarfile.open(folder / "whl" / "pycuda-0.0.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="pycuda-0.0")


def test_prepare_builds_pycuda_in_the_background_for_the_run_to_wait_on(tmp_path: Path) -> None:
    """``--prepare`` copies carried pieces, starts the pycuda build detached and returns; a second call reports it;
    the build leaves its wheel and exit status where the full run waits for them."""
    import sys
    import time

    (tmp_path / "whl").mkdir()
    _stand_in_pycuda_sdist(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "OUT": str(tmp_path / "out"), "WHL": str(tmp_path / "whl"),
           "GPU_PREP": str(tmp_path / "prep"), "GPU_SITE": str(tmp_path / "site"),
           "ORT_PIECES": str(tmp_path / "pieces"), "PYTHON": sys.executable, "CUDA_ROOT": str(tmp_path / "cuda")}
    (tmp_path / "cuda" / "include").mkdir(parents=True)
    (tmp_path / "cuda" / "include" / "cuda.h").write_text("")  # a toolkit without cuRAND headers

    def prepare() -> str:
        done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--prepare"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "pycuda: building in the background" in prepare()
    second = prepare()
    assert "still building" in second or "ended with status 0" in second, second
    status = tmp_path / "prep" / "pycuda.status"
    deadline = time.monotonic() + 120
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    log = (tmp_path / "prep" / "pycuda-build.log").read_text()
    assert status.read_text().strip() == "0", log
    assert f"configure --cuda-root={tmp_path / 'cuda'} --no-cuda-enable-curand" in log, log
    assert [w.name for w in (tmp_path / "prep" / "wheels").glob("pycuda-*.whl")] == ["pycuda-0.0-py3-none-any.whl"]
    assert "ended with status 0" in prepare()
    usage = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--bogus"], cwd=ROOT, env=env, capture_output=True,
                           text=True)
    assert usage.returncode == 2 and "usage" in usage.stdout


def test_median_rate() -> None:
    assert pure.median_rate([3.0, 1.0, 2.0]) == 2.0 and pure.median_rate([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert pure.median_rate([]) == 0.0


def _peer(what: str, batch: int, rate: float) -> dict:
    return {"what": what, "batch": batch, "img_s": rate}


def test_targets_are_ratios_of_one_runs_rows() -> None:
    peers = [_peer(pure.RAW.format(1), 32, 7000.0), _peer(pure.RAW.format(0), 32, 5500.0),
             _peer(pure.VGG_DEVICE.format(False), 32, 6800.0), _peer(pure.VGG_DEVICE.format(True), 32, 7200.0),
             _peer(pure.TORCH, 32, 8000.0), _peer(pure.RAW.format(1), 128, 7600.0),
             _peer(pure.VGG_DEVICE.format(False), 128, 7000.0), _peer(pure.TORCH, 128, 8500.0),
             _peer(pure.TORCH_E2E, 32, 3300.0), _peer(pure.BLOCKING, 1, 1400.0),
             _peer(pure.OVERLAP.format(pure.DEFAULT_SLOTS), 1, 1300.0), _peer(pure.OVERLAP.format(3), 1, 1500.0)]
    jobs = [{"job": "bench --end-to-end", "decoder": "gpu (nvImageCodec + CUDA preprocessing)", "batch": 32,
             "e2e_img_s": 5000.0, "infer_img_s": 6000.0},
            {"job": "bench --end-to-end", "decoder": "gpu (nvImageCodec + CUDA preprocessing)", "batch": 128,
             "e2e_img_s": 5500.0, "infer_img_s": 7000.0},
            {"job": "bench --end-to-end", "decoder": "cpu pool", "batch": 32, "e2e_img_s": 900.0, "infer_img_s": 6100.0},
            {"job": "batch", "decoder": "gpu", "batch": 128, "e2e_img_s": 5200.0},
            {"job": "batch", "decoder": "cpu", "batch": 128, "e2e_img_s": 800.0}]
    got = {t["target"]: t for t in pure.targets(jobs, peers)}
    b32 = got["inference b32 vs raw onnxruntime-gpu (prefer_nhwc)"]
    assert b32["value"] == 7200.0 and b32["ratio"] == pytest.approx(7200 / 7000) and b32["met"] is True  # best of two
    assert got["inference b128 vs torch FP16 channels_last"]["ratio"] == pytest.approx(7000 / 8500)
    assert got["inference b128 vs torch FP16 channels_last"]["met"] is False  # 0.82 < 0.9: it can fail
    assert got["batch (GPU decode) vs vggedge inference-only b128"]["ratio"] == pytest.approx(5200 / 7000)
    assert got["batch (GPU decode) vs torch + torchvision GPU decode"]["ratio"] == pytest.approx(5200 / 3300)
    assert got["bench --end-to-end b32 vs inference only"]["ratio"] == pytest.approx(5000 / 6000)  # the GPU row
    b1 = got["batch 1: overlapped run() vs blocking infer()"]
    assert b1["value"] == 1300.0 and b1["met"] is False  # the default slots, not the best count
    missing = {t["target"]: t for t in pure.targets([], [])}
    assert all(t["met"] is None and t["ratio"] is None for t in missing.values())


def test_markdown_lists_the_targets() -> None:
    summary = {"sections": {}, "targets": [{"target": "inference b32 vs raw", "value": 7200.0, "against": 7000.0,
                                            "ratio": 1.0286, "threshold": 1.0, "met": True},
                                           {"target": "b1", "value": None, "against": 1.0, "ratio": None,
                                            "threshold": 1.0, "met": None}]}
    text = pure.render_markdown(summary)
    assert "| inference b32 vs raw | 7200 | 7000 | 1.029 | >= 1.0 | yes |" in text
    assert "| b1 | None | 1 | None | >= 1.0 | ? |" in text


def test_markdown_rows_keep_every_rows_columns() -> None:
    """A row with a column the first row lacks (a stalled live stream's error) still shows it."""
    rows = [{"job": "stream", "decoder": "gpu", "batch": 32, "e2e_img_s": 900.0},
            {"job": "stream --pace", "decoder": "gpu", "batch": 1, "frames": 3, "error": "stalled"}]
    text = pure.render_markdown({"sections": {"jobs": {"status": "ok", "result": {"rows": rows}}}})
    assert "| job | decoder | batch | e2e_img_s | frames | error |" in text
    assert "| stream --pace | gpu | 1 | None | 3 | stalled |" in text
