"""Build grepq's synthetic IQA benchmark from offline photos the shipped model never saw.

Contents are random crops (random scale, random position) of the holdout
photos of `scripts/offline_photos.py`. Each crop is distorted with `--types`
distortion types drawn at random from the registry (grepq_core.training.distortions),
each at `--levels` levels drawn at random from 1..5; the undistorted crop is
the reference and is not part of the set. Every image is labelled
100 x FSIM(reference, distorted) (grepq_core.fsim): FSIM is the annotator
docs/method.md trains the LL encoder with, and stands in for MOS here, so the
benchmark measures agreement with a full-reference metric, not with human
opinion. group = the crop, so `evaluation.content_split` keeps all versions of one
crop on one side of a split; crops of the same photo can overlap in content.

Writes OUTPUT/images/*.png and OUTPUT/labels.csv (path, score, group, plus
photo, distortion, level for analysis), then prints the `grepq evaluate`
command for it.

    python scripts/offline_photos.py /tmp/photos
    python benchmarks/synthetic_benchmark.py --photos /tmp/photos/holdout --output /tmp/grepq-synthetic
"""
from __future__ import annotations

import argparse
import os
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from grepq_core.training.distortions import NUM_LEVELS, apply_distortion, list_distortions
from grepq_core.training.fsim import fsim_matrix


def _crop(photo: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A width x height crop of the photo rescaled by a random factor (at most 1, never below the crop)."""
    img = Image.fromarray(photo)
    smallest = max(width / img.width, height / img.height)
    if smallest > 1:
        raise SystemExit(f"a {img.width}x{img.height} photo is smaller than the {width}x{height} crop")
    scale = rng.uniform(smallest, 1.0)
    img = img.resize((max(width, round(img.width * scale)), max(height, round(img.height * scale))), Image.LANCZOS)
    x, y = rng.integers(0, img.width - width + 1), rng.integers(0, img.height - height + 1)
    return np.asarray(img.crop((x, y, x + width, y + height)))


def _content(task: tuple) -> list[dict]:
    """One crop's distorted versions, written as PNGs, with their FSIM labels."""
    index, path, crop, args = task
    name = Path(path).stem
    rng = np.random.default_rng([args.seed, index, crop])
    reference = _crop(np.asarray(Image.open(path).convert("RGB")), args.width, args.height, rng)
    group = f"{name}_c{crop}"
    rows = []
    for kind in rng.choice(list_distortions(), args.types, replace=False):
        for level in sorted(rng.choice(NUM_LEVELS, args.levels, replace=False) + 1):
            distorted = apply_distortion(reference, kind, int(level), seed=int(rng.integers(2**31)))
            file = f"images/{group}_{kind}{level}.png"
            Image.fromarray(distorted).save(args.output / file)
            fsim = fsim_matrix(np.stack([reference, distorted]))[0, 1]
            rows.append({"path": file, "score": 100 * fsim, "group": group, "photo": name,
                         "distortion": kind, "level": int(level)})
    return rows


def _one_thread():
    """FSIM on one small image pair is fastest single-threaded; the pool gives the parallelism."""
    torch.set_num_threads(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="/tmp/photos/holdout", help="folder of holdout photos (*.png)")
    parser.add_argument("--output", type=Path, default=Path("/tmp/grepq-synthetic"))
    parser.add_argument("--crops", type=int, default=5, help="contents per photo")
    parser.add_argument("--types", type=int, default=5, help="distortion types per content")
    parser.add_argument("--levels", type=int, default=2, help="levels per distortion type")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()

    photos = sorted(str(p) for p in Path(args.photos).glob("*.png"))
    if not photos:
        raise SystemExit(f"no *.png under {args.photos}: run scripts/offline_photos.py first")
    (args.output / "images").mkdir(parents=True, exist_ok=True)
    tasks = [(i, p, c, args) for i, p in enumerate(photos) for c in range(args.crops)]
    start = time.perf_counter()
    with Pool(args.workers, initializer=_one_thread) as pool:
        rows = [row for content in pool.imap(_content, tasks) for row in content]
    labels = pd.DataFrame(rows)
    labels.to_csv(args.output / "labels.csv", index=False)
    print(f"{len(labels)} images ({len(tasks)} contents from {len(photos)} photos, {args.types} types x "
          f"{args.levels} levels each, {args.width}x{args.height}) in {time.perf_counter() - start:.0f} s; "
          f"score = 100 x FSIM, {labels['score'].min():.1f}..{labels['score'].max():.1f}; "
          f"{labels['distortion'].nunique()} distortion types used -> {args.output}/labels.csv")
    print("\nEvaluate with:\n")
    print(f"grepq evaluate --dataset csv --root {args.output} --protocol both --n-train 50 --splits 10 "
          f"--features-cache {args.output}/cache --output {args.output}/evaluation")


if __name__ == "__main__":
    main()
