"""Write the natural photos available offline to a folder, split train / holdout.

Sources: scikit-image's bundled photographs; OpenCV's sample images from
Debian's opencv-doc package (examples/data); the photographs among the
desktop wallpapers of Debian's lomiri, MATE and Plasma packages (the
illustrations and renders are left out); and, with `--package-crops`, 100
more photos that ship as data in other packages: GCompris's activity
pictures, jigzo's puzzles, digiKam's and Hugin's, and the sample images of
scipy, matplotlib and scikit-learn. The Debian packages are unpacked without
installing and the wheels unzipped, all into the same folder:

    apt-get download opencv-doc lomiri-wallpapers lomiri-wallpapers-16.04 \
        lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers \
        gcompris-qt-data=3.1-2 jigzo-data=0.6.1-7.1 digikam-data=4:7.9.0-1 \
        hugin-data=2022.0.0+dfsg-2
    for deb in *.deb; do dpkg -x "$deb" /tmp/debian-photos; done
    pip download scipy==1.9.3 matplotlib==3.11.2 scikit-learn==1.9.1 --no-deps
    for whl in *.whl; do python -m zipfile -e "$whl" /tmp/debian-photos; done

Wallpapers are 1.3 to 30 megapixels: each is scaled so its shorter side is
768 and written as `--wallpaper-crops` random square crops (256 to 512 px),
all for training. The package photos are scaled down only where their shorter
side is over 768, and written as `--package-crops` such crops (at most the
shorter side), also for training; their crops draw on a random stream of their
own, so adding them leaves every other file as it was.

Folders written: train/ (training photos and their crops: QACL's training
set), holdout/ (never trained on), pristine/ (the training photos and
wallpapers whole, uncropped: the pristine model's input) and, with
`--holdout-monuments`, holdout-monuments/: 33 more photos never trained on,
the GCompris monuments that the training set does not take.

The holdout photos are never used to train the shipped model; the model card's
validation, the bundled samples and the synthetic benchmark use them.

    python scripts/offline_photos.py OUT_DIR [--debian-root /tmp/debian-photos] \
        [--crops 2] [--wallpaper-crops 8] [--package-crops 4] [--holdout-monuments]
"""
import argparse
import bz2
import io
import struct
import zlib
from functools import partial
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
PACKAGE_FILES = {  # name -> image file under the root: the Debian packages' usr/share, the wheels' top level
    "digikam_body-background": "usr/share/digikam/about/images/body-background.jpg",
    "hugin_CA_fringes00": "usr/share/hugin/xrc/data/help_en_EN/CA_fringes00.jpg",
    "hugin_CA_tCA00": "usr/share/hugin/xrc/data/help_en_EN/CA_tCA00.jpg",
    "matplotlib_grace_hopper": "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
    "sklearn_china": "sklearn/datasets/images/china.jpg",
    "sklearn_flower": "sklearn/datasets/images/flower.jpg",
}
SCIPY_FACE = "scipy/misc/face.dat"  # what scipy.misc.face() returns: a bz2-compressed raw 768x1024x3 array
JIGZO = "usr/share/games/jigzo/puzzles/00_default"
JIGZO_PUZZLES = ["bike-3x4", "bird-2x3", "blackberry-3x3", "castle-6x3", "gorilla2-3x3", "heli-4x3", "horse-4x3",
                 "penguin-3x2", "tobogan-4x3", "train-2x2", "windmill-4x4"]
