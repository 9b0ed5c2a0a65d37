"""Every selected pathway on one device: decoded images in, one feature row each out.

`image_views` cuts the uint8 views of docs/method.md ("Views") from a decoded
image on the CPU; `Extractor.decode` decodes JPEG bytes on the model's
device and cuts them there; `Extractor.encode` runs each pathway's encoder on
batches of views and returns the feature columns. Failures are values, not
rows: `decode` returns an `ImageError` for an image no decoder could read,
and what to do with it (a dead letter, a skipped image) is the caller's.
The Beam ModelHandler (transforms/inference.py), the evaluation command and
the benchmarks are all thin shells around this class.

Deviation from the reference: the reference feeds whole images at full
resolution one at a time. The default here is the fixed-shape, batchable
form (fragments for LL, 224 centre crop for HL, a capped set of 96x96
patches for zero-shot LL); `ViewConfig(ll_view="full", hl_size=None)` gives
the reference's full-resolution behaviour, one image per forward pass.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from grepq_core import pathways
from grepq_core import views as V
from grepq_core.device_decode import decode_on_device
from grepq_core.devices import resolve_device
from grepq_core.errors import GrepqError, ImageError, WeightsUnavailable
from grepq_core.pathway import Encoder
from grepq_core.zero_shot import LL_ISOTROPIC, LL_SHRINKAGE, combined_score

__all__ = ["ViewConfig", "EncoderSpec", "Views", "image_views", "Extractor", "load_available"]


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
    """Everything needed to build an `Extractor` in any process: plain strings.

    Picklable, so a Beam worker can load the same models as the launcher.
    """

    pathways: tuple[str, ...] = ("ll", "hl")
    ll_weights: str = "shipped"
    pristine: str | None = "shipped"  # None: no zero-shot LL score
    hl_model: str = "RN50"
    hl_weights: str | None = "openai"
    device: str = "auto"
    decode: str = "auto"  # "gpu": JPEGs decoded on the model's device; "cpu": Pillow; "auto": gpu on CUDA
    batch_size: int = 32
    views: ViewConfig = field(default_factory=ViewConfig)
    profile: str = "fast"  # recorded in every row; `profiles.spec_for` sets the fields below
    hl_visual_weights: str | None = None  # replaces the image tower of `hl_weights` (the reference HL model)
    hl_positional: str = "interpolate"  # "omit": the attention pool's positional embedding left out
    ll_shrinkage: float = LL_SHRINKAGE  # zero-shot LL distance's covariance shrinkage (0: docs/method.md's)
    ll_isotropic: float = LL_ISOTROPIC  # weight of its isotropic term (0: docs/method.md's)


@dataclass
class Views:
    """One decoded image's size, the decoder that read it, and its views (uint8 CHW arrays or tensors)."""

    width: int
    height: int
    decoder: str
    tensors: dict


