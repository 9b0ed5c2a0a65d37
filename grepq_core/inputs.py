"""One image on its way to the model stage: read and hashed, then decoded here or left for the device.

The Beam read stage (transforms/read.py), `grepq evaluate` and the Python
API all take these steps, in this order: `read_and_hash` (errors at stage
``read``), then `prepare` (errors at stage ``decode`` or ``prepare``). What
happens between the two (skipping an image already extracted) and what a
failure becomes (a dead letter) is the caller's business.
"""
from __future__ import annotations

import hashlib

from grepq_core.extractor import EncoderSpec, Views, image_views
from grepq_core.imageio import DEFAULT_MAX_BYTES, decode_image, is_plain_jpeg, read_bytes

__all__ = ["read_and_hash", "prepare"]


def read_and_hash(uri: str | bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, str]:
    """(the file's bytes, their sha256 in hex); `ImageError` at stage ``read`` if it cannot be read."""
    data = read_bytes(uri, max_bytes)
    return data, hashlib.sha256(data).hexdigest()


def prepare(data: bytes, spec: EncoderSpec, device_decode: bool) -> Views | bytes:
    """The image's views cut on the CPU, or, for a JPEG the model's device can decode, the bytes as they are."""
    if device_decode and is_plain_jpeg(data):
        return data
    return image_views(decode_image(data), spec)