GCOMPRIS_RCC = "usr/share/gcompris-qt/rcc"
# activity -> its photos, in the Qt resource archive GCOMPRIS_RCC/<activity>.rcc under
# :/gcompris/src/activities/<activity>/resource
GCOMPRIS = {
    "erase": [f"{name}.webp" for name in [
        "penguin", "giraffe", "kingfisher", "camels", "alpaca", "kitten", "nubian_ibex", "gosling", "goat", "squirrel",
        "cheetah", "butterfly", "red_panda", "gorilla", "flying_fox", "rhinoceros", "gibbon", "swans", "horse", "calf",
        "meerkats", "pika", "chamaeleon", "long_nosed_monkey", "macaque", "caterpillar", "spoonbills", "toucan",
        "crab"]],
    "explore_world_animals": [f"animals/{name}.webp" for name in [
        "giraffe", "koala", "bison", "scarlet_macaw", "dragon", "polar_bear", "crocodile", "kangaroo", "chameleon",
        "narwhal", "jaguar", "lemur", "moose", "panda", "hedgehog"]],
    "explore_farm_animals": [f"animals/{name}.webp" for name in [
        "sheep", "chicken", "dog", "horse", "cat", "duck", "cow", "pig"]],
    "explore_world_music": [f"music/{name}.webp" for name in [
        "ireland", "mexico", "italy", "japan", "orchestra", "america", "australia", "africa"]],
    "details": [f"image/{name}_background.webp" for name in [
        "EgeskovSlotSpejling", "TajMahal", "Nagoya", "Neuschwanstein", "GizahPyramids", "EilanDonanCastle"]],
    "clickgame": ["sea2.webp", "sea3.webp"],
    "explore_monuments": [
        *(f"wonders/{name}.webp" for name in [
            "colosseum", "machuPicchu", "petra", "chichenItza", "greatWallofChina"]),
        *(f"usa/{name}.webp" for name in ["canyondeChelly", "mountRushmore", "statueofLiberty"]),
        "india/hawaMahal.webp", "india/goldenTemple.webp", "france/montStMichel.webp", "france/pontduGard.webp",
        "france/eiffelTower.webp", "germany/brandenburgGate.webp"],
}
# The explore_monuments photos GCOMPRIS does not train on (castleClinton, in black and white, left out): a
# second, larger holdout set, written with --holdout-monuments.
MONUMENTS_HOLDOUT = [f"{country}/{name}.webp" for country, names in {
    "usa": ["georgeWashingtonBirthplace", "lincolnMemorial", "navajo", "castillodeSanMarcos", "fortSumter"],
    "egypt": ["meidumPyramid", "greatPyramidOfGiza", "bentPyramid", "redPyramid"],
    "india": ["greatStupa", "gatewayofIndia", "konarkSunTemple", "charminar", "rangGhar", "victoriaMemorial",
              "mysorePalace", "ajantaCave", "qutubMinar"],
    "france": ["chateaudeChambord", "palaisdesPapes", "reimsCathedral", "citedeCarcassonne", "arlesAmphitheater",
               "chateaudeChenonceau", "rocamadour"],
    "germany": ["berlinCathedral", "schwerinPalace", "trierImperialBaths", "aulaPalatina", "neuschwansteinCastle",
                "wormsCathedral"],
    "wonders": ["tajMahal", "christTheRedeemer"]}.items() for name in names]
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
                im = _at_most_768(im.convert("RGB"))
            name = path.split("/")[1] if path.startswith("wallpapers/") else Path(path).stem
            yield name, np.asarray(im)


def package_photos(root: str = DEFAULT_DEBIAN_ROOT):
    """(name, HxWx3 uint8) for each photo of PACKAGE_FILES, SCIPY_FACE, JIGZO_PUZZLES and GCOMPRIS, in name order
    (their crops' random stream follows it), shorter side scaled down to 768 where it is longer."""
    root = Path(root)
    sources = {name: partial(Image.open, root / path) for name, path in PACKAGE_FILES.items()}
    sources["scipy_face"] = partial(_scipy_face, root / SCIPY_FACE)
    for puzzle in JIGZO_PUZZLES:
        sources[f"jigzo_{puzzle.split('-')[0]}"] = partial(_jigzo_photo, root / JIGZO / f"{puzzle}.pzl")
    for activity, paths in GCOMPRIS.items():
        for path in paths:
            name = f"gcompris-{activity}_{Path(path).stem.removesuffix('_background')}"
            resource = f"gcompris/src/activities/{activity}/resource/{path}"
            sources[name] = partial(_gcompris_photo, root / GCOMPRIS_RCC / f"{activity}.rcc", resource)
    for name in sorted(sources):
        yield name, np.asarray(_at_most_768(sources[name]().convert("RGB")))


def monuments_holdout(root: str = DEFAULT_DEBIAN_ROOT):
    """(name, HxWx3 uint8) for each photo of MONUMENTS_HOLDOUT, shorter side scaled down to 768 where longer."""
    archive = Path(root) / GCOMPRIS_RCC / "explore_monuments.rcc"
    for path in MONUMENTS_HOLDOUT:
        im = _gcompris_photo(archive, f"gcompris/src/activities/explore_monuments/resource/{path}")
        yield f"monument_{Path(path).stem}", np.asarray(_at_most_768(im.convert("RGB")))


