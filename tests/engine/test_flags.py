"""flags.py: TensorRT version -> flag names, as tables per release branch (no TensorRT needed)."""
from __future__ import annotations

import pytest

from vggedge.errors import ConfigError
from vggedge.engine.flags import (PRECISIONS, TrtVersion, builder_flags, calibrator_available, check_batch,
                                  make_plan, network_flags, parse_version, supports_version_compatible)

VERSIONS = ("8.5.2", "8.6.1", "10.3.0", "10.16.0", "11.4.1")

# (version, ONNX carries its precision) -> NetworkDefinitionCreationFlag names; the same for every precision.
NETWORK = {
    ("8.5.2", False): ("EXPLICIT_BATCH",), ("8.5.2", True): ("EXPLICIT_BATCH",),
    ("8.6.1", False): ("EXPLICIT_BATCH",), ("8.6.1", True): ("EXPLICIT_BATCH",),
    ("10.3.0", False): (), ("10.3.0", True): ("STRONGLY_TYPED",),
    ("10.16.0", False): (), ("10.16.0", True): ("STRONGLY_TYPED",),
    ("11.4.1", False): ("STRONGLY_TYPED",), ("11.4.1", True): ("STRONGLY_TYPED",),
}

WEAK = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}
NONE = {"fp32": (), "fp16": (), "int8": ()}
# (version, strongly typed) -> {precision: BuilderFlag names}. 8.x cannot be strongly typed: flags always.
BUILDER = {
    ("8.5.2", False): WEAK, ("8.5.2", True): WEAK,
    ("8.6.1", False): WEAK, ("8.6.1", True): WEAK,
    ("10.3.0", False): WEAK, ("10.3.0", True): NONE,
    ("10.16.0", False): WEAK, ("10.16.0", True): NONE,
    ("11.4.1", False): NONE, ("11.4.1", True): NONE,
}

CASES = [(v, p, st) for v in VERSIONS for p in PRECISIONS for st in (False, True)]


@pytest.mark.parametrize("version,precision,strongly_typed", CASES)
def test_network_flags_table(version: str, precision: str, strongly_typed: bool) -> None:
    assert network_flags(version, precision, strongly_typed) == NETWORK[version, strongly_typed]


@pytest.mark.parametrize("version,precision,strongly_typed", CASES)
def test_builder_flags_table(version: str, precision: str, strongly_typed: bool) -> None:
    assert builder_flags(version, precision, strongly_typed) == BUILDER[version, strongly_typed][precision]


@pytest.mark.parametrize("version", VERSIONS)
def test_no_flag_a_version_lacks(version: str) -> None:
    """8.x never gets STRONGLY_TYPED; 11.x never EXPLICIT_BATCH, FP16 or INT8; 10.x never EXPLICIT_BATCH."""
    major = TrtVersion.parse(version).major
    names = {n for p in PRECISIONS for st in (False, True)
             for n in network_flags(version, p, st) + builder_flags(version, p, st)}
    if major == 8:
        assert "STRONGLY_TYPED" not in names
    if major >= 10:
        assert "EXPLICIT_BATCH" not in names
    if major == 11:
        assert not names & {"FP16", "INT8"}


@pytest.mark.parametrize("func", [network_flags, builder_flags])
def test_invalid_precision_lists_choices(func) -> None:
    with pytest.raises(ConfigError, match=r"'bf16'.*fp32, fp16, int8"):
        func("10.3.0", "bf16", False)


@pytest.mark.parametrize("text,expected", [
    ("8.5.2.2", (8, 5, 2)), ("8.6.1", (8, 6, 1)), ("10.3.0", (10, 3, 0)), ("10.16.0", (10, 16, 0)),
    ("11.4.1", (11, 4, 1)), ("10.3", (10, 3, 0)), ("10.3.0.post1", (10, 3, 0)), (" 8.6.2.3 ", (8, 6, 2)),
])
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    v = TrtVersion.parse(text)
    assert (v.major, v.minor, v.patch) == expected
    assert str(v) == "%d.%d.%d" % expected and v.short == "%d.%d" % expected[:2]


@pytest.mark.parametrize("garbage", ["", "ten", "10", "10.x", "abc.def", "1.2.3 beta gamma", None, 10.3])
def test_parse_version_garbage(garbage) -> None:
    with pytest.raises(ConfigError, match="not understood"):
        TrtVersion.parse(garbage)


