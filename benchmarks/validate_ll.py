"""Validate a zero-shot LL model against NIQE and BRISQUE on held-out photos.

For each holdout photo (never used in training) and each distortion type of
the registry at levels 1..5, it computes the zero-shot LL score, NIQE and
BRISQUE, and reports:

(a) the fraction of same-photo, same-type level pairs ordered correctly
    (higher level = worse), and
(b) SRCC against a full-reference quality proxy (FSIM to the reference).

    python scripts/offline_photos.py /tmp/photos
    python benchmarks/validate_ll.py --photos '/tmp/photos/holdout/*.png' [--ll-weights shipped]
"""
from __future__ import annotations

import argparse
import glob
import itertools
import json

import numpy as np
from PIL import Image
from tqdm import tqdm

from grepq_core.baselines import brisque, niqe
from grepq_core.distortions import apply_distortion, list_distortions
from grepq_core.extractor import EncoderSpec, Extractor, ViewConfig, prepare_image
from grepq_core.fsim import fsim_matrix
from grepq_core.metrics import srcc

LEVELS = (1, 2, 3, 4, 5)


def _versions(path: str, size: int, types: list[str]):
    img = Image.open(path).convert("RGB")
    if size:
        scale = size / min(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    img = np.asarray(img)
    for kind in types:
        stack = np.stack([img] + [apply_distortion(img, kind, level, seed=0) for level in LEVELS])
        yield kind, stack, fsim_matrix(stack)[0, 1:]


def _ll_scores(model: Extractor, spec: EncoderSpec, images: np.ndarray) -> np.ndarray:
    return np.array([row["zs_ll"] for row in model.extract([prepare_image(img, spec) for img in images])])


def _pairs_ordered(scores: np.ndarray) -> tuple[int, int]:
    """(correct, total) over level pairs: the lower level must score higher."""
    pairs = list(itertools.combinations(range(len(scores)), 2))
    return sum(scores[i] > scores[j] for i, j in pairs), len(pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="/tmp/photos/holdout/*.png")
    parser.add_argument("--ll-weights", default="shipped")
    parser.add_argument("--pristine", default="shipped")
    parser.add_argument("--size", type=int, default=288, help="shorter side of the test images (0: as they are)")
    parser.add_argument("--max-patches", type=int, default=32)
    parser.add_argument("--types", default="all", help="comma-separated distortion names, or all")
    parser.add_argument("--baselines", default="NIQE,BRISQUE",
                        help="comma-separated baselines to compare with (NIQE, BRISQUE), or none")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    types = list_distortions() if args.types == "all" else args.types.split(",")
    spec = EncoderSpec(pathways=("ll",), ll_weights=args.ll_weights, pristine=args.pristine, batch_size=30,
                       views=ViewConfig(max_patches=args.max_patches))
    model = Extractor.load(spec)
    baselines = {"NIQE": lambda imgs: -np.array([niqe(i) for i in imgs]),
                 "BRISQUE": lambda imgs: -np.array([brisque(i) for i in imgs])}
    wanted = [] if args.baselines == "none" else args.baselines.split(",")
    methods = {"grepq zero-shot LL": lambda imgs: _ll_scores(model, spec, imgs),
               **{name: baselines[name] for name in wanted}}
    ordered = {(m, kind): [0, 0] for m in methods for kind in types}
    scores = {m: [] for m in methods}
    proxy = []
    photos = sorted(glob.glob(args.photos))
    for path in tqdm(photos, desc="photos"):
        for kind, stack, similarity in _versions(path, args.size, types):
            proxy.extend(similarity)
            for name, score in methods.items():
                s = score(stack[1:])
                scores[name].extend(s)
                ok, total = _pairs_ordered(s)
                ordered[name, kind][0] += ok
                ordered[name, kind][1] += total
    by_type = {name: {kind: ordered[name, kind][0] / ordered[name, kind][1] for kind in types} for name in methods}
    rows = {name: {"pairs_ordered": sum(ordered[name, k][0] for k in types) / sum(ordered[name, k][1] for k in types),
                   "srcc_vs_fsim": srcc(np.array(scores[name]), np.array(proxy)),
                   "pairs_ordered_by_type": by_type[name]} for name in methods}
    print(f"{len(photos)} holdout photos x {len(types)} distortion types x {len(LEVELS)} levels "
          f"= {len(proxy)} images; identity {model.ll_identity}")
    print("| method | (a) level pairs ordered | (b) SRCC vs FSIM |")
    print("| --- | --- | --- |")
    for name, row in rows.items():
        print(f"| {name} | {row['pairs_ordered']:.3f} | {row['srcc_vs_fsim']:.3f} |")
    print("\n(a) by distortion type\n")
    print("| method | " + " | ".join(types) + " |")
    print("| --- |" + " --- |" * len(types))
    for name in methods:
        print(f"| {name} | " + " | ".join(f"{by_type[name][k]:.2f}" for k in types) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"identity": model.ll_identity, "images": len(proxy), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
