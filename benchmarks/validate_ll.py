"""Validate a zero-shot LL model against NIQE and BRISQUE on held-out photos.

For each holdout photo (never used in training) and each distortion type of
the registry at levels 1..5, it computes the zero-shot LL score, NIQE and
BRISQUE, and reports:

(a) the fraction of same-photo, same-type level pairs ordered correctly
    (higher level = worse), and
(b) SRCC against a full-reference quality proxy: FSIM to the reference (the
    training set's annotator), and with `--proxies` also MS-SSIM, VIF and
    HaarPSI (piq), each a different view of how far a version is from its
    reference.

Beside (b) against the first proxy it prints the same SRCC with each
photo's mean removed from both sides, and the mean of the per-photo SRCCs:
the difference from (b) is what a photo's content does to the score.

With baselines it also prints how sure each gap is: grepq minus the
baseline over 1000 resamples of whole photos (a photo's distorted versions
are not independent images), as a 95% interval and the share of resamples
in which grepq is ahead.

    python scripts/offline_photos.py /tmp/photos
    python benchmarks/validate_ll.py --photos '/tmp/photos/holdout/*.png' [--ll-weights shipped] [--proxies all]
"""
from __future__ import annotations

import argparse
import glob
import itertools
import json

import numpy as np
import piq
import torch
from PIL import Image
from scipy import stats
from tqdm import tqdm

from grepq_core.evaluation.baselines import brisque, niqe
from grepq_core.metrics import srcc
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.profiles import spec_for
from grepq_core.model.settings import EncoderSpec
from grepq_core.model.zero_shot import LL_ISOTROPIC, LL_SHRINKAGE
from grepq_core.training.distortions import apply_distortion, list_distortions
from grepq_core.training.fsim import fsim_matrix

LEVELS = (1, 2, 3, 4, 5)


