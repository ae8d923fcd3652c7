"""Small structured models shared by several test folders (a module, not conftest: one name, one file).

Every 32x32 VGG16 a test needs comes from the session fixture ``vgg32`` (tests/conftest.py), which exports
each (weights, classes) pair once per session (~135 MB, 2-6 s each on 2 cores). A test folder that writes
variants, engines or caches beside the model takes its own hard-linked copy with :func:`link_model`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options
from vggedge.spec import spec_path_for


def options_32(num_classes: int) -> VGG16Options:
    """VGG16 with its top, at 32x32, without rescaling."""
    return VGG16Options(include_rescaling=False, include_top=True, num_classes=num_classes, input_shape=(32, 32, 3))


def normalised_32(folder: Path, num_classes: int, name: str = "vgg16_32.onnx") -> Path:
    """``normalised:0`` weights at 32x32: fast on 2 cores, with clear, stable top-1 answers on the calib photos."""
    return export_vgg16("normalised:0", folder / name, options_32(num_classes)).onnx_path


def link_model(model: Path, folder: Path, name: str | None = None) -> Path:
    """``model`` and its spec sidecar hard-linked (copied where links fail) into ``folder`` as ``name``.

    Writers replace files by renaming (vggedge's atomic writes), so the shared original is never changed; a
    test that rewrites the model file in place must copy it instead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or model.name)
    try:
        os.link(model, path)
    except OSError:
        shutil.copy(model, path)
    shutil.copy(spec_path_for(model), spec_path_for(path))
    return path


def remove(folder: Path) -> None:
    """Delete a model folder (100-150 MB): do not leave it in pytest's kept temp folders."""
    shutil.rmtree(folder, ignore_errors=True)
