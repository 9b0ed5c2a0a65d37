"""Synthetic distortions with five graded levels (docs/method.md, "Training the LL
encoder": the distortion bank).

The bank follows KADID-10k (Lin, Hosu, Saupe, "KADID-10k: A Large-scale
Artificially Distorted IQA Database", QoMEX 2019) and the parameter tables of
its published MATLAB generator (``imdist_generator.m``), rewritten with
numpy, scipy, scikit-image and Pillow. Every distortion is a pure function
``fn(img, level, rng) -> img`` on HxWx3 uint8 RGB, registered with its family.

Randomness is drawn the same way at every level (only the strength changes),
so for one seed level k+1 is a stronger version of the very corruption seen
at level k. That keeps the levels ordered, which the QACL weights rely on.

Deviations from the KADID-10k generator:

- ``mean_shift`` and ``contrast_change``: KADID's tables cross zero (level 3
  is the identity, levels 1 and 5 go in opposite directions). Here the level
  sets the magnitude and the direction is drawn from ``rng``.
- ``saturation_up``: KADID's table (1, 2, 3, 6, 9) read as a Lab chroma
  multiplier makes level 1 the identity; here level 1 multiplies by 1.5.
- ``contrast_change`` uses a monotone (PCHIP) tone curve through KADID's
  knots 0.3 / 0.5 / 0.7 rather than MATLAB's spline fit.
- ``brighten`` / ``darken``: the tone curve is the quadratic through
  (0, 0), (0.5, m), (1, 1), mixed 2:1 from RGB and from L* as KADID does.
- ``sharpen``: KADID's amounts (1, 2, 3, 6, 12) drive an unsharp mask on L*
  with a Gaussian of sigma 1.
- ``colour_channel_noise`` adds the noise in full-range (JPEG) YCbCr, not
  MATLAB's studio-range YCbCr.
- ``non_eccentricity_patches``: KADID's patch counts are for 512x384 images;
  here they scale with the image area (at least one patch).
- ``colour_quantisation`` uses Pillow's median cut with Floyd-Steinberg
  dithering (MATLAB: minimum variance quantisation with dithering).
- Not included: colour diffusion, denoising, quantisation noise, colour
  block.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.interpolate import PchipInterpolator
from skimage import color

from grepq_core.errors import GrepqError, did_you_mean

__all__ = [
    "DISTORTIONS",
    "NUM_LEVELS",
    "Distortion",
    "apply_distortion",
    "list_distortions",
]

NUM_LEVELS = 5

DistortionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Distortion:
    """One registered distortion; ``levels`` is its parameter per level 1..5."""

    name: str
    family: str
    fn: DistortionFn
    levels: tuple[float, ...]
    impl: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]  # (img, parameter, rng)


_REGISTRY: dict[str, Distortion] = {}
DISTORTIONS: Mapping[str, Distortion] = MappingProxyType(_REGISTRY)


def _register(name: str, family: str, levels: Sequence[float]):
    """Register ``impl(img, param, rng)`` as ``fn(img, level, rng)`` with
    ``param = levels[level - 1]``."""
    if len(levels) != NUM_LEVELS:
        raise ValueError(f"{name}: need {NUM_LEVELS} levels, got {len(levels)}")

    def decorate(impl):
        def fn(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
            _check_image(img)
            _check_level(level)
            return impl(img, levels[level - 1], rng)

        fn.__name__ = name
        fn.__doc__ = impl.__doc__
        _REGISTRY[name] = Distortion(name, family, fn, tuple(levels), impl)
        return impl

    return decorate


def list_distortions(family: str | None = None) -> list[str]:
    """Registered distortion names, sorted, optionally of one family."""
    return sorted(n for n, d in _REGISTRY.items() if family is None or d.family == family)


def apply_distortion(img: np.ndarray, name: str, level: int, seed: int = 0,
                     ladder: Sequence[float] | None = None) -> np.ndarray:
    """Distort ``img`` (HxWx3 uint8) with distortion ``name`` at ``level``
    (1 mildest .. 5 strongest); the same seed gives the same output.

    `ladder` (5 parameters, mildest first) replaces the registered levels'
    parameters, e.g. JPEG qualities (90, 60, 35, 15, 5) instead of
    (43, 36, 24, 7, 4).
    """
    if name not in _REGISTRY:
        raise GrepqError(
            f"Unknown distortion {name!r}.{did_you_mean(name, _REGISTRY)} Valid names: {', '.join(list_distortions())}"
        )
    distortion = _REGISTRY[name]
    levels = distortion.levels if ladder is None else ladder
    if len(levels) != NUM_LEVELS:
        raise GrepqError(f"a ladder for {name} has {NUM_LEVELS} parameters, got {len(levels)}")
    _check_image(img)
    _check_level(level)
    return distortion.impl(img, levels[level - 1], np.random.default_rng(seed))


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("expected an HxWx3 uint8 RGB array")


def _check_level(level: int) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not 1 <= level <= NUM_LEVELS:
        raise ValueError(f"level must be an integer in 1..{NUM_LEVELS}, got {level!r}")


def _as_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _per_channel(x: np.ndarray, filt: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([filt(x[..., c]) for c in range(x.shape[2])], axis=-1)


def _rgb_from_lab(lab: np.ndarray) -> np.ndarray:
    """Lab -> RGB in [0, 1]; out-of-gamut colours are clipped, which is the
    point of the strong colour distortions, so skimage's warning is muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return color.lab2rgb(lab)


