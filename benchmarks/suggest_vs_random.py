"""Few-shot SRCC with suggested labels (grepq_core.fitting.selection) vs random labels.

A synthetic IQA set built offline: random crops of the holdout photos of
`scripts/offline_photos.py` (never used to train the shipped LL model), each
kept as the reference and distorted with random types and levels from the
distortion registry. The label of an image is 100 x FSIM against its
reference (docs/method.md uses FSIM as its annotator; here it stands in for MOS).

For each seed, a third of the crops (all their versions) is held out as the
test set; a ridge (alpha by CV, as `grepq fit` does) is fitted on N labels
chosen from the rest, either at random or by `suggest_labels`, and scored by
SRCC on the same test set. docs/method.md's convention: report the median over
10 splits.

    python scripts/offline_photos.py /tmp/photos
    python benchmarks/suggest_vs_random.py --photos /tmp/photos [--ll-weights CKPT]

Without a shipped LL model pass --ll-weights; the pristine model for the
zero-shot LL score is then built from the photos' train/ folder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from grepq_core.fitting.ridge_fit import fit_ridge
from grepq_core.fitting.selection import suggest_labels
from grepq_core.images.decode import load_image
from grepq_core.metrics import srcc
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.profiles import spec_for
from grepq_core.model.settings import EncoderSpec
from grepq_core.model.shipped import SHIPPED_LL, SHIPPED_PRISTINE
from grepq_core.training.distortions import apply_distortion, list_distortions
from grepq_core.training.fsim import fsim_matrix
from grepq_core.training.pristine import build_pristine


def _crops(photos: list[Path], per_photo: int, size: int, rng) -> list[np.ndarray]:
    out = []
    for path in photos:
        img = load_image(str(path))
        h, w = img.shape[:2]
        for _ in range(per_photo):
            top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
            out.append(np.ascontiguousarray(img[top:top + size, left:left + size]))
    return out


def build_dataset(photos: list[Path], per_photo: int, versions: int, size: int, seed: int = 0):
    """(images, labels, content id per image): each crop's reference plus `versions` distortions."""
    rng = np.random.default_rng(seed)
    names = list_distortions()
    images, labels, content = [], [], []
    for c, ref in enumerate(_crops(photos, per_photo, size, rng)):
        images.append(ref)
        labels.append(100.0)
        content.append(c)
        for _ in range(versions):
            name, level = names[rng.integers(len(names))], int(rng.integers(1, 6))
            distorted = apply_distortion(ref, name, level, seed=int(rng.integers(2**31)))
            images.append(distorted)
            labels.append(100.0 * fsim_matrix(np.stack([ref, distorted]))[0, 1])
            content.append(c)
    return images, np.asarray(labels), np.asarray(content)


def extract(images: list[np.ndarray], spec: EncoderSpec) -> tuple[np.ndarray, np.ndarray, str]:
    """LL feature rows, zero-shot LL scores and the encoder identity."""
    extractor = Extractor.load(spec)
    rows = []
    for start in range(0, len(images), spec.batch_size):
        chunk = enumerate(images[start:start + spec.batch_size], start)
        batch = [image_views(img, spec) for _, img in chunk]
        rows += extractor.encode(batch)
    features = np.stack([r["ll_features"] for r in rows]).astype(np.float64)
    zero_shot = np.asarray([np.nan if r["zs_ll"] is None else r["zs_ll"] for r in rows])
    return features, zero_shot, extractor.encoders["ll"].identity


def few_shot_srcc(features, labels, train, test, identity) -> float:
    model = fit_ridge(features[train], labels[train], [["ll", features.shape[1]]], {"ll": identity})
    return srcc(model.predict(features[test]), labels[test])


def compare(features, zero_shot, labels, content, identity, n: int, seeds: int) -> dict[str, list[float]]:
    """SRCC on the held-out crops per seed, for each way of choosing the n labels."""
    results = {"random": [], "suggested": [], "suggested, no zero-shot": [], "zero-shot (no labels)": []}
    contents = np.unique(content)
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        held_out = rng.choice(contents, size=len(contents) // 3, replace=False)
        test = np.flatnonzero(np.isin(content, held_out))
        pool = np.flatnonzero(~np.isin(content, held_out))
        picks = {
            "random": rng.choice(pool, size=n, replace=False),
            "suggested": pool[suggest_labels(features[pool], zero_shot[pool], n, seed=seed)],
            "suggested, no zero-shot": pool[suggest_labels(features[pool], None, n, seed=seed)],
        }
        for name, train in picks.items():
            results[name].append(few_shot_srcc(features, labels, train, test, identity))
        results["zero-shot (no labels)"].append(srcc(zero_shot[test], labels[test]))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="/tmp/photos", help="offline_photos.py output (holdout/, train/)")
    parser.add_argument("--ll-weights", default="shipped", help="LL checkpoint (default: the shipped one)")
    parser.add_argument("--pristine", help="pristine .npz for the LL encoder (default: shipped, or built "
                        "from PHOTOS/train when --ll-weights is given)")
    parser.add_argument("--crops", type=int, default=5, help="random crops per holdout photo")
    parser.add_argument("--versions", type=int, default=8, help="distorted versions per crop")
    parser.add_argument("--size", type=int, default=256, help="crop side")
    parser.add_argument("-n", type=int, default=50, help="labels per fit")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args(argv)

    if args.ll_weights == "shipped" and not SHIPPED_LL.exists():
        sys.exit(f"no shipped LL model at {SHIPPED_LL}: pass --ll-weights CHECKPOINT")
    pristine = args.pristine
    if pristine is None and args.ll_weights == "shipped":
        pristine = str(SHIPPED_PRISTINE)
    elif pristine is None:
        pristine = str(Path(tempfile.mkdtemp()) / "pristine.npz")
        train = sorted(str(p) for p in (Path(args.photos) / "train").glob("*.png"))
        build_pristine(train, ll_weights=args.ll_weights, device="cpu").save(pristine)
    print(f"LL weights: {'shipped ' + str(SHIPPED_LL) if args.ll_weights == 'shipped' else args.ll_weights}; "
          f"pristine: {pristine}")

    start = time.perf_counter()
    photos = sorted((Path(args.photos) / "holdout").glob("*.png"))
    images, labels, content = build_dataset(photos, args.crops, args.versions, args.size)
    print(f"{len(images)} images ({len(photos)} photos x {args.crops} crops x (1 + {args.versions} versions)) "
          f"labelled by FSIM in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    spec = spec_for(pathways=("ll",), ll_weights=args.ll_weights, pristine=pristine, device="cpu")
    features, zero_shot, identity = extract(images, spec)
    print(f"features from {identity} in {time.perf_counter() - start:.0f} s")

    results = compare(features, zero_shot, labels, content, identity, args.n, args.seeds)
    print(f"\nSRCC on held-out crops, {args.n} labels, {args.seeds} splits")
    print("| labels | median | mean | min | max |\n| --- | --- | --- | --- | --- |")
    for name, values in results.items():
        v = np.asarray(values)
        print(f"| {name} | {np.median(v):.3f} | {v.mean():.3f} | {v.min():.3f} | {v.max():.3f} |")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
