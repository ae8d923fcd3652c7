"""vggedge.batch.run with the local engine: one row per image, Classifier parity, errors, formats, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from batch_images import MAX_PIXELS, PHOTOS

import vggedge
from vggedge.apps.batch.rows import TIMING_COLUMNS
from vggedge.apps.batch.readers import without
from vggedge.apps.batch.writers import parts_dir_for
from vggedge.apps.classify import Classifier
from vggedge.batch import errors_path_for, read_rows, run
from vggedge.cli import main
from vggedge.errors import EXIT_OK, EXIT_PARTIAL, ConfigError

OPTS = dict(batch_size=4, max_pixels=MAX_PIXELS, progress=False, workers=2)


@pytest.fixture(scope="module")
def classifier_top1(batch_model: Path, image_set) -> dict[str, int]:
    _, good, _ = image_set
    with Classifier(batch_model, batch_size=8) as clf:
        preds = clf.classify(good, k=3)
    return {path: row[0].index for path, row in zip(good, preds)}


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory: pytest.TempPathFactory, batch_model: Path, image_set):
    out = tmp_path_factory.mktemp("batch-jsonl") / "results.jsonl"
    summary = run([image_set[0]], out=out, model=batch_model, **OPTS)
    return summary, out


def comparable(rows: list[dict]) -> list[dict]:
    """Rows without timing, sorted by path, scores rounded (float text round trips)."""
    rows = without(rows, TIMING_COLUMNS)
    for row in rows:
        if "top_k_score" in row:
            row["top_k_score"] = [round(s, 6) for s in row["top_k_score"]]
    return sorted(rows, key=lambda r: r["path"])


def test_every_good_image_gets_one_row_matching_the_classifier(jsonl_run, image_set, classifier_top1) -> None:
    summary, out = jsonl_run
    _, good, broken = image_set
    rows = read_rows(out)
    paths = [r["path"] for r in rows]
    assert sorted(paths) == good and len(set(paths)) == len(paths)
    assert {r["path"]: r["top_k_index"][0] for r in rows} == classifier_top1
    full_size = {classifier_top1[p] for p in good if Path(p).parent.name not in ("small", "deeper")}
    assert len(full_size) == len(PHOTOS)  # the model tells the photos apart
    for row in rows:
        assert len(row["top_k_index"]) == 5 and row["top_k_label"][0] == f"class_{row['top_k_index'][0]}"
        assert row["top_k_score"] == sorted(row["top_k_score"], reverse=True)
        assert (row["model"], row["precision"], row["backend"]) == ("vgg16_32.onnx", "fp32", "ort-cpu")
        assert row["decode_ms"] > 0 and row["infer_ms"] > 0
    assert (summary.images, summary.failed, summary.skipped) == (len(good), len(broken), 0)
    assert summary.exit_status == EXIT_PARTIAL
    assert set(summary.stages) == {"decode", "prepare", "infer", "write"} and summary.stages["infer"] > 0
    assert summary.images_per_s > 0 and summary.peak_rss_mb > 0


def test_broken_files_are_in_the_errors_file_with_their_reason(jsonl_run, image_set) -> None:
    _, out = jsonl_run
    errors = read_rows(errors_path_for(out))
    assert {e["path"]: e["kind"] for e in errors} == image_set[2]
    reasons = {Path(e["path"]).name: e["reason"] for e in errors}
    assert "0 bytes" in reasons["empty.jpg"] and "2000x2000" in reasons["huge.png"]
    assert "end-of-image" in reasons["truncated.jpg"] and "IEND" in reasons["truncated.png"]
    assert "No such file" in reasons["dangling_link.jpg"] and "decodable" in reasons["not_an_image.jpg"]


@pytest.mark.parametrize("suffix,kind", [(".csv", "thread"), (".parquet", "process")])
def test_csv_jsonl_and_parquet_hold_the_same_rows(tmp_path: Path, batch_model: Path, image_set, jsonl_run,
                                                  suffix: str, kind: str) -> None:
    out = tmp_path / f"results{suffix}"
    summary = run(image_set[0], out=out, model=batch_model, **{**OPTS, "worker_kind": kind})
    assert summary.images == jsonl_run[0].images and summary.failed == jsonl_run[0].failed
    assert comparable(read_rows(out)) == comparable(read_rows(jsonl_run[1]))
    assert read_rows(errors_path_for(out)) == read_rows(errors_path_for(jsonl_run[1]))
    assert not parts_dir_for(out).exists()


def test_clean_set_exits_ok_and_existing_output_needs_resume_or_overwrite(tmp_path: Path, batch_model: Path,
                                                                         image_set) -> None:
    listing = tmp_path / "some.txt"
    listing.write_text("# three photos\n" + "\n".join(image_set[1][:3]) + "\n\n")
    out = tmp_path / "r.jsonl"
    summary = run(listing, out=out, model=batch_model, **OPTS)
    assert (summary.images, summary.failed, summary.exit_status) == (3, 0, EXIT_OK)
    assert read_rows(errors_path_for(out)) == []
    with pytest.raises(ConfigError, match="--resume.*--overwrite"):
        run(listing, out=out, model=batch_model, **OPTS)
    again = run(listing, out=out, model=batch_model, resume=True, **OPTS)
    assert (again.images, again.skipped) == (0, 3) and len(read_rows(out)) == 3
    assert run(listing, out=out, model=batch_model, overwrite=True, **OPTS).images == 3
    assert len(read_rows(out)) == 3


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from vggedge.apps.batch import rows
    from vggedge.batch import run

    slow = rows.RowMaker.rows
    def rows_slowly(self, *a, **kw):
        time.sleep(0.25)  # a slow model: the parent kills the job mid-way
        return slow(self, *a, **kw)
    rows.RowMaker.rows = rows_slowly
    out, model, folder = sys.argv[1:4]
    try:
        run([folder], out=out, model=model, batch_size=2, max_pixels=int(sys.argv[4]), progress=False)
    except KeyboardInterrupt:  # SIGTERM arrives as KeyboardInterrupt once the writers are closed
        sys.exit(130)
""")