def _with_pil(img: np.ndarray, fmt: str, **save_args) -> np.ndarray:
    """Encode with Pillow and decode again."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **save_args)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"))


# ---------------------------------------------------------------- blur


@_register("gaussian_blur", "blur", (0.1, 0.5, 1.0, 2.0, 5.0))
def _gaussian_blur(img, sigma, rng):
    """Gaussian low-pass, standard deviation ``sigma`` pixels."""
    return _to_uint8(ndimage.gaussian_filter(_as_float(img), sigma=(sigma, sigma, 0), mode="nearest"))


def _disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Uniform disk (MATLAB ``fspecial('disk')``), pixel coverage by supersampling."""
    half = int(np.ceil(radius - 0.5))
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    fine = (np.arange(-half, half + 1)[:, None] + offsets[None, :]).ravel()
    inside = fine[:, None] ** 2 + fine[None, :] ** 2 <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return kernel / kernel.sum()


def _line_kernel(length: float, angle: float) -> np.ndarray:
    """Uniform line of ``length`` pixels at ``angle`` (MATLAB ``fspecial('motion')``),
    rasterised by bilinear splatting of points along it."""
    half_len = (length - 1) / 2
    half = int(np.ceil(half_len)) + 1
    t = np.linspace(-half_len, half_len, 8 * int(np.ceil(length)) + 1)
    ys, xs = half - t * np.sin(angle), half + t * np.cos(angle)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    kernel = np.zeros((2 * half + 1, 2 * half + 1))
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(kernel, (y0 + dy, x0 + dx), wy * wx)
    return kernel / kernel.sum()


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    x = _as_float(img)
    return _to_uint8(_per_channel(x, lambda ch: ndimage.convolve(ch, kernel, mode="nearest")))


@_register("lens_blur", "blur", (1.0, 2.0, 4.0, 6.0, 8.0))
def _lens_blur(img, radius, rng):
    """Out-of-focus blur: convolution with a disk of ``radius`` pixels."""
    return _convolve(img, _disk_kernel(radius))


@_register("motion_blur", "blur", (1.0, 2.0, 4.0, 6.0, 10.0))
def _motion_blur(img, length, rng):
    """Camera shake: a line kernel of ``length`` pixels in a random direction."""
    return _convolve(img, _line_kernel(length, rng.uniform(0.0, np.pi)))


# ---------------------------------------------------------------- colour


@_register("saturation_down", "colour", (0.4, 0.2, 0.1, 0.0, -0.4))
def _saturation_down(img, factor, rng):
    """HSV saturation times ``factor`` (negative goes past grey to the
    complementary hue, as in KADID's level 5)."""
    hsv = color.rgb2hsv(img)
    hsv[..., 1] *= factor
    return _to_uint8(color.hsv2rgb(hsv))


@_register("saturation_up", "colour", (1.5, 2.0, 3.0, 6.0, 9.0))
def _saturation_up(img, factor, rng):
    """Lab chroma (a*, b*) times ``factor``."""
    lab = color.rgb2lab(img)
    lab[..., 1:] *= factor
    return _to_uint8(_rgb_from_lab(lab))


