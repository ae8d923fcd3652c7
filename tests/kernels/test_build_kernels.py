"""CMakeLists.txt builds kernels/preprocess.cu into a fatbin (needs nvcc and cmake; skips without them)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vggedge.runtime.gpu.gpu_preprocess import fatbin_targets

ROOT = Path(__file__).resolve().parents[2]
WANTED_SASS = ("72", "75", "80", "86", "87", "89", "90")


def _tool(name: str) -> str | None:
    """``name`` on PATH, or next to nvcc / in the CUDA toolkit."""
    found = shutil.which(name)
    if found:
        return found
    nvcc = shutil.which("nvcc")
    for folder in ([Path(nvcc).resolve().parent] if nvcc else []) + [Path("/usr/local/cuda/bin")]:
        if (folder / name).is_file():
            return str(folder / name)
    return None


def _nvcc_list(flag: str, prefix: str) -> set[str]:
    out = subprocess.run(["nvcc", flag], capture_output=True, text=True).stdout
    return set(re.findall(prefix + r"_(\d+)", out))


def _nvcc_sass() -> set[str]:
    return _nvcc_list("--list-gpu-code", "sm")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the CUDA toolkit is needed to build the kernels")
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH")
    build = tmp_path_factory.mktemp("kernels") / "build"
    configure = subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build)], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    done = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return build / "kernels" / "preprocess.fatbin", configure.stdout


def test_fatbin_holds_every_supported_architecture(built: tuple[Path, str]) -> None:
    fatbin, log = built
    assert fatbin.is_file() and fatbin.stat().st_size > 0
    supported = _nvcc_sass()
    expected = {f"sm_{a}" for a in WANTED_SASS if a in supported}
    targets = fatbin_targets(fatbin.read_bytes(), str(fatbin))
    assert expected <= set(targets)
    assert ("compute_90" in targets) == ("90" in _nvcc_list("--list-gpu-arch", "compute"))  # PTX for newer GPUs
    dropped = [f"sm_{a}" for a in WANTED_SASS if a not in supported]
    for arch in dropped:  # e.g. CUDA 13 has no sm_72: left out, and said so
        assert arch in log and "does not support" in log


def test_cuobjdump_lists_the_same_elf_targets(built: tuple[Path, str]) -> None:
    cuobjdump = _tool("cuobjdump")
    if cuobjdump is None:
        pytest.skip("cuobjdump not found (not on PATH nor beside nvcc)")
    fatbin, _ = built
    listing = subprocess.run([cuobjdump, "--list-elf", str(fatbin)], capture_output=True, text=True, check=True).stdout
    elf = set(re.findall(r"\.(sm_\d+)\.cubin", listing))
    assert elf == {t for t in fatbin_targets(fatbin.read_bytes()) if t.startswith("sm_")}
    assert {f"sm_{a}" for a in WANTED_SASS if a in _nvcc_sass()} <= elf


def test_kernel_entry_points_are_extern_c(built: tuple[Path, str]) -> None:
    data = built[0].read_bytes()
    for name in (b"vggedge_preprocess_f32", b"vggedge_preprocess_f16"):
        assert name in data  # unmangled, so pycuda's get_function finds them by name
