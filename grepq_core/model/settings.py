"""What an extraction computes, as plain values that travel to every worker.

An `EncoderSpec` is built in the launcher (`profiles.spec_for`, the one
place that decides what a profile fixes) and pickled to each Beam worker,
which builds the same models from it. It holds:

- the general choices: which pathways run, the device, the decoder, the
  batch size, the profile, and what one image may cost (decode time,
  memory, and the bytes a batch may hold);
- the views (`ViewConfig`): how an image becomes fixed-shape model inputs;
- every registered pathway's own settings, by name. Each pathway declares
  them (`Setting`: name, default, help, parser) in its own module, and the
  CLI's flags, the Python API's keyword arguments and these values all come
  from those declarations;
- where each registered pathway's class lives (`sources`), so a worker
  that never imported a pathway registered in the launcher can import it.

This module imports neither torch nor any encoder code, so the read stage,
the CLI's --help and readers of Parquet can use it cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from grepq_core.errors import GrepqError
from grepq_core.images.limits import DEFAULT_MAX_MEMORY, DEFAULT_MAX_SECONDS

__all__ = ["Setting", "ViewConfig", "EncoderSpec", "DEFAULT_MAX_BATCH_BYTES", "none_or_str", "byte_size"]

# A model batch holds at most this many bytes of images (encoded or cut into views) besides its count.
DEFAULT_MAX_BATCH_BYTES = 256 * 2**20
_UNITS = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def none_or_str(text: str | None) -> str | None:
    """A setting's text where 'none' means no value (e.g. `pristine` none: no zero-shot LL score)."""
    return None if text is None or text.lower() == "none" else text


def byte_size(text: str) -> int | None:
    """A number of bytes written as 1073741824, 512MiB or 1.5GiB; 'none' means no limit."""
    if text.lower() == "none":
        return None
    number = text.rstrip("BbIiKkMmGg ")
    unit = text[len(number):].strip().upper()
    try:
        size = int(float(number) * _UNITS[unit])
    except (KeyError, ValueError):
        raise ValueError(f"not a size: {text!r} (e.g. 1073741824, 512MiB, 1.5GiB or none)") from None
    if size <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return size


@dataclass(frozen=True)
class Setting:
    """One setting a pathway declares: the API keyword `name`, the CLI flag ``--name-with-dashes``.

    `parse` turns the flag's text into the value; `fixed` maps a profile to
    the value it imposes (a run under that profile may not choose another).
    """

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    choices: tuple = ()
    fixed: dict = field(default_factory=dict)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class ViewConfig:
    """How an image becomes model inputs (docs/method.md: views, zero-shot patches)."""

    ll_view: str = "fragments"  # "fragments" (7x7 grid of 32x32) or "full" (whole image)
    grid: int = 7
    fragment: int = 32
    hl_size: int | None = 224  # None: native resolution
    zero_shot: bool = True
    patch_size: int = 96
    patch_stride: int = 48
    max_patches: int | None = 32

    def __post_init__(self):
        if self.ll_view not in ("fragments", "full"):
            raise GrepqError(f"`ll_view` must be 'fragments' or 'full', got {self.ll_view!r}")

    @property
    def min_side(self) -> int:
        """Smaller images are upscaled to this shortest side before any view.

        Fragments need a 7x7 grid of 32 (224); whole-image views only need
        one zero-shot patch (96), and the CLIP tower its 32x downsampling.
        """
        if self.ll_view == "full":
            return self.patch_size
        return max(self.grid * self.fragment, self.patch_size if self.zero_shot else 0)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to build an `Extractor` in any process: plain, picklable, hashable values."""

    pathways: tuple[str, ...] = ("ll", "hl")
    device: str = "auto"
    decode: str = "auto"  # "gpu": JPEGs decoded on the model's device; "cpu": Pillow; "auto": gpu on CUDA
    batch_size: int = 32
    max_image_seconds: float | None = DEFAULT_MAX_SECONDS  # decoding one image (None: no limit)
    max_image_memory: int | None = DEFAULT_MAX_MEMORY  # decoding and cutting one image, in bytes (None: no limit)
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES  # images waiting in one model batch
    views: ViewConfig = field(default_factory=ViewConfig)
    profile: str = "fast"  # recorded in every row
    settings: tuple[tuple[str, Any], ...] = ()  # (name, value) of every registered pathway's settings
    sources: tuple[tuple[str, str], ...] = ()  # (pathway, "module:Class") of every registered pathway

    def setting(self, name: str) -> Any:
        """The value of one pathway setting (`ll_weights`, `hl_model`, ...)."""
        for key, value in self.settings:
            if key == name:
                return value
        raise GrepqError(f"this spec has no setting `{name}`: build it with grepq_core.model.profiles.spec_for")
