"""Weight loading: one module per published format, all returning canonical arrays.

``load_weights("vgg16_weights.npz", options)``, a ``.h5`` (Keras 2 or Keras 3
``.weights.h5``) / ``.keras`` archive / ``.pth`` path, or
``"random"`` / ``"random:SEED"`` for deterministic He-initialised weights, or
``"normalised[:SEED]"`` for random weights standardised on real photographs.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import WeightsError
from ...spec import CAFFE_RGB
from ..vgg16 import VGG16Options, check_weights, random_weights
from ...catalogue import file_sha256
from .base import LoadedWeights
from .keras_archive import is_keras_archive, load_keras_archive, read_config as archive_config
from .keras_h5 import load_h5
from .npz import load_npz
from .torchvision_pth import load_pth

FORMATS = {".npz": load_npz, ".h5": load_h5, ".hdf5": load_h5, ".keras": load_keras_archive,
           ".pth": load_pth, ".pt": load_pth}
MAGIC = {b"\x89HDF\r\n\x1a\n": load_h5}

__all__ = ["LoadedWeights", "load_weights", "load_random", "is_synthetic", "FORMATS", "file_sha256",
           "archive_config", "is_keras_archive"]


def is_synthetic(source: str | Path) -> bool:
    """True for generated weights (``random[:SEED]``, ``normalised[:SEED]``), whose labels mean nothing."""
    return str(source).split(":")[0] in ("random", "normalised")


def weights_identity(source: str | Path) -> str | None:
    """The ``weights_sha256`` an export from ``source`` records: the file's sha256, the photo set's
    fingerprint for ``normalised[:SEED]`` (the same seed fitted on other photos is another model), None for ``random``."""
    text = str(source)
    if text.split(":")[0] == "normalised":
        from .normalised import photos_fingerprint, repository_photos

        return photos_fingerprint(repository_photos())
    if text.split(":")[0] == "random":
        return None
    return file_sha256(source)


def load_random(options: VGG16Options, seed: int = 0) -> LoadedWeights:
    """Deterministic random weights (labels are meaningless; for tests and benchmarks)."""
    return LoadedWeights(random_weights(options, seed), CAFFE_RGB, f"random:{seed}")


def load_weights(source: str | Path, options: VGG16Options, *, verify_hash: bool = True) -> LoadedWeights:
    """Load weights from a file (format from its suffix, else its magic bytes) or ``random[:SEED]``.

    The result is shape-checked against ``options``; errors name the file, the
    layer and both shapes.
    """
    text = str(source)
    if text == "normalised" or text.startswith("normalised:"):
        from .normalised import load_normalised

        seed_text = text.partition(":")[2] or "0"
        if not seed_text.isdigit():
            raise WeightsError(f"weights {text!r}: expected 'normalised' or 'normalised:SEED' with an integer seed")
        return load_normalised(options, int(seed_text))
    if text == "random" or text.startswith("random:"):
        seed_text = text.partition(":")[2] or "0"
        if not seed_text.isdigit():
            raise WeightsError(f"weights {text!r}: expected 'random' or 'random:SEED' with an integer seed")
        return load_random(options, int(seed_text))
    path = Path(source)
    if not path.is_file():
        raise WeightsError(f"{path}: weight file not found (expected a .npz, .h5, .keras or .pth file, or 'random')")
    loader = FORMATS.get(path.suffix.lower()) or _sniff(path)
    loaded = loader(path, options)
    check_weights(loaded.arrays, options, str(path))
    if verify_hash:
        loaded = LoadedWeights(loaded.arrays, loaded.preprocessing, loaded.source, str(path), file_sha256(path))
    return loaded


def _sniff(path: Path):
    with open(path, "rb") as handle:
        head = handle.read(8)
    for magic, loader in MAGIC.items():
        if head.startswith(magic):
            return loader
    if head.startswith(b"PK") and is_keras_archive(path):
        return load_keras_archive
    raise WeightsError(f"{path}: unknown weight format (suffix {path.suffix!r}); expected one of "
                       f"{sorted(FORMATS)} (npz TensorFlow port, Keras h5 or .keras, torchvision pth)")
