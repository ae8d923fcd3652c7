"""Small structured models shared by several test folders (a module, not conftest: one name, one file)."""
from __future__ import annotations

import shutil
from pathlib import Path

from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options


def normalised_32(folder: Path, num_classes: int, name: str = "vgg16_32.onnx") -> Path:
    """``normalised:0`` weights at 32x32: fast on 2 cores, with clear, stable top-1 answers on the calib photos."""
    options = VGG16Options(include_rescaling=False, include_top=True, num_classes=num_classes,
                           input_shape=(32, 32, 3))
    return export_vgg16("normalised:0", folder / name, options).onnx_path


def remove(folder: Path) -> None:
    """Delete a model folder (100-150 MB): do not leave it in pytest's kept temp folders."""
    shutil.rmtree(folder, ignore_errors=True)
