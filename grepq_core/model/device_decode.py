"""Decode JPEGs where the model runs.

On a GPU worker, decoding and resizing on the CPU caps throughput far below
what the encoders can do (docs/performance.md: 700-2,400 images/s on 16
cores against about 7,500 for the encoders). Here a batch of JPEG bytes is
decoded with torchvision's `decode_jpeg` on the model's device (nvJPEG on
CUDA, libjpeg-turbo on the CPU), upright by EXIF. An image the device
decoder rejects falls back to Pillow on the CPU alone; the batch never
fails for it.

torchvision is imported on the first decode, not with this module: importing
it costs seconds (it pulls in torch._dynamo), which a process that decodes
on the CPU never needs to pay.
"""
from __future__ import annotations

import torch

from grepq_core.errors import ImageError
from grepq_core.images.decode import decode_image
from grepq_core.model import views as V

__all__ = ["decode_on_device", "device_decoder_name"]


def device_decoder_name(device: torch.device) -> str:
    """What a row's `decoder` column says for an image decoded on `device`."""
    return "nvjpeg" if device.type == "cuda" else "libjpeg-turbo"


def _device_decode_all(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Batched decode; if the batch fails, one by one so only the bad images are lost."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    except RuntimeError:
        out = []
        for data in datas:
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True))
            except RuntimeError:
                out.append(None)
        return out


def decode_on_device(datas: list[bytes], device: torch.device) -> list[tuple[torch.Tensor, str] | ImageError]:
    """Each image as (uint8 [3, H, W] on `device`, decoder name), or the `ImageError` no decoder got past."""
    if not datas:
        return []
    decoded = _device_decode_all([torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas], device)
    out = []
    for data, image in zip(datas, decoded):
        if image is not None:
            out.append((image, device_decoder_name(device)))
            continue
        try:
            out.append((V.to_tensor(decode_image(data)).to(device), "cpu"))
        except ImageError as e:
            out.append(e)
    return out
