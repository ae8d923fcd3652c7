"""The default model: export (or reuse) VGG16 from the best weights at hand, for commands given no --model."""
from __future__ import annotations

import logging
from pathlib import Path

from ..paths import ENGINES_DIR
from ..spec import ModelSpec, spec_path_for
from .export import export_options, export_vgg16
from .weights import download as dl
from .weights import is_synthetic, weights_identity

log = logging.getLogger(__name__)
#: where the demo, classify, build and bench put the default model
DEFAULT_MODEL_DIR = ENGINES_DIR / "demo"


def find_cached_weights() -> Path | None:
    """A verified published weight file in the user's cache, if any."""
    folder = dl.cache_dir() / "weights"
    for entry in dl.REGISTRY.values():
        path = folder / entry.filename
        if path.is_file():
            try:
                dl.verify_file(path, entry)
            except Exception as exc:  # a corrupt cache entry is reported, then skipped
                log.warning("ignoring cached %s: %s", path, exc)
                continue
            return path
    return None


def prepare_model(weights: str | Path | None, out_dir: Path = DEFAULT_MODEL_DIR, seed: int = 0) -> tuple[Path, bool]:
    """Export (or reuse) the 224x224 ImageNet VGG16 ONNX; returns its path and whether the weights are random.

    ``weights=None`` takes a cached published file, else deterministic random
    weights (with a loud warning: the labels are then meaningless). An existing
    export from the same weights is reused.
    """
    source = weights or find_cached_weights()
    is_random = source is None or is_synthetic(source)
    source = source or f"normalised:{seed}"
    if is_random:
        log.warning("*** NO PRETRAINED WEIGHTS: using deterministic RANDOM weights (%s, standardised on the sample "
                    "photos). The labels printed below are MEANINGLESS. Run `vggedge weights download keras` on a "
                    "machine with internet, or pass --weights FILE. ***", source)
    onnx_path = Path(out_dir) / "vgg16.onnx"
    if onnx_path.exists() and spec_path_for(onnx_path).exists():
        spec = ModelSpec.load(spec_path_for(onnx_path))
        same_source = spec.weights_source == str(source) if is_random else True  # a file is known by its bytes
        if same_source and spec.weights_sha256 == weights_identity(source):
            log.info("reusing %s (built from the same weights)", onnx_path)
            return onnx_path, is_random
    export_vgg16(source, onnx_path, export_options(source))  # a .keras archive brings its own options
    return onnx_path, is_random