def progress_of(out: Path) -> int:
    """Batches visible on disk so far."""
    if out.suffix == ".parquet":
        parts = parts_dir_for(out)
        return len(list(parts.glob("*.parquet"))) if parts.exists() else 0
    return out.read_text().count("\n") if out.exists() else 0


@pytest.mark.parametrize("suffix,sig", [(".jsonl", signal.SIGKILL), (".csv", signal.SIGKILL),
                                        (".parquet", signal.SIGKILL), (".parquet", signal.SIGTERM)])
def test_killed_then_resumed_ends_with_one_row_per_image(tmp_path: Path, batch_model: Path, image_set,
                                                         suffix: str, sig: int) -> None:
    _, good, broken = image_set
    out = tmp_path / f"killed{suffix}"
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(batch_model), str(image_set[0]),
                             str(MAX_PIXELS)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while progress_of(out) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the job ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=60) == (130 if sig == signal.SIGTERM else -signal.SIGKILL)
    if suffix == ".parquet":
        assert not out.exists()  # never half-written under its final name
    summary = run(image_set[0], out=out, model=batch_model, resume=True, **OPTS)
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == good  # every image exactly once
    errors = read_rows(errors_path_for(out))
    assert sorted(e["path"] for e in errors) == sorted(broken)
    assert summary.skipped >= 4 and summary.images + summary.failed + summary.skipped == len(good) + len(broken)


def test_features_model_writes_vectors_to_npy_and_parquet(tmp_path: Path, features_model: Path, image_set) -> None:
    photos = image_set[1][:5]
    npy = run(photos, out=tmp_path / "f.npy", model=features_model, **OPTS)
    pq = run(photos, out=tmp_path / "f.parquet", model=features_model, **OPTS)
    assert npy.images == pq.images == 5
    matrix = np.load(tmp_path / "f.npy")
    assert matrix.shape == (5, 512) and matrix.dtype == np.float32
    assert [json.loads(line) for line in (tmp_path / "f.npy.paths.jsonl").read_text().splitlines()] == photos
    rows = read_rows(tmp_path / "f.parquet")
    assert [r["path"] for r in rows] == photos and "top_k_index" not in rows[0]
    np.testing.assert_allclose(np.array([r["features"] for r in rows]), matrix, rtol=1e-6)
    with _features_runner(features_model) as runner:
        from vggedge.preprocess import preprocess
        from vggedge.spec import load_spec_for

        spec = load_spec_for(features_model)
        want = runner.infer({spec.input_name: preprocess(photos, spec)})[spec.output_name]
    np.testing.assert_allclose(matrix, want, rtol=1e-4, atol=1e-5)


def _features_runner(model: Path):
    """The runner batch's default (precision="auto") plans for the model: on a CPU with AMX and OpenVINO that
    may be the bf16 variant, so the reference is whatever the job itself runs."""
    from vggedge.runtime.select import select_runner

    return select_runner(model, precision="auto").runner


