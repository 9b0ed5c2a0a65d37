"""The pathway contract: what a pathway declares, how it loads its encoder, cuts its views and encodes them.

A `Pathway` is registered once (grepq_core/model/registry.py) and everything
else loops over the registry: the feature schema, the CLI's flags, the
extractor, scoring, fitting, evaluation and the report. A loaded `Encoder`
is one pathway's network with its input normalisation (which comes with
the weights) and its identity (what every feature row records).

Pathway modules import encoder code (torch, open_clip) inside `load`,
`views` and `encode`, not at the top: the registry is imported by readers
of Parquet files and by --help, which must not pay for CLIP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

from grepq_core.model.settings import Setting

if TYPE_CHECKING:
    import torch
    from torch import nn

    from grepq_core.model.settings import EncoderSpec
    from grepq_core.model.views import Normalization

__all__ = ["Encoded", "Encoder", "Pathway", "Runner"]

# run(module, uint8 views, normalization, fixed_shape=True) -> one tuple of numpy outputs per view, in order
Runner = Callable[["nn.Module", Sequence, "Normalization", bool], list]


class Encoded(NamedTuple):
    """What a pathway makes of a batch of images, one entry per image.

    `zero_shot` is NaN where the pathway has no score for an image;
    `calibrated` is None for a pathway without a 0-100 scale, else NaN where
    an image has none.
    """

    features: list
    zero_shot: list[float]
    calibrated: list[float] | None = None


@dataclass
class Encoder:
    """One pathway's loaded encoder: the module, its input normalisation, what it is.

    `zero_shot_identity` names whatever the zero-shot score depends on besides
    the encoder (LL: the pristine model and the distance settings).
    `fixed_shape`: its views share one shape and run in batches (False:
    native resolution, one image per forward pass). `state` is whatever
    else the pathway's `encode` needs (LL: its zero-shot rule).
    """

    pathway: "Pathway"
    module: "nn.Module"
    identity: str
    normalization: "Normalization"
    zero_shot_identity: str | None = None
    fixed_shape: bool = True
    state: Any = None

    def encode(self, run: Runner, views: list[dict]) -> Encoded:
        """Features and zero-shot scores of the images, from each image's views."""
        return self.pathway.encode(self, run, views)

    def identities(self) -> dict[str, str | None]:
        """The identity columns this encoder fills in a feature row."""
        out = {self.pathway.identity_column: self.identity}
        if self.pathway.zero_shot_identity_column:
            out[self.pathway.zero_shot_identity_column] = self.zero_shot_identity
        return out


class Pathway:
    """One way of describing an image; subclasses fill in `settings`, `load`, `views` and `encode`.

    `combined`: whether its zero-shot score is a term of the combined score
    (METHOD: LL + HL). `zero_shot_rule`: whether the zero-shot score depends
    on something besides the encoder, and so gets its own identity column.
    `calibrated`: whether it also gives its zero-shot score on the fixed
    0-100 scale (grepq_core/model/anchors.py), in its own column.
    `settings`: what a run may choose for this pathway (its weights, ...),
    each a CLI flag and a keyword of `grepq_core.load`.
    """

    name: str = ""
    title: str = ""
    combined: bool = False
    zero_shot_rule: bool = False
    calibrated: bool = False
    settings: tuple[Setting, ...] = ()

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

    def load(self, spec: "EncoderSpec") -> Encoder:
        """Build the encoder `spec` selects; raise `WeightsUnavailable` if it cannot."""
        raise NotImplementedError

    def views(self, image: "torch.Tensor", spec: "EncoderSpec") -> dict[str, "torch.Tensor"]:
        """The uint8 views of one upright [3, H, W] image, keyed by names unique across pathways."""
        raise NotImplementedError

    def encode(self, encoder: Encoder, run: Runner, views: list[dict]) -> Encoded:
        raise NotImplementedError
