"""What the calibrated 0-100 zero-shot score (`zs_ll_100`) reads on held-out photos.

For each photo (at its own size, as the anchors were measured) it scores the
photo itself, each distortion type of `--types` at levels 1-5, and a JPEG
ladder at Pillow qualities 90/50/20/8, and prints:

- per type and level, the median calibrated score [25th, 75th percentile]
  over the photos: what a range of the scale means;
- for the JPEG ladder, the SRCC of the calibrated score against quality over
  all images, the fraction of same-photo pairs ordered correctly, and how
  many photos score higher at quality 8 than at 90.

    python scripts/offline_photos.py /tmp/photos --holdout-monuments
    python benchmarks/calibrated_scale.py --photos '/tmp/photos/holdout/*.png' \\
        --photos '/tmp/photos/holdout-monuments/*.png'
"""
from __future__ import annotations

import argparse
import glob
import io
import itertools

import numpy as np
from PIL import Image
from scipy import stats
from tqdm import tqdm

from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.profiles import spec_for
from grepq_core.model.settings import EncoderSpec
from grepq_core.training.distortions import apply_distortion

LEVELS = (1, 2, 3, 4, 5)
QUALITIES = (90, 50, 20, 8)
TYPES = "gaussian_blur,motion_blur,white_noise,jpeg,jpeg2000,pixelate,contrast_change"


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _scores(model: Extractor, spec: EncoderSpec, images: list[np.ndarray]) -> np.ndarray:
    rows = model.encode([image_views(img, spec) for img in images])
    if rows[0]["zs_ll_100"] is None:
        raise SystemExit("the pristine model has no anchors for this profile: build it with "
                         "`grepq build-pristine --calibrate ...`")
    return np.array([row["zs_ll_100"] for row in rows])


def _cell(values) -> str:
    low, mid, high = np.percentile(values, [25, 50, 75])
    return f"{mid:.0f} [{low:.0f}, {high:.0f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", action="append", required=True, help="glob of held-out photos; repeatable")
    parser.add_argument("--ll-weights", default="shipped")
    parser.add_argument("--pristine", default="shipped")
    parser.add_argument("--profile", default="fast", choices=("fast", "reference"))
    parser.add_argument("--types", default=TYPES, help="comma-separated distortion names")
    args = parser.parse_args()

    types = args.types.split(",")
    spec = spec_for(args.profile, pathways=("ll",), ll_weights=args.ll_weights, pristine=args.pristine)
    model = Extractor.load(spec)
    photos = sorted(p for pattern in args.photos for p in glob.glob(pattern))
    clean, by_type, ladder = [], {kind: [] for kind in types}, []
    for path in tqdm(photos, desc="photos"):
        img = np.asarray(Image.open(path).convert("RGB"))
        clean.append(_scores(model, spec, [img])[0])
        for kind in types:
            by_type[kind].append(_scores(model, spec, [apply_distortion(img, kind, lv, seed=0) for lv in LEVELS]))
        ladder.append(_scores(model, spec, [_jpeg(img, q) for q in QUALITIES]))
    ladder = np.array(ladder)
    print(f"{len(photos)} photos, profile {args.profile}, {model.encoders['ll'].identity}\n")
    print(f"undistorted photos: {_cell(clean)} (median [25th, 75th])\n")
    print("| type | " + " | ".join(f"level {lv}" for lv in LEVELS) + " |")
    print("| --- |" + " --- |" * len(LEVELS))
    for kind in types:
        values = np.array(by_type[kind])
        print(f"| {kind} | " + " | ".join(_cell(values[:, i]) for i in range(len(LEVELS))) + " |")
    print("\n| JPEG quality | " + " | ".join(str(q) for q in QUALITIES) + " |")
    print("| --- |" + " --- |" * len(QUALITIES))
    print("| calibrated score | " + " | ".join(_cell(ladder[:, i]) for i in range(len(QUALITIES))) + " |")
    pairs = [(i, j) for i, j in itertools.combinations(range(len(QUALITIES)), 2)]
    ordered = np.mean([ladder[:, i] > ladder[:, j] for i, j in pairs])
    srcc = stats.spearmanr(ladder.ravel(), np.tile(QUALITIES, len(photos))).statistic
    print(f"\nJPEG ladder: SRCC against quality {srcc:.3f} over {ladder.size} images; same-photo pairs ordered "
          f"{ordered:.3f}; photos scoring higher at quality 8 than at 90: {int((ladder[:, -1] > ladder[:, 0]).sum())}"
          f" of {len(photos)}")


if __name__ == "__main__":
    main()
