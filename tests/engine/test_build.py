"""build.py: our TensorRT calls, checked against a small fake ``tensorrt`` module.

The fake only records what we call and mimics which enum members each release
lacks (reading a missing member raises AttributeError, like the 11.x bindings).
These tests check *our* calls and error reports, not TensorRT's behaviour; the
``tensorrt``-marked tests at the end build a real engine where TensorRT exists.
"""
from __future__ import annotations

import enum
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vggedge.engine import build
from vggedge.engine.build import build_engine, load_engine, tensorrt_version
from vggedge.engine.trt_log import process_logger
from vggedge.engine.identity import EngineIdentity, engine_filename, sidecar_path
from vggedge.atomic import TargetError
from vggedge.errors import BackendUnavailable, ConfigError, EngineMismatch, ModelError
from vggedge.spec import ModelSpec, spec_path_for

GPU = ("Orin", "8.7")
# Members of NetworkDefinitionCreationFlag / BuilderFlag per release (bindings of each branch).
MEMBERS = {
    8: ({"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1}, ("FP16", "INT8", "TF32", "REFIT")),
    10: ({"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}, ("FP16", "INT8", "TF32", "VERSION_COMPATIBLE")),
    11: ({"STRONGLY_TYPED": 0}, ("TF32", "VERSION_COMPATIBLE")),
}


class Severity(enum.Enum):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)


class FakeEnum:
    """An enum whose every read is recorded; members the release lacks raise AttributeError."""

    def __init__(self, name: str, members: dict[str, Any], touched: list[str]) -> None:
        self.__dict__.update(__name__=name, _members=members, _touched=touched)

    def __getattr__(self, item: str) -> Any:
        self._touched.append(f"{self.__name__}.{item}")
        if item in self._members:
            return self._members[item]
        raise AttributeError(f"type object '{self.__name__}' has no attribute '{item}'")


def fake_trt(version: str, *, plan: Any = None, engine: Any = None, parse_errors: list[dict] = (),
             shape: tuple[int, ...] = (-1, 3, 224, 224)) -> tuple[Any, SimpleNamespace]:
    """A stand-in ``tensorrt`` module and the record of what was called on it."""
    rec = SimpleNamespace(touched=[], network_bits=None, flags=[], pool=None, shapes=None, cache_in=None,
                          set_cache=None, deserialized=0, parsed=None, loggers=[])
    net_members, builder_names = MEMBERS[int(version.split(".")[0])]

    class ILogger:
        def __init__(self) -> None:
            pass

    class ParserError:
        def __init__(self, **fields: Any) -> None:
            for key, value in fields.items():
                setattr(self, key, lambda value=value: value)

    class OnnxParser:
        def __init__(self, network: Any, logger: Any) -> None:
            self.logger, self.num_errors = logger, len(parse_errors)

        def parse(self, data: bytes, path: str) -> bool:
            rec.parsed = (data, path)
            if parse_errors:
                self.logger.log(Severity.ERROR, "ModelImporter.cpp: failed to import the model")
            return not parse_errors

        def get_error(self, i: int) -> ParserError:
            return ParserError(**parse_errors[i])

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return b"CACHE+" + self.blob

    class Config:
        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            rec.pool = (pool, size)

        def set_flag(self, flag: Any) -> None:
            rec.flags.append(flag)

        def add_optimization_profile(self, profile: Any) -> int:
            return 0

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            rec.cache_in = bytes(blob)
            return TimingCache(bytes(blob))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            rec.set_cache, self.cache = (cache.blob, ignore_mismatch), cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.cache

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            rec.shapes = (name, lo, opt, hi)

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger
            rec.loggers.append(logger)

        def create_network(self, flags: int) -> Any:
            rec.network_bits = flags
            tensor = SimpleNamespace(name="images", shape=shape)
            return SimpleNamespace(num_inputs=1, get_input=lambda i: tensor)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Any, config: Any) -> Any:
            self.logger.log(Severity.INFO, "chatty info line")
            if plan is None:
                self.logger.log(Severity.ERROR, "Error Code 4: Internal Error (out of workspace)")
            return plan

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.logger = logger
            rec.loggers.append(logger)

        def deserialize_cuda_engine(self, data: bytes) -> Any:
            rec.deserialized += 1
            if engine is None:
                self.logger.log(Severity.ERROR, "expecting library version 10.3.0.26 got 10.3.0.30, please rebuild")
            return engine

    trt = SimpleNamespace(
        __version__=version, ILogger=ILogger, OnnxParser=OnnxParser, Builder=Builder, Runtime=Runtime,
        NetworkDefinitionCreationFlag=FakeEnum("NetworkDefinitionCreationFlag", net_members, rec.touched),
        BuilderFlag=FakeEnum("BuilderFlag", {n: f"BuilderFlag.{n}" for n in builder_names}, rec.touched),
        MemoryPoolType=FakeEnum("MemoryPoolType", {"WORKSPACE": "MemoryPoolType.WORKSPACE"}, rec.touched))
    return trt, rec


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch):
    def install(version: str, **kwargs: Any) -> SimpleNamespace:
        trt, rec = fake_trt(version, **kwargs)
        monkeypatch.setattr(build, "_trt", lambda: trt)
        return rec
    return install


@pytest.fixture
def onnx(tmp_path: Path):
    def make(precision: str = "fp32") -> Path:
        path = tmp_path / f"vgg16.{precision}.onnx"
        path.write_bytes(b"not really onnx: the fake parser never reads it")
        ModelSpec(precision=precision).save(spec_path_for(path))
        return path
    return make


def test_without_tensorrt(monkeypatch: pytest.MonkeyPatch, onnx, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail, installed or not
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        build_engine(onnx(), tmp_path / "x.plan", precision="fp16", gpu=GPU)
    assert tensorrt_version() is None
    plan = tmp_path / "y.plan"
    plan.write_bytes(b"plan")
    EngineIdentity("a" * 64, "fp16", (1, 8, 32), "10.3.0", *GPU).save(plan)
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        load_engine(plan, gpu=GPU)


def test_fake_is_faithful_about_missing_members() -> None:
    trt, rec = fake_trt("11.4.1")
    for enum_, name in ((trt.BuilderFlag, "FP16"), (trt.BuilderFlag, "INT8"),
                        (trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")):
        with pytest.raises(AttributeError):
            getattr(enum_, name)


EXPECTED = [  # version, precision, ONNX precision, network flag bits, builder flags set
    ("8.5.2.2", "fp32", "fp32", 1 << 0, []),
    ("8.5.2.2", "fp16", "fp32", 1 << 0, ["BuilderFlag.FP16"]),
    ("8.6.1", "int8", "int8", 1 << 0, ["BuilderFlag.INT8", "BuilderFlag.FP16"]),
    ("10.3.0", "fp16", "fp32", 0, ["BuilderFlag.FP16"]),
    ("10.3.0", "fp16", "fp16", 1 << 1, []),
    ("10.16.0", "int8", "int8", 1 << 1, []),
    ("11.4.1", "fp32", "fp32", 1 << 0, []),
    ("11.4.1", "fp16", "fp16", 1 << 0, []),
    ("11.4.1", "int8", "int8", 1 << 0, []),
]


@pytest.mark.parametrize("version,precision,onnx_precision,bits,flags", EXPECTED)
def test_flags_set_per_version(use, onnx, tmp_path: Path, version: str, precision: str, onnx_precision: str,
                               bits: int, flags: list[str]) -> None:
    rec = use(version)
    with pytest.raises(ModelError, match="out of workspace"):  # the fake's build returns None
        build_engine(onnx(onnx_precision), tmp_path / "x.plan", precision=precision, gpu=GPU)
    assert rec.network_bits == bits and rec.flags == flags
    touched = set(rec.touched)
    major = int(version.split(".")[0])
    if major == 8:
        assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" in touched
        assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" not in touched
    else:
        assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" not in touched
    if major == 11:
        assert not touched & {"BuilderFlag.FP16", "BuilderFlag.INT8"}
    assert rec.pool == ("MemoryPoolType.WORKSPACE", 1 << 30)
    assert rec.shapes == ("images", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))


def test_fp16_from_fp32_onnx_on_11_refused_before_building(use, onnx, tmp_path: Path) -> None:
    rec = use("11.4.1")
    with pytest.raises(ConfigError, match="always strongly typed"):
        build_engine(onnx("fp32"), tmp_path / "x.plan", precision="fp16", gpu=GPU)
    assert rec.network_bits is None and rec.touched == []


def test_none_plan_reports_logged_lines(use, onnx, tmp_path: Path) -> None:
    use("10.3.0")
    with pytest.raises(ModelError) as info:
        build_engine(onnx(), tmp_path / "x.plan", precision="fp32", gpu=GPU)
    message = str(info.value)
    assert "could not build a fp32 engine" in message and "[ERROR] Error Code 4" in message
    assert "chatty info line" not in message and not (tmp_path / "x.plan").exists()


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0"])
def test_parser_errors_are_listed(use, onnx, tmp_path: Path, version: str) -> None:
    errors = [dict(desc="only activation types allowed as input to this layer", node=7),
              dict(desc="unsupported datatype", node=12)]
    if version.startswith("10"):  # node_name / node_operator exist from 10.x on
        errors[0].update(node_name="conv1_1_bias_quant", node_operator="Conv")
    use(version, parse_errors=errors)
    with pytest.raises(ModelError) as info:
        build_engine(onnx(), tmp_path / "x.plan", precision="fp32", gpu=GPU)
    message = str(info.value)
    assert "failed with 2 error(s)" in message
    assert "node 7" in message and "only activation types allowed" in message
    assert "node 12" in message and "unsupported datatype" in message
    assert ("'conv1_1_bias_quant' (Conv)" in message) == version.startswith("10")
    assert "[ERROR] ModelImporter.cpp" in message


def test_bad_batch_and_input_name(use, onnx, tmp_path: Path) -> None:
    rec = use("10.3.0")
    with pytest.raises(ConfigError, match="MIN <= OPT <= MAX"):
        build_engine(onnx(), tmp_path / "x.plan", precision="fp32", batch=(8, 4, 32), gpu=GPU)
    assert rec.network_bits is None
    with pytest.raises(ModelError, match=r"no input 'pixels'; its inputs are \['images'\]"):
        build_engine(onnx(), tmp_path / "x.plan", precision="fp32", input_name="pixels", gpu=GPU)


def test_fixed_batch_onnx(use, onnx, tmp_path: Path) -> None:
    use("10.3.0", shape=(1, 3, 224, 224))
    with pytest.raises(ConfigError, match="fixed batch of 1; build with --batch 1,1,1"):
        build_engine(onnx(), tmp_path / "x.plan", precision="fp32", gpu=GPU)


def test_successful_build_writes_plan_sidecar_and_cache(use, onnx, tmp_path: Path) -> None:
    rec = use("10.3.0", plan=b"PLAN")
    cache = tmp_path / "cache" / "timing-trt10.3-sm87.cache"
    cache.parent.mkdir()
    cache.write_bytes(b"OLD")
    model = onnx("fp16")
    (tmp_path / "engines").mkdir()
    out = build_engine(model, tmp_path / "engines", precision="fp16", batch=(1, 4, 16), timing_cache_path=cache,
                       workspace_bytes=1 << 28, gpu=GPU, log=lambda line: None)
    ident = EngineIdentity.load(out)
    assert out.name == engine_filename(ident.model_sha256, "fp16", (1, 4, 16), "10.3.0", *GPU)
    assert out.read_bytes() == b"PLAN" and sidecar_path(out).is_file()
    assert (ident.precision, ident.batch, ident.gpu_name, ident.compute_capability) == ("fp16", (1, 4, 16), *GPU)
    assert ident.model_path == str(model) and ident.spec.precision == "fp16"
    assert rec.cache_in == b"OLD" and rec.set_cache == (b"OLD", False)
    assert cache.read_bytes() == b"CACHE+OLD" and rec.pool == ("MemoryPoolType.WORKSPACE", 1 << 28)
    assert rec.parsed == (model.read_bytes(), str(model))


def _built(tmp_path: Path) -> Path:
    plan = tmp_path / "x.plan"
    plan.write_bytes(b"PLAN")
    EngineIdentity("a" * 64, "fp16", (1, 8, 32), "10.3.0", *GPU, model_path="m.onnx").save(plan)
    return plan


def test_load_engine(use, tmp_path: Path) -> None:
    use("10.3.0", engine="ENGINE")
    loaded = load_engine(_built(tmp_path), gpu=GPU, precision="fp16", batch=8)
    assert loaded.engine == "ENGINE" and loaded.identity.precision == "fp16"


def test_none_engine_is_mismatch_with_log(use, tmp_path: Path) -> None:
    rec = use("10.3.0", engine=None)
    with pytest.raises(EngineMismatch) as info:
        load_engine(_built(tmp_path), gpu=GPU)
    message = str(info.value)
    assert rec.deserialized == 1
    assert "expecting library version 10.3.0.26 got 10.3.0.30" in message
    assert "vggedge build --model m.onnx --precision fp16 --batch 1,8,32" in message


def test_identity_checked_before_deserializing(use, tmp_path: Path) -> None:
    rec = use("10.16.0", engine="ENGINE")
    with pytest.raises(EngineMismatch, match=r"TensorRT version(.|\n)*GPU name: built for Orin, this machine has"):
        load_engine(_built(tmp_path), gpu=("NVIDIA H100 80GB HBM3", "9.0"))
    assert rec.deserialized == 0


def test_missing_plan(use, tmp_path: Path) -> None:
    use("10.3.0")
    with pytest.raises(EngineMismatch, match="no engine there"):
        load_engine(tmp_path / "absent.plan", gpu=GPU)


def test_process_logger_keeps_warnings_and_errors_per_operation() -> None:
    trt, _ = fake_trt("10.3.0")
    seen: list[str] = []
    logger = process_logger(trt)
    assert process_logger(trt) is logger  # one per process
    logger.log(Severity.ERROR, "before the operation")
    with logger.operation(seen.append) as op:
        for severity in Severity:
            logger.log(severity, severity.name.lower())
    logger.log(Severity.WARNING, "after")
    assert op.messages == ["[INTERNAL_ERROR] internal_error", "[ERROR] error", "[WARNING] warning", "[WARNING] after"]
    assert seen == ["TensorRT " + m for m in op.messages[:3]]  # echo only while the operation runs


def test_one_tensorrt_logger_for_every_build_and_load(use, onnx, tmp_path: Path) -> None:
    rec = use("10.3.0", plan=b"PLAN", engine=object())
    first = build_engine(onnx(), tmp_path / "a.plan", precision="fp32", gpu=GPU)
    build_engine(onnx(), tmp_path / "b.plan", precision="fp32", gpu=GPU)
    loaded = load_engine(first, gpu=GPU)
    load_engine(first, gpu=GPU)
    assert len(rec.loggers) == 4 and all(logger is rec.loggers[0] for logger in rec.loggers)
    rec.loggers[0].log(Severity.WARNING, "said while running")
    assert loaded.log.messages == ["[WARNING] said while running"]  # this load's slice, not the builds'


def test_failed_load_reports_only_its_own_messages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    trt, _ = fake_trt("10.3.0", engine=None)
    monkeypatch.setattr(build, "_trt", lambda: trt)
    process_logger(trt).log(Severity.ERROR, "earlier unrelated error")
    with pytest.raises(EngineMismatch) as info:
        load_engine(_built(tmp_path), gpu=GPU)
    assert "expecting library version" in str(info.value) and "unrelated" not in str(info.value)


def _tiny_onnx(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["predictions"])], "tiny",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["N", 3, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    ModelSpec(height=8, width=8, num_classes=None, labels=None).save(spec_path_for(path))
    return path


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_tiny_engine(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    try:
        gpu = build.gpu_identity()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    plan = build_engine(model, tmp_path, precision="fp32", batch=(1, 2, 4), workspace_bytes=1 << 26,
                        timing_cache_path=tmp_path / "timing.cache", gpu=gpu)
    loaded = load_engine(plan, precision="fp32", batch=(1, 2, 4))
    assert loaded.engine.num_io_tensors == 2
    assert (tmp_path / "timing.cache").stat().st_size > 0


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("stop", ["plan", "sidecar"])
def test_interrupted_write_leaves_no_partial_plan_or_sidecar(use, onnx, tmp_path: Path, monkeypatch,
                                                               stop: str) -> None:
    """Ctrl-C/SIGTERM (KeyboardInterrupt) while the plan or its sidecar is written: nothing half-written, no
    temporaries, and the previous plan + sidecar of the same name stay whole."""
    use("10.3.0", plan=b"NEW-PLAN" * 1000)
    model, out = onnx("fp16"), tmp_path / "engines"
    out.mkdir()
    kw = dict(precision="fp16", gpu=GPU, log=lambda line: None, timing_cache_path=out / "timing.cache")
    first = build_engine(model, out / "x.plan", **kw)
    first.write_bytes(b"OLD-PLAN")  # a complete earlier build under the final name
    before = _files(out)
    real_write_text = Path.write_text

    def half_then_interrupt(self: Path, text: str, *a, **k):  # the process dies half-way through the write
        real_write_text(self, text[: len(text) // 2], *a, **k)
        raise KeyboardInterrupt

    if stop == "plan":  # stopped after the plan's bytes, before its sidecar
        monkeypatch.setattr(EngineIdentity, "save", lambda self, plan: (_ for _ in ()).throw(KeyboardInterrupt()))
    else:
        monkeypatch.setattr(Path, "write_text", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_engine(model, out / "x.plan", **kw)
    after = _files(out)
    assert [n for n in after if n.endswith(".tmp")] == []
    assert after.keys() == before.keys()
    assert after["x.plan"] == b"OLD-PLAN" and after["x.engine.json"] == before["x.engine.json"]
    EngineIdentity.load(first)  # the sidecar still parses


def test_interrupted_first_build_leaves_nothing_under_final_names(use, onnx, tmp_path: Path, monkeypatch) -> None:
    use("10.3.0", plan=b"PLAN")
    monkeypatch.setattr(EngineIdentity, "save", lambda self, plan: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build_engine(onnx("fp16"), tmp_path / "engines" / "x.plan", precision="fp16", gpu=GPU, log=lambda l: None)
    assert list((tmp_path / "engines").iterdir()) == []  # no plan without its sidecar, no temporaries


def test_unwritable_engine_folder_is_refused_before_building(use, onnx, tmp_path: Path) -> None:
    rec = use("10.3.0", plan=b"PLAN")
    (tmp_path / "file").write_text("x")
    with pytest.raises(TargetError, match="is a file, not a folder"):
        build_engine(onnx("fp16"), tmp_path / "file" / "x.plan", precision="fp16", gpu=GPU, log=lambda l: None)
    assert rec.parsed is None  # refused before TensorRT parsed (let alone built) anything