def _at_most_768(im: Image.Image) -> Image.Image:
    """`im` scaled down so its shorter side is 768, if it is longer."""
    scale = 768 / min(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS) if scale < 1 else im


def _scipy_face(file: Path) -> Image.Image:
    return Image.fromarray(np.frombuffer(bz2.decompress(file.read_bytes()), np.uint8).reshape(768, 1024, 3))


def _jigzo_photo(file: Path) -> Image.Image:
    """A jigzo puzzle's photo: the .pzl file's "image" region of the texture atlas it embeds, less the black border."""
    _, _, rest = file.read_bytes().partition(b"\nimage ")
    line, rest = rest.split(b"\n", 1)
    x, y, w, h = map(int, line.split()[:4])
    embedded = {}  # the rest of the file: name, byte count and bytes of the thumbnail, piece mask and atlas
    while rest:
        name, size, rest = rest.split(b"\n", 2)
        embedded[name.decode()], rest = rest[:int(size)], rest[int(size):]
    atlas = next(data for name, data in embedded.items() if name.endswith(".jpg") and not name.endswith("-t.jpg"))
    im = Image.open(io.BytesIO(atlas)).crop((x + 1, y + 1, x + w - 1, y + h - 1))
    gray = np.asarray(im.convert("L"), float)
    rows, cols = np.flatnonzero(gray.mean(axis=1) >= 8), np.flatnonzero(gray.mean(axis=0) >= 8)
    return im.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))  # some have a dark row or column more


def _gcompris_photo(archive: Path, path: str) -> Image.Image:
    """One image of a Qt resource archive (.rcc): GCompris ships its pictures only in these.

    The format is Qt's rcc (version 2 or 3): a tree of nodes (folders list their children, files point into the
    data) with names kept apart. The files read here are stored plain or zlib-compressed, none zstd."""
    rcc = archive.read_bytes()
    _, version, tree, data, names = struct.unpack_from(">4sIIII", rcc)
    node_size = 14 if version < 2 else 22  # version 2 added a last-modified time

    def name(node: int) -> str:
        at = names + struct.unpack_from(">I", rcc, tree + node * node_size)[0]
        length = struct.unpack_from(">H", rcc, at)[0]
        return rcc[at + 6:at + 6 + 2 * length].decode("utf-16-be")  # after the length, a 4-byte hash

    node = 0  # the root folder
    for part in path.split("/"):
        count, first = struct.unpack_from(">II", rcc, tree + node * node_size + 6)
        node = next(child for child in range(first, first + count) if name(child) == part)
    flags, at = struct.unpack_from(">H4xI", rcc, tree + node * node_size + 4)
    size = struct.unpack_from(">I", rcc, data + at)[0]
    blob = rcc[data + at + 4:data + at + 4 + size]
    return Image.open(io.BytesIO(zlib.decompress(blob[4:]) if flags & 1 else blob))  # zlib's: after the size


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
    parser.add_argument("--package-crops", type=int, default=0,
                        help="write this many random crops of each package photo (0: no package photos)")
    parser.add_argument("--holdout-monuments", action="store_true",
                        help="also write the second holdout set, GCompris's monuments, to holdout-monuments/")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    package_rng = np.random.default_rng(1)  # its own stream: the package photos leave the other crops as they were
    counts = {"train": 0, "holdout": 0, "pristine": 0, **({"holdout-monuments": 0} if args.holdout_monuments else {})}
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
    for name, img in package_photos(args.debian_root) if args.package_crops else ():
        save(img, "pristine", name)
        for i in range(args.package_crops):
            side = min(int(package_rng.integers(256, 513)), *img.shape[:2])
            save(_random_square(img, side, package_rng), "train", f"{name}_crop{i}")
    for name, img in monuments_holdout(args.debian_root) if args.holdout_monuments else ():
        save(img, "holdout-monuments", name)
    print(f"{counts['train']} training, {counts['holdout']} + {counts.get('holdout-monuments', 0)} holdout and "
          f"{counts['pristine']} pristine photos under {args.out}")


if __name__ == "__main__":
    main()