def _versions(path: str, size: int, types: list[str]):
    img = Image.open(path).convert("RGB")
    if size:
        scale = size / min(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    img = np.asarray(img)
    for kind in types:
        yield kind, np.stack([img] + [apply_distortion(img, kind, level, seed=0) for level in LEVELS])


def _piq(metric):
    """A piq full-reference metric as a proxy: the similarity of each version to the reference (row 0)."""
    def proxy(stack: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(stack).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            return metric(x[1:], x[:1].expand_as(x[1:]), data_range=1.0, reduction="none").numpy()
    return proxy


PROXIES = {"FSIM": lambda stack: fsim_matrix(stack)[0, 1:], "MS-SSIM": _piq(piq.multi_scale_ssim),
           "VIF": _piq(piq.vif_p), "HaarPSI": _piq(piq.haarpsi)}


def _ll_scores(model: Extractor, spec: EncoderSpec, images: np.ndarray) -> np.ndarray:
    return np.array([row["zs_ll"] for row in model.encode([image_views(img, spec) for img in images])])


def _pairs_ordered(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per level: (correct, total) over its pairs with the higher levels, which must score lower."""
    correct, total = np.zeros(len(scores)), np.zeros(len(scores))
    for i, j in itertools.combinations(range(len(scores)), 2):
        correct[i] += scores[i] > scores[j]
        total[i] += 1
    return correct, total


def _figures(rows: np.ndarray, correct: np.ndarray, total: np.ndarray, scores: np.ndarray,
             proxies: dict[str, np.ndarray]) -> list[float]:
    """(a), then (b) against each proxy, over the given image rows."""
    return [correct[rows].sum() / total[rows].sum(), *(srcc(scores[rows], p[rows]) for p in proxies.values())]


WITHIN = ("photo means removed", "mean of the per-photo SRCCs")


def _within_photos(scores: np.ndarray, proxy: np.ndarray, photo_of: np.ndarray) -> list[float]:
    """(b) with each photo's mean removed from both sides, and the mean of the per-photo SRCCs.

    Set beside (b) they split it: what is lost between the two is how each
    photo's overall level (its content) moves the score, not how the score
    follows the distortions within a photo.
    """
    masks = [photo_of == photo for photo in np.unique(photo_of)]
    centred = [np.asarray(x, dtype=np.float64).copy() for x in (scores, proxy)]
    for mask in masks:
        for values in centred:
            values[mask] -= values[mask].mean()
    return [srcc(*centred), float(np.mean([srcc(scores[mask], proxy[mask]) for mask in masks]))]


def _all_figures(rows: np.ndarray, photo_of: np.ndarray, method: dict, proxies: dict) -> list[float]:
    """(a), (b) against each proxy, then the two within-photo figures against the first proxy, over `rows`.

    `photo_of` names the photo of each of `rows`.
    """
    first = next(iter(proxies.values()))
    return _figures(rows, **method, proxies=proxies) + _within_photos(method["scores"][rows], first[rows], photo_of)


def _gap(ours: dict, theirs: dict, proxies: dict, photo_rows: list[np.ndarray]) -> list[str]:
    """grepq minus a baseline on each of `_all_figures`: the gap, its 95% interval, the share of resamples ahead."""
    def differences(photos):
        rows = np.concatenate([photo_rows[p] for p in photos])
        # A photo drawn twice counts as two photos.
        photo_of = np.repeat(np.arange(len(photos)), [len(photo_rows[p]) for p in photos])
        return np.subtract(_all_figures(rows, photo_of, ours, proxies), _all_figures(rows, photo_of, theirs, proxies))

    everything = differences(np.arange(len(photo_rows)))
    result = stats.bootstrap((np.arange(len(photo_rows)),), differences, vectorized=False, n_resamples=1000,
                             method="percentile", random_state=0)
    ahead = (result.bootstrap_distribution > 0).mean(axis=-1)
    return [f"{gap:+.3f} [{low:+.3f}, {high:+.3f}], {share:.0%}" for gap, low, high, share in
            zip(everything, *result.confidence_interval, ahead)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="/tmp/photos/holdout/*.png")
    parser.add_argument("--ll-weights", default="shipped")
    parser.add_argument("--pristine", default="shipped")
    parser.add_argument("--size", type=int, default=288, help="shorter side of the test images (0: as they are)")
    parser.add_argument("--max-patches", type=int, default=32, help="zero-shot patches per image (0: all)")
    parser.add_argument("--patch-stride", type=int, default=48, help="stride of the zero-shot patches")
    parser.add_argument("--shrinkage", type=float, default=LL_SHRINKAGE,
                        help="covariance shrinkage of the zero-shot distance (0: docs/method.md's)")
    parser.add_argument("--isotropic", type=float, default=LL_ISOTROPIC,
                        help="weight of the zero-shot distance's isotropic term (0: docs/method.md's)")
    parser.add_argument("--types", default="all", help="comma-separated distortion names, or all")
    parser.add_argument("--baselines", default="NIQE,BRISQUE",
                        help="comma-separated baselines to compare with (NIQE, BRISQUE), or none")
    parser.add_argument("--proxies", default="FSIM",
                        help=f"comma-separated full-reference proxies for (b), of {', '.join(PROXIES)}, or all")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    types = list_distortions() if args.types == "all" else args.types.split(",")
    proxy_names = list(PROXIES) if args.proxies == "all" else args.proxies.split(",")
    spec = spec_for(pathways=("ll",), ll_weights=args.ll_weights, pristine=args.pristine, batch_size=30,
                    max_patches=args.max_patches or None, patch_stride=args.patch_stride,
                    ll_shrinkage=args.shrinkage, ll_isotropic=args.isotropic)
    model = Extractor.load(spec)
    baselines = {"NIQE": lambda imgs: -np.array([niqe(i) for i in imgs]),
                 "BRISQUE": lambda imgs: -np.array([brisque(i) for i in imgs])}
    wanted = [] if args.baselines == "none" else args.baselines.split(",")
    methods = {"grepq zero-shot LL": lambda imgs: _ll_scores(model, spec, imgs),
               **{name: baselines[name] for name in wanted}}
    per_image = {m: {"correct": [], "total": [], "scores": []} for m in methods}
    proxies = {name: [] for name in proxy_names}
    kinds, photo_of = [], []
    photos = sorted(glob.glob(args.photos))
    for index, path in enumerate(tqdm(photos, desc="photos")):
        for kind, stack in _versions(path, args.size, types):
            for name in proxy_names:
                proxies[name].extend(PROXIES[name](stack))
            kinds.extend([kind] * len(LEVELS))
            photo_of.extend([index] * len(LEVELS))
            for name, score in methods.items():
                s = score(stack[1:])
                correct, total = _pairs_ordered(s)
                for key, values in (("correct", correct), ("total", total), ("scores", s)):
                    per_image[name][key].extend(values)
    kinds, photo_of = np.array(kinds), np.array(photo_of)
    proxies = {name: np.array(values) for name, values in proxies.items()}
    per_image = {m: {key: np.array(values) for key, values in columns.items()} for m, columns in per_image.items()}
    first = proxy_names[0]
    across = ["(a) level pairs ordered", *(f"(b) SRCC vs {name}" for name in proxy_names)]
    within = [f"(b) vs {first}, {label}" for label in WITHIN]
    figures = across + within  # the order of _all_figures
    by_type = {name: {kind: _figures(np.flatnonzero(kinds == kind), **per_image[name], proxies=proxies)[0]
                      for kind in types} for name in methods}
    rows = {name: {**dict(zip(figures, _all_figures(np.arange(len(kinds)), photo_of, per_image[name], proxies))),
                   "pairs_ordered_by_type": by_type[name]} for name in methods}
    print(f"{len(photos)} holdout photos x {len(types)} distortion types x {len(LEVELS)} levels "
          f"= {len(kinds)} images; identity {model.encoders['ll'].identity}")
    print("| method | " + " | ".join(across) + " |")
    print("| --- |" + " --- |" * len(across))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[f]:.3f}" for f in across) + " |")
    print("\n(a) by distortion type\n")
    print("| method | " + " | ".join(types) + " |")
    print("| --- |" + " --- |" * len(types))
    for name in methods:
        print(f"| {name} | " + " | ".join(f"{by_type[name][k]:.2f}" for k in types) + " |")
    print(f"\n(b) vs {first} across photos and within them\n")
    print("| method | (b) | " + " | ".join(WITHIN) + " |")
    print("| --- | --- | --- | --- |")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[f]:.3f}" for f in (f"(b) SRCC vs {first}", *within)) + " |")
    if wanted:
        photo_rows = [np.flatnonzero(photo_of == p) for p in range(len(photos))]
        print("\ngrepq minus each baseline: the gap [95% interval over 1000 resamples of the photos], "
              "share of resamples with grepq ahead\n")
        print("| baseline | " + " | ".join(figures) + " |")
        print("| --- |" + " --- |" * len(figures))
        for name in wanted:
            print(f"| {name} | " + " | ".join(_gap(per_image["grepq zero-shot LL"], per_image[name], proxies,
                                                   photo_rows)) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"identity": model.encoders["ll"].identity, "images": len(kinds), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
