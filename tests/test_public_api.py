"""vggedge's public names: every one in __all__ resolves (most lazily, on first use) to what it names."""
from __future__ import annotations

import subprocess
import sys
import types

import vggedge


def test_every_public_name_resolves() -> None:
    for name in vggedge.__all__:
        assert getattr(vggedge, name) is not None, name
    assert set(vggedge.__all__) <= set(dir(vggedge))


def test_lazy_names_are_the_library_objects() -> None:
    from vggedge.apps.classify import Classifier
    from vggedge.preprocess import preprocess
    from vggedge.runtime.select import select_runner

    assert vggedge.Classifier is Classifier and vggedge.select_runner is select_runner
    assert isinstance(vggedge.batch, types.ModuleType) and callable(vggedge.stream)
    assert vggedge.preprocess is preprocess  # the function, although vggedge/preprocess.py is a submodule too


def test_import_loads_no_onnx_and_preprocess_stays_the_function() -> None:
    code = ("import sys, vggedge\n"
            "print('onnx' in sys.modules, 'onnxruntime' in sys.modules, type(vggedge.preprocess).__name__)\n"
            "import vggedge.apps.classify, vggedge.preprocess\n"  # importing the submodule again changes nothing
            "print(type(vggedge.preprocess).__name__, vggedge.ModelSpec.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["False False function", "function vggedge.spec"]
