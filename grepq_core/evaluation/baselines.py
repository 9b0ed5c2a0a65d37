"""Classical blind baselines: NIQE, BRISQUE and BRISQUE's NSS features.

Comparison rows for `grepq evaluate` and the model card (docs/method.md,
"Evaluation conventions of the field"); GRepQ's LL zero-shot score is NIQE's
recipe applied to learned features, so NIQE is its natural reference.

- NIQE: Mittal, Soundararajan and Bovik, "Making a 'completely blind' image
  quality analyzer", IEEE SPL 2013, following the authors' MATLAB release
  (computequality.m, estimatemodelparam.m): grey image, MSCN with a 7x7
  Gaussian (sigma 7/6, replicate edges), 96x96 blocks at full and half size,
  18 AGGD features per block and scale, pristine blocks kept where the mean
  local deviation exceeds 0.75 x the image's sharpest block. Lower is better.
- BRISQUE: Mittal, Moorthy and Bovik, "No-reference image quality assessment
  in the spatial domain", IEEE TIP 2012, following brisque_feature.m: GGD fit
  of the MSCN (zero-padded filter) and AGGD fits of its four pairwise
  products, at full and half size: 36 features. The score is an RBF
  epsilon-SVR regressing DMOS on the features scaled to [-1, 1]. Lower is
  better, about 0 to 100.

Deviations:
- No package here runs NIQE offline (pyiqa downloads its parameters, piq has
  no NIQE, scikit-video calls the removed scipy.misc.imresize), so the
  pristine model is refitted: `fit_niqe_pristine` on scikit-image's bundled
  photos (`NIQE_PRISTINE_PHOTOS`: 80 sharp blocks, 66 of them from the
  brick, grass and gravel textures), stored in assets/niqe_pristine.npz,
  instead of the release's 125 photos. NIQE values are therefore not on the scale of
  published NIQE numbers, and rankings may differ. Blocks whose features are
  undefined (flat blocks) are left out of the statistics.
- BRISQUE's SVR and scaling ranges are read from the files bundled in the
  `brisque` PyPI package (0.2.0: brisque/models/svm.txt, normalize.pickle)
  and evaluated here in numpy: that package's own scorer fails with
  numpy 2.4 and needs libsvm; only its two data files are used. That SVR is
  not the MATLAB release's: on IQA-PyTorch's five calibration images
  (ResultsCalibra) the scores differ from MATLAB's by up to 12 points but
  rank the images the same.
- MATLAB's rgb2gray and imresize(..., 0.5) (bicubic, antialiased) are
  reimplemented; they agree with MATLAB to rounding, not bit for bit.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import pickle
from collections.abc import Iterable

import numpy as np
from scipy.ndimage import correlate
from scipy.special import gamma

from grepq_core.errors import GrepqError, ImageError
from grepq_core.model.zero_shot import mvg_distance, patch_statistics
from grepq_core.training.pristine_patches import gaussian_window

__all__ = ["NIQE_PRISTINE_PHOTOS", "niqe", "brisque", "nss_features", "fit_niqe_pristine"]

NIQE_PRISTINE_PHOTOS = ("astronaut", "camera", "chelsea", "coffee", "rocket", "brick", "grass",
                        "gravel")
"""scikit-image photos (``skimage.data.<name>()``) behind assets/niqe_pristine.npz."""

_ASSET = os.path.join(os.path.dirname(__file__), "assets", "niqe_pristine.npz")
_BLOCK = 96
_SHARPNESS_FRAC = 0.75
# MATLAB's moment-matching grid: gam = 0.2:0.001:10.
_ALPHAS = np.round(np.linspace(0.2, 10.0, 9801), 3)
_R_GGD = gamma(1 / _ALPHAS) * gamma(3 / _ALPHAS) / gamma(2 / _ALPHAS) ** 2
_R_AGGD = 1 / _R_GGD
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


_WINDOW = gaussian_window()


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel (a = -0.5), MATLAB imresize's 'bicubic'."""
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax ** 3 - 2.5 * ax ** 2 + 1,
                    np.where(ax <= 2, -0.5 * ax ** 3 + 2.5 * ax ** 2 - 4 * ax + 2, 0.0))


# At scale 0.5 the antialiased kernel is stretched 2x: 8 taps at distances
# -3.5 .. 3.5 from each output sample's centre.
_HALF_TAPS = _cubic((np.arange(8) - 3.5) / 2)
_HALF_TAPS = _HALF_TAPS / _HALF_TAPS.sum()


