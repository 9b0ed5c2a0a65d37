"""Both GRepQ pathways on one device: prepared views in, one feature row out.

`prepare_views` turns a decoded image into the fixed-shape uint8 views of
METHOD.md (LL fragments, the CLIP view, zero-shot patches); `Extractor` runs
the encoders on batches of them and computes the zero-shot scores. The Beam
ModelHandler (transforms/inference.py) is a thin shell around `Extractor`,
and the benchmarks and the evaluation command use it directly.

Deviation from the reference: the reference feeds whole images at full
resolution one at a time. The default here is the fixed-shape, batchable
form (fragments for LL, 224 centre crop for HL, a capped set of 96x96
patches for zero-shot LL); `ViewConfig(ll_view="full", hl_size=None)` gives
the reference's full-resolution behaviour, one image per forward pass.
"""
from __future__ import annotations

import contextlib
import threading

from dataclasses import dataclass, field

import numpy as np
import torch

from grepq_core import views as V
from grepq_core.device_decode import decode_items
from grepq_core.devices import resolve_device
from grepq_core.errors import GrepqError
from grepq_core.hl_encoder import HLEncoder, build_hl_encoder
from grepq_core.ll_encoder import LLEncoder, load_ll_encoder
from grepq_core.pristine import PristineModel
from grepq_core.shipped import SHIPPED_PRISTINE
from grepq_core.zero_shot import combined_score, hl_score, ll_score, ll_score_identity

__all__ = ["PATHWAYS", "ViewConfig", "EncoderSpec", "PreparedImage", "prepare_views", "Extractor", "parse_pathways"]

PATHWAYS = ("ll", "hl")


def parse_pathways(text: str) -> tuple[str, ...]:
    """'ll,hl' -> ('ll', 'hl'), in canonical order; unknown names are an error."""
    names = {p.strip().lower() for p in text.split(",") if p.strip()}
    unknown = names - set(PATHWAYS)
    if unknown or not names:
        raise GrepqError(f"--pathways takes a comma-separated subset of {','.join(PATHWAYS)}; got {text!r}")
    return tuple(p for p in PATHWAYS if p in names)


