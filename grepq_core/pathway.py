"""What a pathway is: how it loads its encoder, cuts its views and encodes them.

The registry of pathways is grepq_core/pathways.py; this module holds the
two types every pathway is made of, so that the pathway modules and the
registry import it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from grepq_core.views import Normalization

__all__ = ["Encoder", "Pathway", "Runner"]

# run(module, uint8 views, normalization, fixed_shape=True) -> one tuple of numpy outputs per view, in order
Runner = Callable[[nn.Module, Sequence, Normalization], list]


@dataclass
class Encoder:
    """One pathway's loaded encoder: the module, its input normalisation, what it is.

    `zero_shot_identity` names whatever the zero-shot score depends on besides
    the encoder (LL: the pristine model and the distance settings).
    `state` holds anything else the pathway's `encode` needs (LL: the
    pristine model).
    """

    pathway: "Pathway"
    module: nn.Module
    identity: str
    normalization: Normalization
    zero_shot_identity: str | None = None
    state: dict = field(default_factory=dict)

    def encode(self, run: Runner, views: list[dict]) -> tuple[list[np.ndarray], list[float], list[float] | None]:
        """(feature vectors, zero-shot scores or NaN, calibrated 0-100 zero-shot scores or NaN) of the images,
        from each image's views; the last is None for a pathway without a calibrated scale."""
        return self.pathway.encode(self, run, views)

    def identities(self) -> dict[str, str | None]:
        """The identity columns this encoder fills in a feature row."""
        out = {self.pathway.identity_column: self.identity}
        if self.pathway.zero_shot_identity_column:
            out[self.pathway.zero_shot_identity_column] = self.zero_shot_identity
        return out


class Pathway:
    """One way of describing an image; subclasses fill in `load`, `views` and `encode`.

    `combined`: whether its zero-shot score is a term of ``zs_combined``
    (METHOD: LL + HL). `zero_shot_rule`: whether the zero-shot score depends
    on something besides the encoder, and so gets its own identity column.
    `calibrated`: whether it also gives its zero-shot score on the fixed
    0-100 scale (grepq_core/calibration.py), in its own column.
    """

    name: str = ""
    title: str = ""
    combined: bool = False
    zero_shot_rule: bool = False
    calibrated: bool = False

    @property
    def features_column(self) -> str:
        return f"{self.name}_features"

    @property
    def zero_shot_column(self) -> str:
        return f"zs_{self.name}"

    @property
    def calibrated_column(self) -> str | None:
        return f"zs_{self.name}_100" if self.calibrated else None

    @property
    def identity_column(self) -> str:
        return f"{self.name}_identity"

    @property
    def zero_shot_identity_column(self) -> str | None:
        return f"zs_{self.name}_identity" if self.zero_shot_rule else None

    def load(self, spec) -> Encoder:
        """Build the encoder `spec` (an `EncoderSpec`) selects; raise `WeightsUnavailable` if it cannot."""
        raise NotImplementedError

    def views(self, image: torch.Tensor, config) -> dict[str, torch.Tensor]:
        """The uint8 views of one upright [3, H, W] image, keyed by names unique across pathways."""
        raise NotImplementedError

    def encode(self, encoder: Encoder, run: Runner, views: list[dict]) -> tuple[list, list, list | None]:
        raise NotImplementedError
