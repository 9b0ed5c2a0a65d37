"""One decoded image's views, cut on the CPU (or on the device, for a batch decoded there).

Every reader of images takes the same steps: `grepq_core.images.read`
reads and hashes (errors at stage ``read``), then `prepare` here decodes
and cuts the views (errors at stage ``decode`` or ``prepare``), or leaves a
plain JPEG as bytes for the model's device to decode with its batch
(`Extractor.decode`). What happens between the two (skipping an image
already extracted) and what a failure becomes (a dead letter, a column of
the API's frame) is the caller's business.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grepq_core.images.decode import decode_image, is_plain_jpeg
from grepq_core.model import registry
from grepq_core.model import views as V
from grepq_core.model.settings import EncoderSpec

__all__ = ["Views", "cut_views", "image_views", "prepare"]


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


def prepare(data: bytes, spec: EncoderSpec, device_decode: bool) -> Views | bytes:
    """The image's views cut on the CPU, or, for a JPEG the model's device can decode, the bytes as they are."""
    if device_decode and is_plain_jpeg(data):
        return data
    return image_views(decode_image(data), spec)