@dataclass(frozen=True)
class ViewConfig:
    """How an image becomes model inputs (METHOD.md: views, zero-shot patches)."""

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
            raise GrepqError(f"ll_view must be 'fragments' or 'full', got {self.ll_view!r}")

    @property
    def min_side(self) -> int:
        """Smaller images are upscaled to this shortest side before any view."""
        return max(self.grid * self.fragment, self.patch_size if self.zero_shot else 0)


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to build an `Extractor` in any process: plain strings.

    Picklable, so a Beam worker can load the same models as the launcher.
    """

    pathways: tuple[str, ...] = PATHWAYS
    ll_weights: str = "shipped"
    pristine: str | None = "shipped"  # None: no zero-shot LL score
    hl_model: str = "RN50"
    hl_weights: str | None = "openai"
    device: str = "auto"
    decode: str = "auto"  # "gpu": JPEGs decoded on the model's device; "cpu": Pillow; "auto": gpu on CUDA
    batch_size: int = 32
    views: ViewConfig = field(default_factory=ViewConfig)


@dataclass
class PreparedImage:
    """One image's metadata and views (uint8 CHW arrays or tensors).

    An image for device decoding arrives with `data` (its JPEG bytes) and no
    views; the `Extractor` decodes it and cuts the views on its device.
    """

    path: str
    sha256: str
    width: int
    height: int
    decoder: str
    ll: np.ndarray | torch.Tensor | None = None
    hl: np.ndarray | torch.Tensor | None = None
    patches: np.ndarray | torch.Tensor | None = None
    data: bytes | None = None


def prepare_views(image: torch.Tensor, config: ViewConfig, pathways: tuple[str, ...]) -> dict:
    """Cut every view the selected pathways need from one uint8 [3, H, W] image.

    Works on any device; returns tensors on the image's device.
    """
    image = V.ensure_min_size(image, config.min_side)
    out = {}
    if "ll" in pathways:
        if config.ll_view == "fragments":
            out["ll"] = V.fragments(image, grid=config.grid, size=config.fragment)
        else:
            out["ll"] = image
        if config.zero_shot:
            out["patches"] = V.patches(image, size=config.patch_size, stride=config.patch_stride,
                                       max_patches=config.max_patches)
    if "hl" in pathways:
        out["hl"] = V.clip_view(image, size=config.hl_size)
    return out


def prepare_image(pixels: np.ndarray, spec: EncoderSpec, path: str = "", sha256: str = "") -> PreparedImage:
    """A decoded HxWx3 uint8 image with its views cut on the CPU, ready for `Extractor.extract`."""
    item = PreparedImage(path, sha256, pixels.shape[1], pixels.shape[0], "cpu")
    for name, view in prepare_views(V.to_tensor(pixels), spec.views, spec.pathways).items():
        setattr(item, name, view.numpy())
    return item


class Extractor:
    """Runs the selected encoders on batches of prepared images.

    On CUDA it uses bf16 autocast and channels_last; on CPU plain fp32, which
    is several times faster there (PERFORMANCE.md).
    """

    def __init__(self, spec: EncoderSpec, ll: LLEncoder | None, ll_identity: str | None,
                 hl: HLEncoder | None, hl_identity: str | None, pristine: PristineModel | None):
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.ll_identity, self.hl_identity = ll_identity, hl_identity
        self.pristine = pristine
        # What each feature row records about the models that made it: rows equal here were made the same way.
        self.identities = {"ll_identity": ll_identity, "hl_identity": hl_identity,
                           "zs_ll_identity": pristine and ll_score_identity(pristine)}
        fast = self.device.type == "cuda"
        self._autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=fast)
        self._memory_format = torch.channels_last if fast else torch.contiguous_format
        self.ll = self._place(ll)
        self.hl = self._place(hl)
        self._local = threading.local()

    @classmethod
    def load(cls, spec: EncoderSpec) -> "Extractor":
        """Load the weights `spec` names; fails before any image is read."""
        ll = ll_id = hl = hl_id = pristine = None
        if "ll" in spec.pathways:
            ll, ll_id = load_ll_encoder(spec.ll_weights)
            if spec.views.zero_shot and spec.pristine:
                source = str(SHIPPED_PRISTINE) if spec.pristine == "shipped" else spec.pristine
                pristine = PristineModel.load(source)
                if pristine.encoder_identity != ll_id:
                    raise GrepqError(
                        f"pristine model {spec.pristine} was built with {pristine.encoder_identity}, "
                        f"but the LL encoder is {ll_id}: pass the matching --pristine "
                        "(grepq build-pristine makes one), or --pristine none")
        if "hl" in spec.pathways:
            hl, hl_id = build_hl_encoder(spec.hl_model, spec.hl_weights)
        return cls(spec, ll, ll_id, hl, hl_id, pristine)

    def _place(self, module):
        if module is None:
            return None
        return module.to(self.device, memory_format=self._memory_format).eval()

    def _forward(self, model, x: torch.Tensor) -> list[np.ndarray]:
        """Run `model` in chunks of exactly `batch_size`, the last one zero-padded.

        Kernels pick their blocking by batch size, so a row's values would
        otherwise depend on which images shared its batch; a fixed size
        makes every row byte-identical across runs however Beam batches.
        """
        size = self.spec.batch_size
        outputs = []
        for start in range(0, len(x), size):
            chunk = x[start:start + size]
            n = len(chunk)
            if n < size:
                chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
            result = model(chunk.contiguous(memory_format=self._memory_format))
            outputs.append([r[:n].float().cpu().numpy() for r in (result if isinstance(result, tuple) else (result,))])
        return [np.concatenate(parts) for parts in zip(*outputs)]

    def _run_grouped(self, model, arrays: list[np.ndarray], mean, std) -> list:
        """Per-item outputs, one forward pass per group of equal shapes.

        The fixed-shape views form one group; full-resolution views go one
        shape at a time.
        """
        out: list = [None] * len(arrays)
        shapes: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            shapes.setdefault(tuple(a.shape), []).append(i)
        for idx in shapes.values():
            x = torch.stack([torch.as_tensor(arrays[i]).to(self.device, non_blocking=True) for i in idx])
            parts = self._forward(model, V.normalize(x, mean, std))
            for k, i in enumerate(idx):
                out[i] = tuple(p[k] for p in parts)
        return out

    def _ll_zero_shot(self, items: list[PreparedImage]) -> list[float]:
        counts = [len(it.patches) for it in items]
        feats = self._run_grouped(self.ll, [p for it in items for p in it.patches],
                                  V.IMAGENET_MEAN, V.IMAGENET_STD)
        flat = np.stack([f[0] for f in feats]).astype(np.float64)
        bounds = np.cumsum([0] + counts)
        return [ll_score(self.pristine, flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

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

    def _prepare(self, image: torch.Tensor) -> dict:
        return prepare_views(image, self.spec.views, self.spec.pathways)

    @torch.inference_mode()
    def extract(self, items: list[PreparedImage]) -> list[dict]:
        """Feature rows (dicts in the features schema) for a batch, in order.

        An item that could not be decoded here gives {"path", "dead_letter":
        (stage, reason, detail)} instead of a row.
        """
        with self._thread_stream():
            failed = decode_items(items, self.device, self._prepare)
            good = [it for i, it in enumerate(items) if i not in failed]
            rows = iter(self._rows(good) if good else [])
        return [{"path": it.path, "dead_letter": ("decode", failed[i].reason, failed[i].detail)}
                if i in failed else next(rows) for i, it in enumerate(items)]

    def _rows(self, items: list[PreparedImage]) -> list[dict]:
        n = len(items)
        ll_feats = hl_out = [None] * n
        zs_ll = [float("nan")] * n
        zs_hl = [float("nan")] * n
        with self._autocast:
            if self.ll is not None:
                ll_feats = [f[0] for f in self._run_grouped(self.ll, [it.ll for it in items],
                                                            V.IMAGENET_MEAN, V.IMAGENET_STD)]
                if self.pristine is not None:
                    zs_ll = self._ll_zero_shot(items)
            if self.hl is not None:
                hl_out = self._run_grouped(self.hl, [it.hl for it in items], V.CLIP_MEAN, V.CLIP_STD)
                zs_hl = [float(hl_score(cos[0], cos[1])) for _, cos in hl_out]
        rows = []
        for i, it in enumerate(items):
            rows.append({
                "path": it.path, "sha256": it.sha256, "width": it.width, "height": it.height,
                "decoder": it.decoder,
                "ll_features": None if ll_feats[i] is None else ll_feats[i].astype(np.float32),
                "hl_features": None if hl_out[i] is None else hl_out[i][0].astype(np.float32),
                "zs_ll": _nullable(zs_ll[i]), "zs_hl": _nullable(zs_hl[i]),
                "zs_combined": _nullable(combined_score(zs_ll[i], zs_hl[i])),
                **self.identities,
            })
        return rows


def _nullable(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)
