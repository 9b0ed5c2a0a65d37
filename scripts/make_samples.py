"""Build the bundled sample corpus (samples/) from the holdout photos.

Each holdout photo at 384 px wide, plus three distorted copies from the
distortion registry; labels.csv scores every image by FSIM against its
reference (x 100), a full-reference stand-in for human opinion.

    python scripts/offline_photos.py /tmp/photos
    python scripts/make_samples.py /tmp/photos/holdout samples
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from grepq_core.training.distortions import apply_distortion
from grepq_core.training.fsim import fsim_matrix

KINDS = ["gaussian_blur", "white_noise", "jpeg", "motion_blur", "darken", "pixelate"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos")
    parser.add_argument("out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for path in sorted(Path(args.photos).glob("*.png")):
        img = Image.open(path).convert("RGB")
        img = np.asarray(img.resize((384, round(img.height * 384 / img.width)), Image.LANCZOS))
        versions, names = [img], [f"{path.stem}.jpg"]
        for kind in rng.choice(KINDS, size=3, replace=False):
            level = int(rng.integers(2, 6))
            versions.append(apply_distortion(img, kind, level, seed=int(rng.integers(1 << 31))))
            names.append(f"{path.stem}_{kind}{level}.jpg")
        similarity = fsim_matrix(np.stack(versions))[0]
        for name, version, sim in zip(names, versions, similarity):
            Image.fromarray(version).save(out / name, quality=92)
            rows.append(f"{name},{100 * sim:.2f}")
    (out / "labels.csv").write_text("path,score\n" + "\n".join(rows) + "\n")
    print(f"{len(rows)} images and labels.csv under {out}")


if __name__ == "__main__":
    main()
