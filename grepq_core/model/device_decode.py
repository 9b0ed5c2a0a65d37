"""Decode JPEGs where the model runs.

On a GPU worker, decoding and resizing on the CPU caps throughput far below
what the encoders can do (docs/performance.md: 700-2,400 images/s on 16
cores against about 7,500 for the encoders). Here a batch of JPEG bytes is
decoded with torchvision's `decode_jpeg` on the model's device (nvJPEG on
CUDA, libjpeg-turbo on the CPU), upright by EXIF. Only JPEGs whose decode
the budgets bound reach it (`grepq_core.images.decode.device_decodable`:
few scans, within the memory budget), and a batch holds at most the
spec's `max_batch_bytes` of them (transforms/inference.py). An image the
device decoder rejects is left to the caller (`Extractor.decode` decodes it
with Pillow under the budgets); the batch never fails for it.

torchvision is imported on the first decode, not with this module: importing
it costs seconds (it pulls in torch._dynamo), which a process that decodes
on the CPU never needs to pay.
"""
from __future__ import annotations

import torch

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


def decode_on_device(datas: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """Each image as uint8 [3, H, W] on `device`, or None where the device decoder rejected it."""
    if not datas:
        return []
    return _device_decode_all([torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas], device)
