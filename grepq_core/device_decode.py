"""Decode JPEGs where the model runs, and cut the views there too.

On a GPU worker, decoding and resizing on the CPU caps throughput far below
what the encoders can do (shared/PERFORMANCE.md: 700-2,400 images/s on 16
cores against about 7,500 for the encoders). Here a batch of JPEG bytes is
decoded with torchvision's `decode_jpeg` on the model's device (nvJPEG on
CUDA, libjpeg-turbo on the CPU), upright by EXIF, and the same
`prepare_views` functions as the CPU path cut the views from the decoded
tensors. An image the device decoder rejects falls back to Pillow on the CPU
alone; the batch never fails for it. Each item records its decoder.
"""
from __future__ import annotations

import torch
from torchvision.io import ImageReadMode, decode_jpeg

from grepq_core import views as V
from grepq_core.errors import ImageError
from grepq_core.imageio import decode_image

__all__ = ["decode_items"]


def _device_decode_all(datas: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Batched decode; if the batch fails, one by one so only the bad images are lost."""
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


def decode_items(items: list, device: torch.device, prepare) -> dict[int, ImageError]:
    """Decode every item holding `data` (JPEG bytes) and set its views with `prepare`.

    `prepare(image_tensor) -> {view name: tensor}`. Returns {index: error}
    for the items that no decoder could read.
    """
    todo = [i for i, it in enumerate(items) if it.data is not None]
    if not todo:
        return {}
    datas = [torch.frombuffer(bytearray(items[i].data), dtype=torch.uint8) for i in todo]
    decoded = _device_decode_all(datas, device)
    name = "nvjpeg" if device.type == "cuda" else "libjpeg-turbo"
    failed = {}
    for i, image in zip(todo, decoded):
        item = items[i]
        if image is None:
            try:
                image = V.to_tensor(decode_image(item.data)).to(device)
            except ImageError as e:
                failed[i] = e
                continue
            item.decoder = "cpu"
        else:
            item.decoder = name
        item.height, item.width = int(image.shape[-2]), int(image.shape[-1])
        for view, tensor in prepare(image).items():
            setattr(item, view, tensor)
        item.data = None
    return failed