def _half(x: np.ndarray) -> np.ndarray:
    """MATLAB imresize(x, 0.5): 8-tap antialiased bicubic, symmetric edges."""
    for axis in (0, 1):
        n = x.shape[axis]
        pad = [(4, 4) if a == axis else (0, 0) for a in range(2)]
        padded = np.pad(x, pad, mode="symmetric")
        m = (n + 1) // 2
        x = sum(w * np.take(padded, np.arange(t + 1, t + 1 + 2 * m, 2), axis=axis)
                for t, w in enumerate(_HALF_TAPS))
    return x


def _grey(img: np.ndarray) -> np.ndarray:
    """MATLAB rgb2gray of a uint8 image (rounded to integers), as float64."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected an HxWx3 (or HxW) uint8 image, got {img.dtype} {img.shape}")
    if img.ndim == 2:
        return img.astype(np.float64)
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.round(img.astype(np.float64) @ weights)


def _mscn(grey: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients and the local deviation."""
    mu = correlate(grey, _WINDOW, mode=mode)
    sigma = np.sqrt(np.abs(correlate(grey * grey, _WINDOW, mode=mode) - mu * mu))
    return (grey - mu) / (sigma + 1), sigma


def _ggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shape and standard deviation of a zero-mean generalised Gaussian, per row."""
    sigma_sq = np.mean(x ** 2, axis=1)
    rho = sigma_sq / np.mean(np.abs(x), axis=1) ** 2
    alpha = _ALPHAS[np.argmin(np.abs(rho[:, None] - _R_GGD[None]), axis=1)]
    return alpha, np.sqrt(sigma_sq)


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape, left and right standard deviations of an asymmetric GGD, per row."""
    neg, pos = x < 0, x > 0
    left = np.sqrt(np.sum(x ** 2 * neg, axis=1) / np.sum(neg, axis=1))
    right = np.sqrt(np.sum(x ** 2 * pos, axis=1) / np.sum(pos, axis=1))
    ratio = left / right
    rhat = np.mean(np.abs(x), axis=1) ** 2 / np.mean(x ** 2, axis=1)
    rhat_norm = rhat * (ratio ** 3 + 1) * (ratio + 1) / (ratio ** 2 + 1) ** 2
    alpha = _ALPHAS[np.argmin((_R_AGGD[None] - rhat_norm[:, None]) ** 2, axis=1)]
    return alpha, left, right


def _pair_products(mscn: np.ndarray) -> list[np.ndarray]:
    """MSCN times its circular shifts along the four orientations (last two axes)."""
    return [mscn * np.roll(mscn, shift, axis=(-2, -1)) for shift in _SHIFTS]


def _aggd_mean(alpha, left, right):
    return (right - left) * np.sqrt(gamma(1 / alpha) / gamma(3 / alpha)) * gamma(2 / alpha) / gamma(1 / alpha)


def _brisque_scale(mscn: np.ndarray) -> list[np.ndarray]:
    """18 BRISQUE features of one scale (brisque_feature.m)."""
    alpha, sigma = _ggd(mscn.reshape(1, -1))
    feats = [alpha, sigma ** 2]
    for pair in _pair_products(mscn):
        a, left, right = _aggd(pair.reshape(1, -1))
        feats += [a, _aggd_mean(a, left, right), left ** 2, right ** 2]
    return feats


def nss_features(img: np.ndarray) -> np.ndarray:
    """BRISQUE's 36 NSS features [float64], full then half size; no learned model.

    Raises ImageError ``no_texture`` for an image whose statistics are
    undefined (a flat image).
    """
    grey = _grey(img)
    feats = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(2):
            feats += _brisque_scale(_mscn(grey, "constant")[0])
            grey = _half(grey)
    out = np.concatenate(feats)
    if not np.all(np.isfinite(out)):
        raise ImageError("no_texture", "BRISQUE statistics are undefined for a flat image")
    return out


