"""Every selected pathway on one device: decoded images in, one feature row each out.

`Extractor.decode` decodes JPEG bytes on the model's device and cuts their
views there (views of images decoded on the CPU come from
grepq_core/model/cut.py); `Extractor.encode` runs each pathway's encoder on
batches of views and returns the feature columns. Failures are values, not
rows: `decode` returns an `ImageError` for an image no decoder could read,
and what to do with it (a dead letter, a column of the API's frame) is the
caller's. The Beam ModelHandler (transforms/inference.py), the Python API,
the evaluation command and the benchmarks are all thin shells around this
class.

Deviation from the reference: the reference feeds whole images at full
resolution one at a time. The default here is the fixed-shape, batchable
form (fragments for LL, 224 centre crop for HL, a capped set of 96x96
patches for zero-shot LL); the reference profile gives the reference's
full-resolution behaviour, one image per forward pass.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading

import numpy as np
import torch

from grepq_core.errors import GrepqError, ImageError, WeightsUnavailable
from grepq_core.model import registry
from grepq_core.model import views as V
from grepq_core.model.cut import Views, cpu_views, cut_views
from grepq_core.model.device_decode import decode_on_device, device_decoder_name
from grepq_core.model.devices import resolve_device
from grepq_core.model.pathway import Encoder
from grepq_core.model.settings import EncoderSpec
from grepq_core.model.zero_shot import combined_score

__all__ = ["Extractor", "load_available"]

_HANDED_OVER: dict[EncoderSpec, "Extractor"] = {}  # see Extractor.load


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
        self.identities = {column: None for column in registry.columns()["identity"]}
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
    def load(cls, spec: EncoderSpec, hand_over: bool = False) -> "Extractor":
        """Load the weights `spec` names; fails before any image is read.

        With `hand_over`, the next load of the same spec on the same device
        in this process takes these models instead of loading them again:
        a local run's launcher checks the weights, and its workers, in the
        same process, then use what it loaded.
        """
        registry.ensure(spec)
        key = dataclasses.replace(spec, device=str(resolve_device(spec.device)))
        extractor = _HANDED_OVER.pop(key, None) or cls(key, {n: registry.get(n).load(key) for n in key.pathways})
        if hand_over:
            _HANDED_OVER[key] = extractor
        return extractor

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
        """JPEG bytes decoded on this device with their views cut there; what it rejects, by Pillow on the CPU."""
        out = []
        with self._thread_stream():
            for data, image in zip(datas, decode_on_device(datas, self.device)):
                try:
                    if image is None:
                        out.append(cpu_views(data, self.spec))
                    else:
                        out.append(Views(int(image.shape[-1]), int(image.shape[-2]), device_decoder_name(self.device),
                                         cut_views(image, self.spec)))
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
            for name, pathway in registry.PATHWAYS.items():
                if name in self.encoders and n:
                    feats, zs, calibrated = self.encoders[name].encode(self._run_grouped, views)
                    columns[pathway.features_column] = [f.astype(np.float32) for f in feats]
                    columns[pathway.zero_shot_column] = zs
                else:
                    columns[pathway.features_column] = [None] * n
                    columns[pathway.zero_shot_column] = calibrated = [float("nan")] * n
                if pathway.calibrated_column:
                    columns[pathway.calibrated_column] = calibrated
        combined = [p.zero_shot_column for p in registry.PATHWAYS.values() if p.combined]
        rows = []
        for i, b in enumerate(batch):
            row = {"width": b.width, "height": b.height, "decoder": b.decoder}
            for column, values in columns.items():
                row[column] = values[i] if column.endswith("_features") else _nullable(values[i])
            row[registry.COMBINED] = _nullable(float(combined_score(*[columns[c][i] for c in combined])))
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
    registry.ensure(spec)
    loaded, missing = {}, {}
    for name in spec.pathways:
        try:
            loaded[name] = registry.get(name).load(spec)
        except WeightsUnavailable as e:
            missing[name] = str(e)
    if not loaded:
        raise GrepqError("no pathway could be loaded: " + "; ".join(f"{p}: {m}" for p, m in missing.items()))
    return Extractor(dataclasses.replace(spec, pathways=tuple(loaded)), loaded), missing
