"""torchvision ``vgg16-397923af.pth`` state dicts.

Keys ``features.{0,2,5,...,28}.weight`` (OIHW), ``classifier.{0,3,6}.weight``
(out, in), fc6 columns already in (c, h, w) order. Input: RGB /255, ImageNet
mean/std, shorter side 256 then centre crop 224. Needs PyTorch to unpickle
(``torch.load(weights_only=True)``: no arbitrary code runs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import WeightsError
from ...spec import TORCHVISION
from ..vgg16 import VGG16Options, conv_layers
from .base import LoadedWeights

FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CLASSIFIER_KEYS = {"fc1": "classifier.0", "fc2": "classifier.3", "predictions": "classifier.6"}


def torch_keys() -> dict[str, str]:
    """Keras layer name -> torchvision state-dict prefix."""
    keys = {layer: f"features.{i}" for (layer, _), i in zip(conv_layers(), FEATURE_INDICES)}
    keys.update(CLASSIFIER_KEYS)
    return keys


def load_pth(path: str | Path, options: VGG16Options) -> LoadedWeights:
    """Read a torchvision VGG16 state dict into canonical layout."""
    path = Path(path)
    try:
        import torch
    except ImportError:
        raise WeightsError(
            f"{path}: reading torchvision .pth files needs PyTorch (pip install torch; the CPU build is enough). "
            "Alternatively use the Keras .h5 or the .npz weights, which need no PyTorch."
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        raise WeightsError(f"{path}: not a loadable PyTorch state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for layer, prefix in torch_keys().items():
        if layer in CLASSIFIER_KEYS and not options.include_top:
            continue
        for part, suffix in (("kernel", "weight"), ("bias", "bias")):
            key = f"{prefix}.{suffix}"
            if key not in state:
                raise WeightsError(f"{path}: missing {key!r} (layer {layer!r}); "
                                   f"the file has keys {sorted(state)[:6]}...")
            arrays[f"{layer}/{part}"] = state[key].detach().float().numpy().astype(np.float32, copy=False)
    return LoadedWeights(arrays, TORCHVISION, "torchvision", str(path))
