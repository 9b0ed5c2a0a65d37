"""Which patches of a pristine photo the pristine model is built from (docs/method.md, "Zero-shot").

From pristine photos, keep the non-overlapping 96x96 patches whose
sharpness exceeds 0.75 x the sharpest patch's, then of those the ones whose
colourfulness exceeds 0.8 x the most colourful. Their LL features give the
pristine model (grepq_core/model/pristine.py).

Deviations from the reference code (``rule="grepq"``, the default;
``rule="reference"`` selects as the reference does):
- the local standard deviation filters with edge replication at the patch
  border (as NIQE does), not zero padding, which lends bright flat patches a
  false rim of "sharpness", and on each patch centred on its mean;
- the best patch is always kept, so a flat or colourless photo (largest
  score 0, which no patch exceeds) still contributes one patch.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from grepq_core.errors import GrepqError

__all__ = ["sharpness", "colourfulness", "gaussian_window", "select_pristine_patches"]

_BT601 = np.array([0.299, 0.587, 0.114])


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """The normalised 7x7, sigma 7/6 window of NIQE's local statistics."""
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def _sharpness_batch(grays: np.ndarray, rule: str = "grepq") -> np.ndarray:
    """Sharpness of each [H, W] slice of a [P, H, W] stack, in one filter pass.

    ``rule="reference"``: zero padding and no centring, as the reference code.
    """
    window = gaussian_window()[None]  # size 1 along the stack axis: patches never mix
    x = grays.astype(np.float64)
    if rule == "reference":
        mode = "constant"
    else:
        # Local variance ignores an offset; centring each patch avoids cancellation in E[x^2] - mu^2.
        x, mode = x - x.mean(axis=(1, 2), keepdims=True), "nearest"
    mu = ndimage.correlate(x, window, mode=mode, cval=0.0)
    local_var = ndimage.correlate(x * x, window, mode=mode, cval=0.0) - mu * mu
    return np.sqrt(np.abs(local_var)).sum(axis=(1, 2))


def _colourfulness_batch(rgbs: np.ndarray) -> np.ndarray:
    """Colourfulness of each [H, W, 3] slice of a [P, H, W, 3] stack."""
    x = rgbs.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = np.abs(r - g)
    yb = np.abs((r + g) / 2 - b)
    axes = (1, 2)
    spread = np.sqrt(rg.std(axis=axes, ddof=1) ** 2 + yb.std(axis=axes, ddof=1) ** 2)
    level = np.sqrt(rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
    return spread + level


def sharpness(gray: np.ndarray) -> float:
    """Sum over a grey patch of its local standard deviation.

    The local statistics use a 7x7 Gaussian window with sigma 7/6:
    mu = G * x, sigma = sqrt(|G * x^2 - mu^2|). Input is grey in [0, 255].
    """
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"sharpness takes a 2-D grey patch, got shape {gray.shape}")
    return float(_sharpness_batch(gray[None])[0])


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness of an [H, W, 3] RGB patch.

    sqrt(sd_rg^2 + sd_yb^2) + sqrt(mean_rg^2 + mean_yb^2), with
    rg = |R - G| and yb = |(R + G) / 2 - B|. The paper (Hasler and
    Suesstrunk, 2003) weights the second term by 0.3 and takes no absolute
    values; docs/method.md and the GRepQ reference use this form, and the
    pristine patches it selects define what the shipped model calls
    pristine, so we follow the reference.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"colourfulness takes an [H, W, 3] patch, got shape {rgb.shape}")
    return float(_colourfulness_batch(rgb[None])[0])


def _tiles(img: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size x size tiles from the top-left; the remainder is dropped."""
    rows, cols = img.shape[0] // size, img.shape[1] // size
    cropped = img[: rows * size, : cols * size]
    tiles = cropped.reshape(rows, size, cols, size, 3).swapaxes(1, 2)
    return tiles.reshape(rows * cols, size, size, 3)


def _above(values: np.ndarray, frac: float, rule: str = "grepq") -> np.ndarray:
    """Mask of values above frac x the largest; under grepq's rule the largest is always kept."""
    keep = values > frac * values.max()
    if rule != "reference":
        keep[np.argmax(values)] = True
    return keep


def select_pristine_patches(img: np.ndarray, size: int = 96, sharpness_frac: float = 0.75,
                            colour_frac: float = 0.8, rule: str = "grepq") -> np.ndarray:
    """The sharpest, then most colourful, non-overlapping patches of one photo.

    `img` is HxWx3 uint8 RGB. Returns [P, size, size, 3] uint8: under grepq's
    rule P >= 1 (P = 0 only when the photo is smaller than one patch); under
    the reference's a photo whose patches all fail keeps none.
    """
    if rule not in ("grepq", "reference"):
        raise GrepqError(f"pristine selection `rule` must be grepq or reference, got {rule!r}")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {img.dtype} {img.shape}")
    tiles = _tiles(img, size)
    if len(tiles) == 0:
        return tiles
    sharp = tiles[_above(_sharpness_batch(tiles @ _BT601, rule), sharpness_frac, rule)]
    if len(sharp) == 0:
        return sharp
    return sharp[_above(_colourfulness_batch(sharp), colour_frac, rule)]
