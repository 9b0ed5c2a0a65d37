"""What defines a training run, with docs/method.md's settings as the defaults.

Plain dataclasses without torch, so that the CLI (`grepq train-ll`,
`train-hl`, `make-training-set`) takes its defaults from here and its
--help stays fast; the training loops take these objects as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

from grepq_core.errors import GrepqError, did_you_mean

__all__ = ["TrainingSetSpec", "LLTrainConfig", "HLTrainConfig", "MIN_SIZE"]

MIN_SIZE = 7 * 32  # a training photo holds one 7x7 grid of 32x32 fragments


@dataclass(frozen=True)
class TrainingSetSpec:
    """Which versions each photo gets: `per_image` distortion types x `levels`, at `size`; `ladders` give
    a type other parameters for its five levels."""

    distortions: tuple[str, ...] = ("all",)  # "all": every registered distortion
    levels: tuple[int, ...] = (2, 4)
    per_image: int = 4
    size: int = 384
    seed: int = 0
    ladders: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (name, 5 parameters): replaces a type's levels

    def __post_init__(self):
        from grepq_core.training.distortions import NUM_LEVELS, list_distortions

        known = set(list_distortions())
        if self.distortions == ("all",):
            object.__setattr__(self, "distortions", tuple(list_distortions()))
        for name in self.distortions:
            if name not in known:
                raise GrepqError(f"`distortions`: unknown distortion {name!r}.{did_you_mean(name, known)} "
                                 f"Valid: all, or any of {', '.join(sorted(known))}")
        if len(set(self.distortions)) != len(self.distortions):
            raise GrepqError(f"`distortions` lists a name twice: {', '.join(self.distortions)}")
        if not self.levels or any(not 1 <= level <= NUM_LEVELS for level in self.levels):
            raise GrepqError(f"`levels` takes levels between 1 and {NUM_LEVELS}, got {list(self.levels)}")
        if not 1 <= self.per_image <= len(self.distortions):
            raise GrepqError(f"`per_image` must be between 1 and the {len(self.distortions)} distortions given, "
                             f"got {self.per_image}")
        if self.size < MIN_SIZE:
            raise GrepqError(f"`size` must be at least {MIN_SIZE} (one 7x7 grid of 32x32 fragments), got {self.size}")
        for name, values in self.ladders:
            if name not in self.distortions:
                raise GrepqError(f"`ladders`: {name!r} is not one of the distortions drawn from")
            if len(values) != NUM_LEVELS:
                raise GrepqError(f"`ladders`: {name} needs {NUM_LEVELS} parameters, mildest first, got {len(values)}")

    @property
    def num_versions(self) -> int:
        """K: the reference plus one version per (type, level)."""
        return 1 + self.per_image * len(self.levels)


@dataclass(frozen=True)
class LLTrainConfig:
    """What defines a QACL run; docs/method.md's settings are the defaults."""

    arch: str = "resnet18"
    epochs: int = 15
    batch: int = 8
    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    tau: float = 0.5
    grid: int = 7
    fragment: int = 32
    seed: int = 0
    init: str | None = None  # start from these LL weights (any `load_ll_encoder` source) instead of random
    across: float = 0.0  # weight of the across-photo term (losses.across_photo_loss) beside QACL; 0: QACL alone

    def __post_init__(self):
        if min(self.epochs, self.batch, self.grid, self.fragment) < 1:
            raise GrepqError(f"`epochs`, `batch`, `grid` and `fragment` must be at least 1, "
                             f"got {self.epochs}, {self.batch}, {self.grid} and {self.fragment}")
        if not self.across >= 0:
            raise GrepqError(f"`across` must be at least 0, got {self.across}")


@dataclass(frozen=True)
class HLTrainConfig:
    """What defines a GCL run; docs/method.md's and the reference's settings are the defaults."""

    model: str = "RN50"
    weights: str | None = "openai"
    epochs: int = 15
    batch: int = 128
    tau_g: int = 32
    lr: float = 1e-6
    warmup_epochs: float = 2.5
    temperature: float = 0.5
    label_temperature: float = 0.1
    head_dim: int = 128
    size: int = 224
    seed: int = 0

    def __post_init__(self):
        if self.batch // self.tau_g < 2:
            raise GrepqError(f"`batch` / `tau_g` must be at least 2 (groups of two or more), "
                             f"got {self.batch} / {self.tau_g}")
        if self.epochs < 1 or self.warmup_epochs < 0:
            raise GrepqError("`epochs` must be at least 1 and `warmup_epochs` at least 0")