@functools.lru_cache(maxsize=1)
def _brisque_svr() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(range min, range max, support vectors, coefficients, gamma, rho) from the brisque package."""
    spec = importlib.util.find_spec("brisque")
    models = os.path.join(spec.submodule_search_locations[0], "models") if spec else ""
    svm_path, range_path = os.path.join(models, "svm.txt"), os.path.join(models, "normalize.pickle")
    if not (os.path.isfile(svm_path) and os.path.isfile(range_path)):
        raise GrepqError("BRISQUE needs the SVR bundled in the 'brisque' package: "
                         "pip install --no-deps brisque==0.2.0")
    with open(range_path, "rb") as f:
        ranges = pickle.load(f)
    header, coefs, svs = {}, [], []
    with open(svm_path) as f:
        for line in f:
            if line.strip() == "SV":
                break
            key, _, value = line.partition(" ")
            header[key] = value.strip()
        for line in f:
            coef, *pairs = line.split()
            row = np.zeros(len(ranges["min_"]))
            for pair in pairs:
                index, value = pair.split(":")
                row[int(index) - 1] = float(value)
            coefs.append(float(coef))
            svs.append(row)
    return (np.asarray(ranges["min_"], dtype=np.float64), np.asarray(ranges["max_"], dtype=np.float64),
            np.stack(svs), np.asarray(coefs), float(header["gamma"]), float(header["rho"]))


def brisque(img: np.ndarray) -> float:
    """BRISQUE score of an HxWx3 uint8 image; lower is better (about 0-100)."""
    lo, hi, svs, coefs, gam, rho = _brisque_svr()
    scaled = -1 + 2 * (nss_features(img) - lo) / (hi - lo)
    kernel = np.exp(-gam * np.sum((svs - scaled) ** 2, axis=1))
    return float(kernel @ coefs - rho)


def _blocks(x: np.ndarray, size: int) -> np.ndarray:
    """Non-overlapping size x size blocks [B, size, size] of an image cropped to a multiple of size."""
    h, w = x.shape[0] // size, x.shape[1] // size
    return x[:h * size, :w * size].reshape(h, size, w, size).swapaxes(1, 2).reshape(-1, size, size)


def _niqe_scale(blocks: np.ndarray) -> np.ndarray:
    """18 NIQE features per block [B, 18] (computefeature.m)."""
    flat = blocks.reshape(len(blocks), -1)
    alpha, left, right = _aggd(flat)
    c = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    feats = [alpha, (left + right) * c / 2]
    for pair in _pair_products(blocks):
        a, left, right = _aggd(pair.reshape(len(pair), -1))
        c = np.sqrt(gamma(1 / a) / gamma(3 / a))
        feats += [a, _aggd_mean(a, left, right), left * c, right * c]
    return np.stack(feats, axis=1)


def _niqe_block_features(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NIQE's 36 features per 96x96 block [B, 36] and each block's sharpness [B].

    Sharpness is the block mean of the full-size local deviation (what the
    pristine fit thresholds). Raises ImageError ``too_small`` below 96x96.
    """
    grey = _grey(img)
    if grey.shape[0] < _BLOCK or grey.shape[1] < _BLOCK:
        raise ImageError("too_small", f"NIQE needs at least {_BLOCK}x{_BLOCK} pixels, got {grey.shape[:2]}")
    h, w = grey.shape[0] // _BLOCK * _BLOCK, grey.shape[1] // _BLOCK * _BLOCK
    grey = grey[:h, :w]
    mscn, sigma = _mscn(grey, "nearest")
    sharpness = _blocks(sigma, _BLOCK).mean(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        full = _niqe_scale(_blocks(mscn, _BLOCK))
        half = _niqe_scale(_blocks(_mscn(_half(grey), "nearest")[0], _BLOCK // 2))
    return np.concatenate([full, half], axis=1), sharpness


def fit_niqe_pristine(images: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pristine mean [36] and covariance [36, 36] from the sharp blocks of each image."""
    kept = []
    for img in images:
        feats, sharpness = _niqe_block_features(img)
        kept.append(feats[sharpness > _SHARPNESS_FRAC * sharpness.max()])
    rows = np.concatenate(kept)
    return patch_statistics(rows[np.all(np.isfinite(rows), axis=1)])


@functools.lru_cache(maxsize=1)
def _niqe_pristine() -> tuple[np.ndarray, np.ndarray]:
    with np.load(_ASSET) as z:
        return z["mu"], z["cov"]


def niqe(img: np.ndarray) -> float:
    """NIQE score of an HxWx3 uint8 image (at least 96x192); lower is better.

    Raises ImageError ``too_small`` when fewer than two 96x96 blocks with
    defined statistics fit in the image.
    """
    feats, _ = _niqe_block_features(img)
    feats = feats[np.all(np.isfinite(feats), axis=1)]
    if len(feats) < 2:
        raise ImageError("too_small", f"NIQE needs two {_BLOCK}x{_BLOCK} blocks with texture, "
                         f"found {len(feats)}")
    mu_t, cov_t = patch_statistics(feats)
    mu_r, cov_r = _niqe_pristine()
    return mvg_distance(mu_r, cov_r, mu_t, cov_t, eps=0.0)
