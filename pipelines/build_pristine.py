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

from grepq_core.errors import GrepqError
from pipelines.options import HelpFormatter

__all__ = ["run", "arg_parser"]


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
    from grepq_core.model.pristine import write_patches
    from grepq_core.model.profiles import PROFILES
    from grepq_core.training.data import list_images
    from grepq_core.training.pristine import fit_on_patches, pristine_patches

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