def _cut(image: torch.Tensor, config: ViewConfig, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Every view the named pathways need from one upright uint8 [3, H, W] image, on its device."""
    image = V.ensure_min_size(image, config.min_side)
    out = {}
    for name in names:
        out.update(pathways.get(name).views(image, config))
    return out


def image_views(pixels: np.ndarray, spec: EncoderSpec, decoder: str = "cpu") -> Views:
    """A decoded HxWx3 uint8 image with its views cut on the CPU, ready for `Extractor.encode`."""
    tensors = _cut(V.to_tensor(pixels), spec.views, spec.pathways)
    return Views(pixels.shape[1], pixels.shape[0], decoder, {k: v.numpy() for k, v in tensors.items()})


class Extractor:
    """Runs the selected pathways' encoders on batches of views.

    On CUDA it uses bf16 autocast and channels_last; on CPU plain fp32, which
    is several times faster there (docs/performance.md).
    """

    def __init__(self, spec: EncoderSpec, encoders: dict[str, Encoder]):
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.encoders = encoders
        # What each feature row records about the models that made it: rows equal here were made the same way.
        self.identities = {column: None for column in pathways.columns()["identity"]}
        self.identities["profile"] = spec.profile
        for encoder in encoders.values():
            self.identities.update(encoder.identities())
        fast = self.device.type == "cuda"
        self._autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=fast)
        self._memory_format = torch.channels_last if fast else torch.contiguous_format
        for encoder in encoders.values():
            encoder.module = encoder.module.to(self.device, memory_format=self._memory_format).eval()
        self._local = threading.local()

    @classmethod
    def load(cls, spec: EncoderSpec) -> "Extractor":
        """Load the weights `spec` names; fails before any image is read."""
        return cls(spec, {name: pathways.get(name).load(spec) for name in spec.pathways})

    def _forward(self, model, x: torch.Tensor, size: int) -> list[np.ndarray]:
        """Run `model` in chunks of exactly `size`, the last one zero-padded.

        Kernels pick their blocking by batch size, so a row's values would
        otherwise depend on which images shared its batch; a fixed size
        makes every row byte-identical across runs however Beam batches.
        """
        outputs = []
        for start in range(0, len(x), size):
            chunk = x[start:start + size]
            n = len(chunk)
            if n < size:
                chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
            result = model(chunk.contiguous(memory_format=self._memory_format))
            outputs.append([r[:n].float().cpu().numpy() for r in (result if isinstance(result, tuple) else (result,))])
        return [np.concatenate(parts) for parts in zip(*outputs)]

    def _run_grouped(self, model, arrays: list, normalization: V.Normalization, fixed_shape: bool = True) -> list:
        """Per-item output tuples, one forward pass per group of equal shapes.

        Fixed-shape views form one group, run in chunks of the batch size;
        native-resolution views (`fixed_shape` False) go one image at a
        time, as the reference runs them, instead of padding each to a batch.
        """
        out: list = [None] * len(arrays)
        shapes: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            shapes.setdefault(tuple(a.shape), []).append(i)
        for idx in shapes.values():
            x = torch.stack([torch.as_tensor(arrays[i]).to(self.device, non_blocking=True) for i in idx])
            parts = self._forward(model, normalization(x), self.spec.batch_size if fixed_shape else 1)
            for k, i in enumerate(idx):
                out[i] = tuple(p[k] for p in parts)
        return out

    def _thread_stream(self):
        """On CUDA, a stream per calling thread; elsewhere nothing.

        Beam feeds one shared model from several threads: with a stream each,
        one batch's JPEG decoding and copies overlap another's encoders
        instead of queueing behind them on the default stream.
        """
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        if not hasattr(self._local, "stream"):
            self._local.stream = torch.cuda.Stream(self.device)
        return torch.cuda.stream(self._local.stream)

    @torch.inference_mode()
    def decode(self, datas: list[bytes]) -> list[Views | ImageError]:
        """JPEG bytes decoded on this device (Pillow fallback per image) with their views cut there."""
        out = []
        with self._thread_stream():
            for result in decode_on_device(datas, self.device):
                if isinstance(result, ImageError):
                    out.append(result)
                    continue
                image, decoder = result
                try:
                    out.append(Views(int(image.shape[-1]), int(image.shape[-2]), decoder,
                                     _cut(image, self.spec.views, self.spec.pathways)))
                except ImageError as e:
                    out.append(e)
        return out

    def run(self, inputs: list) -> list:
        """Each input (JPEG bytes for this device, `Views`, or an `ImageError`) as feature columns or its error.

        The one path from a batch of read images to rows, for the Beam
        model stage and the Python API alike.
        """
        results = list(inputs)
        encoded = [i for i, r in enumerate(results) if isinstance(r, bytes)]
        for i, decoded in zip(encoded, self.decode([results[i] for i in encoded])):
            results[i] = decoded
        ready = [i for i, r in enumerate(results) if isinstance(r, Views)]
        for i, row in zip(ready, self.encode([results[i] for i in ready])):
            results[i] = row
        return results

    @torch.inference_mode()
    def encode(self, batch: list[Views]) -> list[dict]:
        """The feature columns of each image, in order (everything of a row but path and sha256)."""
        n = len(batch)
        columns = {}
        with self._thread_stream(), self._autocast:
            views = [b.tensors for b in batch]
            for name, pathway in pathways.PATHWAYS.items():
                if name in self.encoders and n:
                    feats, zs, calibrated = self.encoders[name].encode(self._run_grouped, views)
                    columns[pathway.features_column] = [f.astype(np.float32) for f in feats]
                    columns[pathway.zero_shot_column] = zs
                else:
                    columns[pathway.features_column] = [None] * n
                    columns[pathway.zero_shot_column] = calibrated = [float("nan")] * n
                if pathway.calibrated_column:
                    columns[pathway.calibrated_column] = calibrated
        combined = [p.zero_shot_column for p in pathways.PATHWAYS.values() if p.combined]
        rows = []
        for i, b in enumerate(batch):
            row = {"width": b.width, "height": b.height, "decoder": b.decoder}
            for column, values in columns.items():
                row[column] = values[i] if column.endswith("_features") else _nullable(values[i])
            row["zs_combined"] = _nullable(float(combined_score(*[columns[c][i] for c in combined])))
            row.update(self.identities)
            rows.append(row)
        return rows


def _nullable(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def load_available(spec: EncoderSpec) -> tuple[Extractor, dict[str, str]]:
    """An Extractor for the pathways whose weights load, and {pathway: why not} for the others.

    Each pathway is loaded on its own so that one missing set of weights
    does not hide the other; with none loaded this is an error.
    """
    loaded, missing = {}, {}
    for name in spec.pathways:
        try:
            loaded[name] = pathways.get(name).load(spec)
        except WeightsUnavailable as e:
            missing[name] = str(e)
    if not loaded:
        raise GrepqError("no pathway could be loaded: " + "; ".join(f"{p}: {m}" for p, m in missing.items()))
    return Extractor(dataclasses.replace(spec, pathways=tuple(loaded)), loaded), missing
