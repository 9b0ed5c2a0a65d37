"""Write the natural photos available offline to a folder, split train / holdout.

Sources: scikit-image's bundled photographs, and OpenCV's sample images from
Debian's opencv-doc package (examples/data), unpacked without installing:

    apt-get download opencv-doc && dpkg -x opencv-doc_*.deb /tmp/opencv-doc

The holdout photos are never used to train the shipped model; the model card's
validation, the bundled samples and the synthetic benchmark use them.

    python scripts/offline_photos.py OUT_DIR [--opencv-data DIR]
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]
OPENCV = ["aero1", "aero3", "aloeL", "apple", "baboon", "building", "butterfly", "ela_original", "fruits",
          "graf1", "home", "leuvenA", "left", "messi5", "orange", "pca_test1", "rubberwhale1", "smarties",
          "squirrel_cls", "stuff", "HappyFish", "starry_night"]
HOLDOUT = {"chelsea", "coffee", "butterfly", "fruits", "home", "squirrel_cls", "messi5", "aero3"}
DEFAULT_OPENCV_DATA = "/tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data"


def photos(opencv_data: str = DEFAULT_OPENCV_DATA):
    """(name, HxWx3 uint8) for every available photo."""
    from skimage import data

    for name in SKIMAGE:
        yield name, np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
    root = Path(opencv_data)
    for name in OPENCV:
        found = sorted(root.glob(f"{name}.*"))
        if found:
            yield name, np.asarray(Image.open(found[0]).convert("RGB"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--opencv-data", default=DEFAULT_OPENCV_DATA)
    parser.add_argument("--crops", type=int, default=0,
                        help="also write this many random crops (40-90%% of the shorter side) of each training photo")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    counts = {"train": 0, "holdout": 0}
    for name, img in photos(args.opencv_data):
        split = "holdout" if name in HOLDOUT else "train"
        folder = Path(args.out) / split
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{name}.png")
        counts[split] += 1
        for i in range(args.crops if split == "train" else 0):
            side = int(min(img.shape[:2]) * rng.uniform(0.4, 0.9))
            y, x = (int(rng.integers(0, d - side + 1)) for d in img.shape[:2])
            Image.fromarray(img[y:y + side, x:x + side]).save(folder / f"{name}_crop{i}.png")
            counts[split] += 1
    print(f"{counts['train']} training and {counts['holdout']} holdout photos under {args.out}")


if __name__ == "__main__":
    main()
