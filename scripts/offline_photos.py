"""Write the natural photos available offline to a folder, split train / holdout.

Sources: scikit-image's bundled photographs; OpenCV's sample images from
Debian's opencv-doc package (examples/data); and the photographs among the
desktop wallpapers of Debian's lomiri, MATE and Plasma packages (the
illustrations and renders are left out). The Debian packages are unpacked
without installing:

    apt-get download opencv-doc lomiri-wallpapers lomiri-wallpapers-16.04 \
        lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers
    for deb in *.deb; do dpkg -x "$deb" /tmp/debian-photos; done

Wallpapers are 1.3 to 30 megapixels: each is scaled so its shorter side is
768 and written as `--wallpaper-crops` random square crops (256 to 512 px),
all for training.

Folders written: train/ (training photos and their crops: QACL's training
set), holdout/ (never trained on) and pristine/ (the training photos and
wallpapers whole, uncropped: the pristine model's input).

The holdout photos are never used to train the shipped model; the model card's
validation, the bundled samples and the synthetic benchmark use them.

    python scripts/offline_photos.py OUT_DIR [--debian-root /tmp/debian-photos]
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]
OPENCV = ["aero1", "aero3", "aloeL", "apple", "baboon", "building", "butterfly", "ela_original", "fruits",
          "graf1", "home", "leuvenA", "left", "messi5", "orange", "pca_test1", "rubberwhale1", "smarties",
          "squirrel_cls", "stuff", "HappyFish", "starry_night"]
WALLPAPERS = [  # paths under the unpacked packages' usr/share
    *(f"backgrounds/{name}.jpg" for name in [
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus", "Picture_0B_by_freespace",
        "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
        "analogpattern_by_Peter_Nerlich", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
        "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
        "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi"]),
    *(f"backgrounds/mate/nature/{name}.jpg" for name in [
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower"]),
    *(f"wallpapers/{name}/contents/images/2560x1600.jpg" for name in [
        "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
        "OneStandsOut", "Path", "summer_1am"]),
]
HOLDOUT = {"chelsea", "coffee", "butterfly", "fruits", "home", "squirrel_cls", "messi5", "aero3"}
DEFAULT_DEBIAN_ROOT = "/tmp/debian-photos"
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"


def photos(debian_root: str = DEFAULT_DEBIAN_ROOT):
    """(name, HxWx3 uint8) for every available photo but the wallpapers."""
    from skimage import data

    for name in SKIMAGE:
        yield name, np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB"))
    root = Path(debian_root) / OPENCV_DATA
    for name in OPENCV:
        found = sorted(root.glob(f"{name}.*"))
        if found:
            yield name, np.asarray(Image.open(found[0]).convert("RGB"))


def wallpapers(debian_root: str = DEFAULT_DEBIAN_ROOT):
    """(name, HxWx3 uint8) for every wallpaper photo found, shorter side scaled to 768."""
    for path in WALLPAPERS:
        file = Path(debian_root) / "usr/share" / path
        if file.exists():
            with Image.open(file) as im:
                im = im.convert("RGB")
                scale = 768 / min(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            name = path.split("/")[1] if path.startswith("wallpapers/") else Path(path).stem
            yield name, np.asarray(im)


def _random_square(img: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    y, x = (int(rng.integers(0, d - side + 1)) for d in img.shape[:2])
    return img[y:y + side, x:x + side]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--debian-root", default=DEFAULT_DEBIAN_ROOT, help="where the Debian packages are unpacked")
    parser.add_argument("--crops", type=int, default=0,
                        help="also write this many random crops (40-90%% of the shorter side) of each training photo")
    parser.add_argument("--wallpaper-crops", type=int, default=0,
                        help="write this many random crops of each wallpaper photo (0: no wallpapers)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    counts = {"train": 0, "holdout": 0, "pristine": 0}
    for split in counts:
        (Path(args.out) / split).mkdir(parents=True, exist_ok=True)

    def save(img: np.ndarray, split: str, name: str) -> None:
        Image.fromarray(img).save(Path(args.out) / split / f"{name}.png")
        counts[split] += 1

    for name, img in photos(args.debian_root):
        split = "holdout" if name in HOLDOUT else "train"
        save(img, split, name)
        if split == "train":
            save(img, "pristine", name)
        for i in range(args.crops if split == "train" else 0):
            side = int(min(img.shape[:2]) * rng.uniform(0.4, 0.9))
            save(_random_square(img, side, rng), split, f"{name}_crop{i}")
    for name, img in wallpapers(args.debian_root) if args.wallpaper_crops else ():
        save(img, "pristine", name)
        for i in range(args.wallpaper_crops):
            save(_random_square(img, int(rng.integers(256, 513)), rng), "train", f"{name}_crop{i}")
    print(f"{counts['train']} training, {counts['holdout']} holdout and {counts['pristine']} pristine photos "
          f"under {args.out}")


if __name__ == "__main__":
    main()
