"""Fixed-shape model inputs cut from one decoded image, as uint8 tensors.

docs/method.md, "Training the LL encoder" (views) and "Zero-shot": the LL encoder
sees FAST-VQA fragments (a 7x7 grid of 32x32 crops at native resolution,
stitched to 224x224); the HL encoder sees a CLIP view (shortest side resized
to 224, bicubic, centre crop); the zero-shot LL score uses 96x96 patches at
stride 48. Everything here is torch indexing and `interpolate` on tensors of
shape ``[..., 3, H, W]``, so one code path serves CPU workers and GPU batches
(docs/performance.md: past about 1,000 images/s the views belong on the GPU).

Deviations from the reference code: views stay uint8 until `normalize`, so
they are cheap to batch and move; the zero-shot patch list is capped to an
evenly spaced subset (`patches(max_patches=32)`, docs/performance.md: all patches
cost about 50x the fragment path; ``max_patches=None`` restores the
reference's full set); CLIP resizing uses torch's antialiased bicubic on the
tensor rather than Pillow's, within about one grey level of it.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Normalization",
    "IMAGENET",
    "OPENAI_CLIP",
    "UNIT",
    "clip_view",
    "ensure_min_size",
    "fragment_positions",
    "fragments",
    "normalize",
    "patches",
    "to_tensor",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# open_clip.constants.OPENAI_DATASET_MEAN / OPENAI_DATASET_STD
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Normalization:
    """How uint8 pixels become an encoder's float input: ``(x / 255 - mean) / std``.

    It travels with the weights (an LL checkpoint, open_clip's preprocess
    config of the chosen HL weights); ``mean=(0, 0, 0), std=(1, 1, 1)`` is
    plain [0, 1] input.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std)

    def as_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        mean, std = tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"])
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"input normalisation needs 3 means and 3 positive stds, got {d}")
        return cls(mean, std)


IMAGENET = Normalization(IMAGENET_MEAN, IMAGENET_STD)
OPENAI_CLIP = Normalization(CLIP_MEAN, CLIP_STD)
UNIT = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # plain [0, 1] input


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array to a contiguous 3xHxW uint8 tensor (one copy)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 array, got {img.shape} {img.dtype}")
    return torch.from_numpy(np.array(img.transpose(2, 0, 1), order="C"))


# Pixels an upscaled image may have: about what a 6000x4000 photo takes as it is.
# Only images with an extreme aspect ratio (about 800:1 at min_side 224) reach it.
MAX_UPSCALED_PIXELS = 40_000_000


def ensure_min_size(img: torch.Tensor, min_side: int, max_pixels: int = MAX_UPSCALED_PIXELS) -> torch.Tensor:
    """Upscale (bicubic, aspect kept) so the shorter side is at least `min_side`.

    Fragments and patches need a minimum size; smaller images are enlarged
    rather than rejected. Images already large enough are returned as is.
    Raises ImageError ``extreme_aspect_ratio`` (see `upscaled_size`) rather
    than allocate more than `max_pixels`.
    """
    height, width = img.shape[-2:]
    new_height, new_width = upscaled_size(height, width, min_side, max_pixels)
    return _resize(img, new_height, new_width)