@_register("colour_shift", "colour", (1.0, 3.0, 6.0, 8.0, 12.0))
def _colour_shift(img, amount, rng):
    """Green channel displaced by ``amount`` pixels in a random direction,
    blended in where the image has edges (chromatic aberration)."""
    x = _as_float(img)
    angle = rng.uniform(0.0, 2 * np.pi)
    grey = x @ np.array([0.2989, 0.5870, 0.1140])
    edges = ndimage.gaussian_filter(np.hypot(*np.gradient(grey)), sigma=4)
    lo, hi = np.percentile(edges, [1, 99])
    weight = np.clip((edges - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    displacement = (amount * np.sin(angle), amount * np.cos(angle))
    shifted = ndimage.shift(x[..., 1], displacement, order=1, mode="reflect")
    x[..., 1] = weight * shifted + (1 - weight) * x[..., 1]
    return _to_uint8(x)


@_register("colour_quantisation", "colour", (64, 48, 32, 16, 8))
def _colour_quantisation(img, colours, rng):
    """Palette of ``colours`` colours (median cut), Floyd-Steinberg dithered."""
    pal = Image.fromarray(img).quantize(
        colors=int(colours), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG
    )
    return np.asarray(pal.convert("RGB"))


# ---------------------------------------------------------------- compression


@_register("jpeg", "compression", (43, 36, 24, 7, 4))
def _jpeg(img, quality, rng):
    """JPEG at Pillow/libjpeg ``quality``."""
    return _with_pil(img, "JPEG", quality=int(quality))


@_register("jpeg2000", "compression", (16, 32, 45, 120, 400))
def _jpeg2000(img, ratio, rng):
    """JPEG 2000 (OpenJPEG, 9/7 wavelet) at compression ratio ``ratio``:1."""
    return _with_pil(img, "JPEG2000", quality_mode="rates", quality_layers=[ratio], irreversible=True)


# ---------------------------------------------------------------- noise


@_register("white_noise", "noise", (0.001, 0.002, 0.003, 0.005, 0.01))
def _white_noise(img, var, rng):
    """Additive Gaussian noise of variance ``var`` on [0, 1] RGB, per channel."""
    return _to_uint8(_as_float(img) + np.sqrt(var) * rng.standard_normal(img.shape))


# Full-range (JPEG) YCbCr, offsets applied separately.
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


@_register("colour_channel_noise", "noise", (0.0001, 0.0005, 0.001, 0.002, 0.003))
def _colour_channel_noise(img, var, rng):
    """Gaussian noise of variance ``var`` added to Y, Cb and Cr ([0, 1] scale)."""
    ycbcr = _as_float(img) @ _RGB_TO_YCBCR.T
    ycbcr += np.sqrt(var) * rng.standard_normal(img.shape)
    return _to_uint8(ycbcr @ _YCBCR_TO_RGB.T)


@_register("impulse_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.03))
def _impulse_noise(img, density, rng):
    """Salt and pepper: a ``density`` fraction of the samples set to 0 or 255."""
    u = rng.random(img.shape)
    out = img.copy()
    out[u < density / 2] = 0
    out[(u >= density / 2) & (u < density)] = 255
    return out


@_register("multiplicative_noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.05))
def _multiplicative_noise(img, var, rng):
    """Speckle: x + x * n with n uniform, zero mean, variance ``var``."""
    x = _as_float(img)
    n = np.sqrt(12 * var) * (rng.random(img.shape) - 0.5)
    return _to_uint8(x + x * n)


# ---------------------------------------------------------------- brightness


def _tone_curve(x: np.ndarray, mid: float) -> np.ndarray:
    """The quadratic through (0, 0), (0.5, mid), (1, 1), clipped to [0, 1]."""
    return np.clip((2 - 4 * mid) * x**2 + (4 * mid - 1) * x, 0.0, 1.0)


def _tone_map(img: np.ndarray, mid: float) -> np.ndarray:
    """KADID's brightness change: 2/3 the curve on RGB, 1/3 the curve on L*."""
    x = _as_float(img)
    lab = color.rgb2lab(img)
    lab[..., 0] = 100.0 * _tone_curve(lab[..., 0] / 100.0, mid)
    return _to_uint8((2 * _tone_curve(x, mid) + _rgb_from_lab(lab)) / 3)


@_register("brighten", "brightness", (0.1, 0.2, 0.4, 0.7, 1.1))
def _brighten(img, amount, rng):
    """Tone curve lifting mid-grey to 0.5 + amount / 2."""
    return _tone_map(img, 0.5 + 0.5 * amount)


@_register("darken", "brightness", (0.05, 0.1, 0.2, 0.4, 0.8))
def _darken(img, amount, rng):
    """Tone curve lowering mid-grey to 0.5 - amount / 2."""
    return _tone_map(img, 0.5 - 0.5 * amount)


def _random_sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


@_register("mean_shift", "brightness", (0.03, 0.06, 0.09, 0.12, 0.15))
def _mean_shift(img, amount, rng):
    """Every sample shifted by ``amount`` (of full scale), up or down at random."""
    return _to_uint8(_as_float(img) + _random_sign(rng) * amount)


# ---------------------------------------------------------------- spatial


@_register("jitter", "spatial", (0.05, 0.1, 0.2, 0.5, 1.0))
def _jitter(img, std, rng):
    """Each pixel resampled from a random offset of ``std`` pixels (bilinear)."""
    h, w = img.shape[:2]
    offsets = std * rng.standard_normal((2, h, w))
    coords = np.mgrid[0:h, 0:w].astype(np.float64) + offsets
    x = _as_float(img)
    return _to_uint8(_per_channel(x, lambda ch: ndimage.map_coordinates(ch, coords, order=1, mode="nearest")))


@_register("pixelate", "spatial", (0.01, 0.05, 0.1, 0.2, 0.5))
def _pixelate(img, amount, rng):
    """Box-downscale by z = 0.95 - amount^0.6, then nearest-neighbour upscale."""
    h, w = img.shape[:2]
    z = 0.95 - amount**0.6
    small = Image.fromarray(img).resize((max(1, round(z * w)), max(1, round(z * h))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


_KADID_AREA = 512 * 384
_PATCH = 16
_MAX_DISPLACEMENT = 8


@_register("non_eccentricity_patches", "spatial", (20, 40, 60, 80, 100))
def _non_eccentricity_patches(img, count, rng):
    """``count`` (per 512x384 pixels) 16x16 patches copied to a position
    displaced by up to 8 pixels.

    Patches are pasted last-drawn first, so the patches a lower level shares
    with this one stay on top and a higher level only adds damage.
    """
    h, w = img.shape[:2]
    size = min(_PATCH, h, w)
    n = max(1, round(count * h * w / _KADID_AREA))
    moves = []
    for _ in range(n):
        top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        dy, dx = rng.integers(-_MAX_DISPLACEMENT, _MAX_DISPLACEMENT + 1, size=2)
        moves.append((top, left, np.clip(top + dy, 0, h - size), np.clip(left + dx, 0, w - size)))
    out = img.copy()
    for top, left, to_top, to_left in reversed(moves):
        out[to_top : to_top + size, to_left : to_left + size] = img[top : top + size, left : left + size]
    return out


# ---------------------------------------------------------------- sharpness and contrast


@_register("sharpen", "sharpness_contrast", (1.0, 2.0, 3.0, 6.0, 12.0))
def _sharpen(img, amount, rng):
    """Over-sharpening: L* + amount * (L* - blurred L*)."""
    lab = color.rgb2lab(img)
    lum = lab[..., 0]
    lab[..., 0] = np.clip(lum + amount * (lum - ndimage.gaussian_filter(lum, 1.0)), 0.0, 100.0)
    return _to_uint8(_rgb_from_lab(lab))


@_register("contrast_change", "sharpness_contrast", (0.025, 0.05, 0.075, 0.1, 0.125))
def _contrast_change(img, amount, rng):
    """Tone curve moving 0.3 and 0.7 apart (more contrast) or together (less)
    by ``amount``, direction at random."""
    c = _random_sign(rng) * amount
    curve = PchipInterpolator([0.0, 0.3, 0.5, 0.7, 1.0], [0.0, 0.3 - c, 0.5, 0.7 + c, 1.0])
    return _to_uint8(curve(_as_float(img)))
