"""`grepq build-pristine`: pristine photos -> the pristine model of the zero-shot LL score.

    per photo: decode -> sharpest, then most colourful 96x96 patches -> LL features
    all features -> mean and covariance -> PRISTINE.npz
    per profile: the photos and their heavy distortions -> anchors of the 0-100 scale

docs/method.md, "Zero-shot". The model records the identity of the LL encoder
whose features it holds; use it with that encoder only. Plain Python: the
input is a few hundred photos.
"""
from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from grepq_core.errors import GrepqError, ImageError

if TYPE_CHECKING:  # numpy, torch and the rest are imported where they are used, so --help stays fast
    import numpy as np

    from grepq_core.pristine import PristineModel

from pipelines.options import HelpFormatter

__all__ = ["run", "arg_parser", "build_pristine"]

log = logging.getLogger(__name__)


def pristine_patches(images: list[str], patch: int = 96, sharpness_frac: float = 0.75, colour_frac: float = 0.8,
                     rule: str = "grepq", progress: bool = False) -> dict[str, np.ndarray]:
    """{input: its selected [N, patch, patch, 3] uint8 patches} for every photo (and HDF5 patch file) of `images`.

    Photos that cannot be decoded are logged and skipped.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from grepq_core.imageio import load_image
    from grepq_core.pristine import HDF5_SUFFIXES, read_patches, select_pristine_patches

    chosen, skipped = {}, 0
    for path in tqdm(images, desc="build-pristine", unit="photo", disable=not progress):
        if path.lower().endswith(HDF5_SUFFIXES):
            chosen[path] = read_patches(path)[0]
            continue
        try:
            img = load_image(path)
        except ImageError as e:
            log.warning("skipped %s: %s", path, e)
            skipped += 1
            continue
        chosen[path] = select_pristine_patches(img, patch, sharpness_frac, colour_frac, rule)
    if skipped:
        log.warning("skipped %d of %d photos that could not be decoded", skipped, len(images))
    if not sum(len(p) for p in chosen.values()):
        raise GrepqError(f"no {patch}x{patch} patch could be cut from the `input` photos")
    return chosen


def build_pristine(
    images: list[str],
    ll_weights: str = "shipped",
    patch: int = 96,
    sharpness_frac: float = 0.75,
    colour_frac: float = 0.8,
    device: str = "auto",
    batch: int = 256,
    progress: bool = False,
    rule: str = "grepq",
    calibrate: tuple[str, ...] = ("fast",),
) -> PristineModel:
    """Fit the pristine Gaussian to the LL features of the selected patches of `images`, with the
    0-100 scale's anchors for each profile of `calibrate`."""
    return fit_on_patches(pristine_patches(images, patch, sharpness_frac, colour_frac, rule, progress),
                          ll_weights, device, batch, calibrate, progress)


def fit_on_patches(chosen: dict[str, np.ndarray], ll_weights: str, device: str = "auto", batch: int = 256,
                   calibrate: tuple[str, ...] = ("fast",), progress: bool = False) -> PristineModel:
    """The pristine Gaussian of the LL features of the patches `chosen` from each input.

    The anchors of the calibrated scale need the photos themselves, so
    they are measured only when no input is an HDF5 file of patches.
    """
    import numpy as np

    from grepq_core.calibration import fit_anchors, setting_key
    from grepq_core.devices import resolve_device
    from grepq_core.imageio import load_image
    from grepq_core.ll_encoder import load_ll_encoder
    from grepq_core.pristine import HDF5_SUFFIXES, fit_pristine, patch_features
    from grepq_core.profiles import spec_for

    encoder, identity = load_ll_encoder(ll_weights)
    device = resolve_device(device)
    features = {path: patch_features(encoder, patches, device, batch) for path, patches in chosen.items()
                if len(patches)}
    model = fit_pristine(np.concatenate(list(features.values())), identity)
    if calibrate and any(p.lower().endswith(HDF5_SUFFIXES) for p in features):
        log.warning("the inputs include HDF5 patch files: the model has no calibrated 0-100 scale "
                    "(its anchors are measured on whole photos)")
        return model
    photos = list(features)
    settings = {}
    for profile in calibrate:
        spec = spec_for(profile)
        settings[setting_key(spec)] = spec
    if not settings:
        return model
    try:
        model.calibration.update(fit_anchors(
            photos, [features[p] for p in photos], lambda x: patch_features(encoder, x, device, batch), settings,
            identity, load=load_image, progress=progress))
    except GrepqError as e:
        log.warning("the model has no calibrated 0-100 scale: %s", e)
    for key, anchors in model.calibration.items():
        log.info("0-100 scale anchors: good=%.4g bad=%.4g (%s)", anchors.good, anchors.bad, key)
    return model


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq build-pristine", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("--input", action="append", required=True,
                        help="glob of pristine photos, or of HDF5 files of patches already selected (the "
                        "authors' pristine_patches_096_0.75_0.80.hdf5); local or fsspec URL; repeatable")
    parser.add_argument("--output", help="pristine model .npz (path or URL)")
    parser.add_argument("--patches-output",
                        help="also (or only) write the selected patches as the authors' HDF5 format")
    parser.add_argument("--rule", default="grepq", choices=("grepq", "reference"),
                        help="patch selection: grepq's, or exactly the authors' (zero padding, no kept best)")
    parser.add_argument("--ll-weights", default="shipped", help="LL encoder: 'shipped', a path or URL")
    parser.add_argument("--patch", type=int, default=96, help="patch side")
    parser.add_argument("--sharpness", type=float, default=0.75,
                        help="keep patches sharper than this fraction of the sharpest")
    parser.add_argument("--colourfulness", type=float, default=0.8,
                        help="then those more colourful than this fraction of the most colourful")
    parser.add_argument("--calibrate", default="fast",
                        help="comma-separated profiles (fast, reference) whose 0-100 scale is measured on the "
                        "photos and stored with the model, or none")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(argv=None):
    args = arg_parser().parse_args(argv)  # first, so that a flag error needs no heavy import
    from grepq_core.pristine import write_patches
    from grepq_core.profiles import PROFILES
    from grepq_core.training.data import list_images

    if not args.output and not args.patches_output:
        raise GrepqError("give `output` (the pristine model), `patches_output` (the patches), or both")
    import numpy as np

    calibrate = () if args.calibrate == "none" else tuple(args.calibrate.split(","))
    unknown = sorted(set(calibrate) - set(PROFILES))
    if unknown:
        raise GrepqError(f"`calibrate` takes profiles of {', '.join(PROFILES)} or none, got {', '.join(unknown)}")
    images = list_images(args.input)
    chosen = pristine_patches(images, args.patch, args.sharpness, args.colourfulness, args.rule,
                              progress=not args.no_progress)
    if args.patches_output:
        patches = np.concatenate(list(chosen.values()))
        write_patches(patches, args.patches_output)
        print(f"{len(patches)} pristine patches of {len(images)} inputs -> {args.patches_output}")
    if args.output:
        model = fit_on_patches(chosen, args.ll_weights, args.device, calibrate=calibrate,
                               progress=not args.no_progress)
        model.save(args.output)
        scale = "; ".join(f"{k}: good {a.good:.4g}, bad {a.bad:.4g}" for k, a in model.calibration.items())
        print(f"pristine model from {model.n_patches} patches of {len(images)} inputs ({model.encoder_identity}) "
              f"-> {args.output}" + (f"\n0-100 scale anchors ({scale})" if scale else ""))
