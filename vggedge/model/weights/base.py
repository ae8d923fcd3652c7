"""What every loader returns: canonical arrays plus the preprocessing they expect."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import WeightsError
from ...spec import Preprocessing
from .convert import reverse_input_channels


@dataclass(frozen=True)
class LoadedWeights:
    """Canonical VGG16 arrays (see ``convert``), what input they expect, and where they came from.

    ``preprocessing`` is None when the file cannot say what its weights expect
    (Keras 3 files): the user states it (``export_vgg16(..., preprocessing=...)``).
    """

    arrays: dict[str, np.ndarray]
    preprocessing: Preprocessing | None
    source: str
    path: str | None = None
    sha256: str | None = None

    @property
    def num_classes(self) -> int | None:
        """Classes of the stored classifier, or None when the file has no top."""
        bias = self.arrays.get("predictions/bias")
        return None if bias is None else int(bias.shape[0])

    def with_channel_order(self, order: str) -> "LoadedWeights":
        """The same network fed ``order`` ("RGB"/"BGR") instead: conv1_1 and the mean/std are reordered."""
        if self.preprocessing is None:
            raise WeightsError(f"{self.path or self.source}: the channel order these weights expect is unknown; "
                               "state their preprocessing first")
        if order == self.preprocessing.channel_order:
            return self
        pre = self.preprocessing.with_channel_order(order)
        return replace(self, arrays=reverse_input_channels(self.arrays), preprocessing=pre)

    def stated(self, preprocessing: Preprocessing | None) -> "LoadedWeights":
        """The same weights with the preprocessing the user says they expect (None keeps the file's)."""
        return self if preprocessing is None else replace(self, preprocessing=preprocessing)