def test_features_flag_writes_the_output_vector_of_a_classifier(tmp_path: Path, batch_model: Path,
                                                                  image_set) -> None:
    photos = image_set[1][:2]
    run(photos, out=tmp_path / "v.jsonl", model=batch_model, features=True, **OPTS)
    rows = read_rows(tmp_path / "v.jsonl")
    with Classifier(batch_model, precision="auto") as clf:  # what batch's default precision runs here
        from vggedge.preprocess import preprocess

        want = clf.scores(preprocess(photos, clf.spec))
    np.testing.assert_allclose([r["features"] for r in rows], want, rtol=1e-5, atol=1e-7)
    assert "top_k_index" not in rows[0]


def test_npy_needs_features(tmp_path: Path, batch_model: Path, image_set) -> None:
    with pytest.raises(ConfigError, match=r"\.npy holds feature vectors"):
        run(image_set[1][:1], out=tmp_path / "x.npy", model=batch_model, **OPTS)


def test_tar_shard_members_are_images(tmp_path: Path, batch_model: Path, image_set, classifier_top1) -> None:
    shard = tmp_path / "shard-000.tar"
    photos = [p for p in image_set[1] if "/small/" in p][:4]
    with tarfile.open(shard, "w") as tar:
        for i, photo in enumerate(photos):
            tar.add(photo, arcname=f"{i:04d}.jpg")
            tar.addfile(tarfile.TarInfo(f"{i:04d}.cls"), None)  # WebDataset label beside the image: ignored
        tar.add(image_set[0] / "empty.jpg", arcname="0009.jpg")
    out = tmp_path / "tar.jsonl"
    summary = run([shard], out=out, model=batch_model, **OPTS)
    rows = read_rows(out)
    assert [r["path"] for r in rows] == [f"{shard}::{i:04d}.jpg" for i in range(4)]
    assert [r["top_k_index"][0] for r in rows] == [classifier_top1[p] for p in photos]
    assert summary.failed == 1 and read_rows(errors_path_for(out))[0]["path"] == f"{shard}::0009.jpg"


def test_fsspec_url_inputs(tmp_path: Path, batch_model: Path, image_set, classifier_top1) -> None:
    fsspec = pytest.importorskip("fsspec", reason="fsspec is not installed (it comes with vggedge[ray])")
    fs = fsspec.filesystem("memory")
    photo = image_set[1][0]
    fs.pipe("/vggedge-test/a/photo.jpg", Path(photo).read_bytes())
    fs.pipe("/vggedge-test/a/broken.jpg", b"nope")
    out = tmp_path / "url.jsonl"
    summary = run(["memory://vggedge-test/a/"], out=out, model=batch_model, **OPTS)
    rows = read_rows(out)
    assert [r["path"] for r in rows] == [fs.unstrip_protocol("/vggedge-test/a/photo.jpg")]
    assert rows[0]["top_k_index"][0] == classifier_top1[photo] and summary.failed == 1


