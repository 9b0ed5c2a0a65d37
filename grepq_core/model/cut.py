"""One decoded image's views, cut on the CPU (or on the device, for a batch decoded there).

Every reader of images takes the same steps: `grepq_core.images.read`
reads and hashes (errors at stage ``read``), then `prepare` here decodes
(in a worker process, within the spec's time and memory budgets:
grepq_core/images/deadline.py) and cuts the views (errors at stage
``decode`` or ``prepare``), or leaves a plain JPEG as bytes for the model's
device to decode with its batch (`Extractor.decode`). What happens between
the two (skipping an image already extracted) and what a failure becomes (a
dead letter, a column of the API's frame) is the caller's business.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grepq_core.images.deadline import decode_in_time
from grepq_core.images.decode import device_decodable
from grepq_core.images.limits import DecodeLimits
from grepq_core.model import registry
from grepq_core.model import views as V
from grepq_core.model.settings import EncoderSpec

__all__ = ["Views", "VIEW_BYTES_PER_PIXEL", "decode_limits", "cut_views", "cpu_views", "image_views", "prepare"]

# What cutting views adds per pixel of a decoded image: its CHW copy, and one channel as float while a view is
# resized (grepq_core/model/views.py resizes a channel at a time).
VIEW_BYTES_PER_PIXEL = 3 + 4


@dataclass
class Views:
    """One decoded image's size, the decoder that read it, and its views (uint8 CHW arrays or tensors)."""

    width: int
    height: int
    decoder: str
    tensors: dict


def cut_views(image, spec: EncoderSpec) -> dict:
    """Every view the spec's pathways need from one upright uint8 [3, H, W] tensor, on its device."""
    image = V.ensure_min_size(image, spec.views.min_side)
    out = {}
    for name in spec.pathways:
        out.update(registry.get(name).views(image, spec))
    return out


def image_views(pixels: np.ndarray, spec: EncoderSpec, decoder: str = "cpu") -> Views:
    """A decoded HxWx3 uint8 image with its views cut on the CPU, ready for `Extractor.encode`."""
    tensors = cut_views(V.to_tensor(pixels), spec)
    return Views(pixels.shape[1], pixels.shape[0], decoder, {k: v.numpy() for k, v in tensors.items()})


def decode_limits(spec: EncoderSpec) -> DecodeLimits:
    """What one image may cost under `spec`: its time and memory budgets, views included."""
    return DecodeLimits(max_memory=spec.max_image_memory, max_seconds=spec.max_image_seconds,
                        later_bytes_per_pixel=VIEW_BYTES_PER_PIXEL)


def cpu_views(data: bytes, spec: EncoderSpec) -> Views:
    """Pillow's decode within the spec's budgets, then the views cut on the CPU.

    `decoder` is "cpu", or "cpu, damaged metadata ignored" when a damaged
    EXIF, ICC or text block was left out (grepq_core/images/decode.py).
    """
    pixels, ignored = decode_in_time(data, decode_limits(spec))
    return image_views(pixels, spec, "cpu" if ignored is None else f"cpu, {ignored} ignored")


def prepare(data: bytes, spec: EncoderSpec, device_decode: bool) -> Views | bytes:
    """The image's views cut on the CPU, or, for a JPEG the model's device can decode, the bytes as they are."""
    if device_decode and device_decodable(data, decode_limits(spec)):
        return data
    return cpu_views(data, spec)