def test_versions_compare_numerically() -> None:
    assert TrtVersion.parse("10.16.0") > TrtVersion.parse("10.3.0") > TrtVersion.parse("8.6.1")


@pytest.mark.parametrize("version", ["7.2.3", "8.4.3", "9.2.0"])
def test_unsupported_versions(version: str) -> None:
    with pytest.raises(ConfigError, match="not supported"):
        parse_version(version)


@pytest.mark.parametrize("version,expected", [("8.5.2", False), ("8.6.1", True), ("10.3.0", True),
                                              ("11.4.1", True)])
def test_supports_version_compatible(version: str, expected: bool) -> None:
    assert supports_version_compatible(version) is expected


@pytest.mark.parametrize("version,expected", [("8.5.2", True), ("10.16.0", True), ("11.4.1", False)])
def test_calibrator_available(version: str, expected: bool) -> None:
    assert calibrator_available(version) is expected


@pytest.mark.parametrize("batch", [(8, 4, 32), (0, 1, 1), (1, 8, 4), (1, 2), "1,8,32"])
def test_bad_batch(batch) -> None:
    with pytest.raises(ConfigError, match="MIN"):
        check_batch(batch)


def test_plan_strongly_typed_fp16_on_10() -> None:
    plan = make_plan("10.3.0", "fp16", onnx_precision="fp16", batch=(1, 4, 16), workspace_bytes=1 << 28)
    assert plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == () and plan.strongly_typed
    text = plan.describe()
    for part in ("TensorRT 10.3.0", "fp16", "strongly typed", "STRONGLY_TYPED", "1/4/16", "256 MiB"):
        assert part in text


def test_plan_weak_fp16_on_8() -> None:
    plan = make_plan("8.5.2.2", "fp16")
    assert plan.network_flags == ("EXPLICIT_BATCH",) and plan.builder_flags == ("FP16",)
    assert not plan.strongly_typed and "weakly typed" in plan.describe()


def test_plan_int8_qdq_on_8_sets_int8_and_fp16() -> None:
    assert make_plan("8.6.1", "int8", onnx_precision="int8").builder_flags == ("INT8", "FP16")


@pytest.mark.parametrize("version,precision,onnx,match", [
    ("11.4.1", "fp16", "fp32", "always strongly typed"),
    ("10.3.0", "int8", "fp32", "Q/DQ"),
    ("8.5.2", "int8", "fp32", "Q/DQ"),
    ("10.3.0", "int8", "fp16", "carries fp16"),
    ("10.3.0", "fp32", "int8", "carries int8"),
    ("10.3.0", "fp16", "fp8", "fp8"),
])
def test_plan_refuses_wrong_engines(version: str, precision: str, onnx: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_plan(version, precision, onnx_precision=onnx)


def test_plan_refuses_bad_workspace() -> None:
    with pytest.raises(ConfigError, match="workspace"):
        make_plan("10.3.0", "fp32", workspace_bytes=0)


def test_docs_jetson_table_is_generated_from_flags() -> None:
    from pathlib import Path

    from vggedge.engine.flags import JETPACK, jetpack_table

    page = (Path(__file__).resolve().parents[2] / "docs" / "jetson.md").read_text()
    assert jetpack_table() in page  # regenerate docs/jetson.md's table from JETPACK when either changes
    section = page.split("# Jetson\n", 1)[1].split("\n## ", 1)[0]
    for jp in JETPACK:
        assert f"| {jp.release} | {jp.tensorrt} | {jp.cuda} | {jp.python} |" in section


def test_jetpack_releases_that_run_the_trt_backend() -> None:
    from vggedge.engine.flags import JETPACK

    runs = {jp.release: jp.runs_trt_backend for jp in JETPACK}
    assert runs == {"4.6.x": False,  # TensorRT 8.2 is below the supported 8.5
                    "5.1.x": False,  # TensorRT 8.5.2 is fine, but its bindings are for Python 3.8
                    "6.0": True, "6.1 / 6.2": True, "7.2.2+": True}
    for jp in JETPACK:  # every TensorRT the table names parses
        TrtVersion.parse(jp.tensorrt.rstrip("+"))