def test_cli_batch_exit_status_and_summary(tmp_path: Path, batch_model: Path, image_set,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.csv"
    code = main(["batch", str(image_set[0]), "--out", str(out), "--model", str(batch_model), "--batch-size", "8",
                 "--max-pixels", str(MAX_PIXELS), "--no-progress"])
    assert code == EXIT_PARTIAL
    text = capsys.readouterr().out
    assert f"{len(image_set[1])} images written to {out}" in text and f"{len(image_set[2])} failed" in text
    assert main(["batch", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.jsonl"),
                 "--model", str(batch_model)]) == 1
    assert "no such file, folder or glob" in capsys.readouterr().err


def test_decoder_choice_is_reported_recorded_and_checked(tmp_path: Path, batch_model: Path, image_set,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from vggedge.errors import BackendUnavailable

    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    photos = image_set[1][:2]
    summary = run(photos, out=tmp_path / "auto.jsonl", model=batch_model, **OPTS)
    assert summary.decoder == "cpu" and "the backend (ort-cpu) runs on the CPU" in summary.decoder_reason
    assert "decoded on the cpu" in summary.format() and summary.to_dict()["decoder"] == "cpu"
    assert json.loads((tmp_path / "auto.jsonl.job.json").read_text())["decoder"] == "auto"  # what was asked
    out = tmp_path / "cli.jsonl"
    assert main(["batch", *photos, "--out", str(out), "--model", str(batch_model), "--decoder", "cpu",
                 "--no-progress", "--json"]) == EXIT_OK
    done = json.loads(capsys.readouterr().out)
    assert (done["decoder"], done["decoder_reason"], done["images"]) == ("cpu", "asked for the CPU decode pool", 2)
    # a resume may decode elsewhere: the decoder is recorded, never compared
    assert run(photos, out=out, model=batch_model, resume=True, **OPTS).skipped == 2
    with pytest.raises(BackendUnavailable, match=r"GPU decoding is not possible: the backend \(ort-cpu\)"):
        run(photos, out=tmp_path / "gpu.jsonl", model=batch_model, decoder="gpu", **OPTS)
    assert not (tmp_path / "gpu.jsonl").exists()
    with pytest.raises(ConfigError, match="decoder 'nvjpeg': choose one of auto, gpu, cpu"):
        run(photos, out=tmp_path / "x.jsonl", model=batch_model, decoder="nvjpeg", **OPTS)


def test_process_workers_decode_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the GPU could decode, process workers still decode on the CPU: auto says so, gpu is refused."""
    import types

    from vggedge.apps.batch.local import choose_decoder
    from vggedge.runtime import device_path
    from vggedge.runtime.gpu.decode import DecoderChoice

    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    monkeypatch.setattr(device_path, "select_decoder", lambda want, **kw: DecoderChoice("gpu", "on the GPU"))
    runner = types.SimpleNamespace(name="ort-cuda")
    assert choose_decoder(None, runner, None, "thread").kind == "gpu"
    fallback = choose_decoder("auto", runner, None, "process")
    assert fallback.kind == "cpu" and "process workers decode on the CPU" in fallback.reason
    with pytest.raises(ConfigError, match="decoder 'gpu'.*--worker-kind process"):
        choose_decoder("gpu", runner, None, "process")


def test_import_vggedge_stays_light() -> None:
    code = ("import sys, vggedge; assert 'vggedge.apps.batch' not in sys.modules; "
            "assert vggedge.batch.run is not None; assert 'vggedge.apps.batch' in sys.modules; "
            "assert 'ray' not in sys.modules and 'pyarrow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert vggedge.batch.BatchSummary is not None


def test_decode_prefetch_is_bounded() -> None:
    """Memory stays flat: the decode pool never runs more than ``ahead`` items past the consumer."""
    from concurrent.futures import ThreadPoolExecutor

    from vggedge.apps.batch.local import bounded_map

    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield i

    with ThreadPoolExecutor(2) as pool:
        results = bounded_map(pool, lambda x: x * 2, source(), ahead=8)
        got = []
        for value in results:
            got.append(value)
            assert len(pulled) - len(got) <= 8
    assert got == [2 * i for i in range(1000)]


def test_resume_toggling_features_is_refused(tmp_path: Path, batch_model: Path, image_set) -> None:
    """Issue 23: a resume with --features on a CSV of labels appended rows read_rows could not read."""
    photos = image_set[1][:2]
    out = tmp_path / "r.csv"
    run(photos, out=out, model=batch_model, **OPTS)
    before = out.read_bytes()
    with pytest.raises(ConfigError, match=r"--resume .*features: False then, True now"):
        run(image_set[1][:3], out=out, model=batch_model, resume=True, features=True, **OPTS)
    job = out.with_name("r.csv.job.json")
    job.unlink()  # an output from before job records: the CSV header still tells
    with pytest.raises(ConfigError, match=r"--features differs"):
        run(image_set[1][:3], out=out, model=batch_model, resume=True, features=True, **OPTS)
    assert out.read_bytes() == before and len(read_rows(out)) == 2



def test_an_engine_with_its_sidecar_runs(tmp_path: Path, batch_model: Path, image_set, classifier_top1,
                                         fake_trt_machine, engine_writer) -> None:
    """``--model x.plan``: the spec comes from the engine's sidecar (fake TensorRT runs its source ONNX)."""
    plan = engine_writer(batch_model, tmp_path)
    _, good, _ = image_set
    photos = [p for p in good if Path(p).parent.name not in ("small", "deeper")][:4]
    summary = run(photos, out=tmp_path / "engine.jsonl", model=plan, **OPTS)
    assert (summary.backend, summary.precision, summary.images, summary.failed) == ("trt", "fp32", 4, 0)
    rows = read_rows(tmp_path / "engine.jsonl")
    assert {r["path"]: r["top_k_index"][0] for r in rows} == {p: classifier_top1[p] for p in photos}
    assert {(r["model"], r["backend"]) for r in rows} == {(plan.name, "trt")}
    assert len(fake_trt_machine.runner.made) == 1