def upscaled_size(height: int, width: int, min_side: int, max_pixels: int = MAX_UPSCALED_PIXELS) -> tuple[int, int]:
    """The (height, width) `ensure_min_size` gives an image of this size, checked against `max_pixels`.

    A 1x10000 strip would become 224x2,240,000 (gigabytes as float), so an
    upscale above `max_pixels` raises ImageError ``extreme_aspect_ratio``
    instead. Callers that know the size from a header can check before decoding.
    """
    short = min(height, width)
    if short >= min_side:
        return height, width
    new_height = -(-height * min_side // short)  # ceil in integers: no float round-up
    new_width = -(-width * min_side // short)
    if new_height * new_width > max_pixels:
        from grepq_core.errors import ImageError

        raise ImageError(
            "extreme_aspect_ratio",
            f"{width}x{height} would be upscaled to {new_width}x{new_height} "
            f"({new_height * new_width} pixels, more than {max_pixels}) for a short side of {min_side}",
            stage="prepare",
        )
    return new_height, new_width


def fragment_positions(
    height: int,
    width: int,
    grid: int = 7,
    size: int = 32,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners (y, x) of one `size` crop per grid cell, each ``[grid, grid]`` long.

    Cell (gy, gx) spans rows ``gy*H//grid .. (gy+1)*H//grid`` and the matching
    columns. Without a generator each crop is centred in its cell (inference,
    reproducible); with one, each crop is placed uniformly at random inside
    its cell (training).
    """
    if height < grid * size or width < grid * size:
        raise ValueError(
            f"image {height}x{width} is smaller than {grid}x{grid} fragments of {size}; "
            f"upscale it with ensure_min_size(img, {grid * size}) first"
        )
    device = generator.device if generator is not None else None
    cells = torch.arange(grid + 1, device=device)
    ys = _crop_starts(cells * height // grid, size, grid, generator, rows=True)
    xs = _crop_starts(cells * width // grid, size, grid, generator, rows=False)
    return ys, xs


def fragments(
    img: torch.Tensor,
    grid: int = 7,
    size: int = 32,
    positions: tuple[torch.Tensor, torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """FAST-VQA grid mini-patch sampling: ``[..., 3, H, W]`` to ``[..., 3, grid*size, grid*size]``.

    Crops keep native resolution (no resize) and are stitched by one gather.
    All leading dimensions share the same crop positions, as the K versions of
    one photo must. `positions` (from `fragment_positions`) overrides
    `generator`.
    """
    if positions is None:
        positions = fragment_positions(*img.shape[-2:], grid=grid, size=size, generator=generator)
    ys, xs = (p.to(img.device) for p in positions)
    grid = ys.shape[0]
    offsets = torch.arange(size, device=img.device)
    # rows[gy*size + i, gx*size + j] = ys[gy, gx] + i; columns likewise with xs and j.
    rows = (ys[:, None, :, None] + offsets[None, :, None, None]).expand(grid, size, grid, size)
    cols = (xs[:, None, :, None] + offsets[None, None, None, :]).expand(grid, size, grid, size)
    side = grid * size
    return img[..., rows.reshape(side, side), cols.reshape(side, side)]


def clip_view(img: torch.Tensor, size: int | None = 224) -> torch.Tensor:
    """CLIP's preprocessing on ``[..., 3, H, W]`` uint8: shortest side to `size`, centre crop.

    Matches torchvision ``Resize(size, BICUBIC, antialias=True)`` then
    ``CenterCrop(size)``, including its rounding of the long side and of the
    crop offsets. ``size=None`` keeps native resolution (the HL encoder
    accepts any size) and returns `img` unchanged.
    """
    if size is None:
        return img
    height, width = img.shape[-2:]
    short, long = min(height, width), max(height, width)
    new_long = int(size * long / short)
    new_height, new_width = (size, new_long) if height == short else (new_long, size)
    resized = _resize(img, new_height, new_width)
    top = int(round((new_height - size) / 2.0))
    left = int(round((new_width - size) / 2.0))
    return resized[..., top : top + size, left : left + size]


def patches(
    img: torch.Tensor, size: int = 96, stride: int = 48, max_patches: int | None = 32
) -> torch.Tensor:
    """All ``size`` x ``size`` patches of ``[3, H, W]`` at `stride`, as ``[P, 3, size, size]``.

    Patches are listed row-major. Above `max_patches`, an evenly spaced subset
    of that list is kept (deterministic, covering the whole image);
    ``max_patches=None`` keeps all.
    """
    if img.ndim != 3:
        raise ValueError(f"expected one [3, H, W] image, got shape {tuple(img.shape)}")
    height, width = img.shape[-2:]
    if height < size or width < size:
        raise ValueError(
            f"image {height}x{width} is smaller than one {size}x{size} patch; "
            f"upscale it with ensure_min_size(img, {size}) first"
        )
    grid = img.unfold(1, size, stride).unfold(2, size, stride)  # [3, ny, nx, size, size], a view
    ny, nx = grid.shape[1:3]
    keep = torch.arange(ny * nx, device=img.device)
    if max_patches is not None and ny * nx > max_patches:
        keep = torch.linspace(0, ny * nx - 1, max_patches, device=img.device).round().long()
    return grid[:, keep // nx, keep % nx].transpose(0, 1).contiguous()


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` to float32 ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device)[:, None, None]
    return (x.float() / 255.0 - mean_t) / std_t


def _crop_starts(
    edges: torch.Tensor,
    size: int,
    grid: int,
    generator: torch.Generator | None,
    rows: bool,
) -> torch.Tensor:
    """Crop starts along one axis as ``[grid, grid]``, varying along dim 0 if `rows` else dim 1."""
    lows = edges[:-1]
    room = edges[1:] - lows - size  # free pixels in each cell, >= 0
    lows, room = (lows[:, None], room[:, None]) if rows else (lows[None, :], room[None, :])
    if generator is None:
        return (lows + room // 2).expand(grid, grid).contiguous()
    draw = torch.rand(grid, grid, generator=generator, device=generator.device)
    return lows + (draw * (room + 1)).long().clamp(max=room)


def _resize(img: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic, antialiased resize of ``[..., 3, H, W]`` uint8, rounded back to uint8.

    On the CPU one channel at a time, so the float copy of a large image is
    a third of its size (channels are resized independently: the result is
    the same); on a GPU all at once, one kernel instead of three.
    """
    if img.shape[-2:] == (height, width):
        return img
    lead = img.shape[:-3]
    flat = img.reshape(-1, *img.shape[-3:])
    out = torch.empty((*flat.shape[:2], height, width), dtype=torch.uint8, device=img.device)
    step = 1 if img.device.type == "cpu" else flat.shape[1]
    for channel in range(0, flat.shape[1], step):
        plane = F.interpolate(flat[:, channel:channel + step].float(), size=(height, width), mode="bicubic",
                              align_corners=False, antialias=True)
        out[:, channel:channel + step] = plane.round_().clamp_(0, 255)
    return out.reshape(*lead, img.shape[-3], height, width)
