"""Two holdouts from photos that neither training nor the older holdouts used, and the table that judges a change.

The shipped LL model was trained on scikit-image's and OpenCV's samples,
Debian wallpapers and the pictures of GCompris, jigzo, digiKam, Hugin,
scipy, matplotlib and scikit-learn; its holdouts are 8 of those sample
photos and GCompris's monuments (scripts/offline_photos.py). These two sets
come from other packages:

- ``tuning``: 20 photographs among the stage backgrounds of Debian's
  ``scratch`` package (480x360 JPEGs; the drawn ones left out). Changes may
  be chosen on it.
- ``independent``: 10 photographs from other packages again: the 5 puzzle
  photos of Debian's ``palapeli-data``, and the sample photos that the
  ``ultralytics`` (bus, zidane), ``imgaug`` (quokka) and ``mahotas``
  (DepartmentStore, luispedro) wheels ship. Nothing is ever chosen on it;
  it only reports.

Each photo is scaled down to a shorter side of at most `SIDE` and distorted
with `TYPES` at `LEVELS` (level 1 of the blurs is nearly the identity, so it
would only measure ties); the undistorted photo joins as its own image. The
label is 100 x FSIM(reference, image) (a full-reference pseudo-MOS, as in
synthetic_benchmark.py), the group is the photo. Then, for each set, it runs
`grepq evaluate` (the field's few-shot protocol: contents split first,
`--n-train` labels from the training contents, 10 splits; LL pathway) and
adds each distortion type's level order: the share of one photo's level
pairs of one type that the zero-shot LL score orders correctly.

    apt-get download scratch palapeli-data
    for deb in scratch_*.deb palapeli-data_*.deb; do dpkg -x "$deb" /tmp/holdout-sources; done
    pip download ultralytics==8.4.190 imgaug==0.4.0 mahotas==1.4.19 --no-deps
    for whl in ultralytics-*.whl imgaug-*.whl mahotas-*.whl; do python -m zipfile -e "$whl" /tmp/holdout-sources; done
    python benchmarks/independent_holdout.py --sources /tmp/holdout-sources --output /tmp/holdouts \\
        [-- any grepq evaluate flag, e.g. --ll-weights CKPT --pristine NPZ]
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from grepq_core.training.distortions import apply_distortion
from grepq_core.training.fsim import fsim_matrix

SCRATCH = "usr/share/scratch/Media/Backgrounds"
SETS = {
    "tuning": [f"{SCRATCH}/{name}.jpg" for name in [
        "Nature/beach-malibu", "Nature/canyon", "Nature/flower-bed", "Nature/forest", "Nature/garden-rock",
        "Nature/grand-canyon", "Nature/gravel-desert", "Nature/hill", "Nature/lake", "Nature/pathway",
        "Nature/tree", "Nature/water-and-rocks", "Nature/wave", "Outdoors/bench-with-view", "Outdoors/boardwalk",
        "Outdoors/building-at-mit", "Outdoors/castle", "Outdoors/city-with-water", "Outdoors/hay_field",
        "Outdoors/train-tracks1"]],
    "independent": [
        *(f"usr/share/palapeli/collection/{name}.jpg" for name in [
            "castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee",
            "panther-chameleon-female"]),
        "ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg", "imgaug/quokka.jpg",
        "mahotas/demos/data/DepartmentStore.jpg", "mahotas/demos/data/luispedro.jpg"],
}
TYPES = ("gaussian_blur", "motion_blur", "white_noise", "impulse_noise", "jpeg", "jpeg2000", "pixelate",
         "contrast_change")
LEVELS = (2, 3, 4, 5)
SIDE = 384


def _photo(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    scale = SIDE / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    return np.asarray(img)


def build(sources: Path, folder: Path, files: list[str]) -> pd.DataFrame:
    """Write folder/images/*.png and folder/labels.csv (path, score, group, distortion, level); reuse them if there."""
    if (folder / "labels.csv").exists():
        return pd.read_csv(folder / "labels.csv")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for file in files:
        photo = Path(file).stem
        reference = _photo(sources / file)
        Image.fromarray(reference).save(folder / f"images/{photo}.png")
        rows.append({"path": f"images/{photo}.png", "score": 100.0, "group": photo, "distortion": "none",
                     "level": 0})
        for kind in TYPES:
            versions = [apply_distortion(reference, kind, level, seed=0) for level in LEVELS]
            fsim = fsim_matrix(np.stack([reference, *versions]))[0, 1:]
            for level, image, similarity in zip(LEVELS, versions, fsim):
                path = f"images/{photo}_{kind}{level}.png"
                Image.fromarray(image).save(folder / path)
                rows.append({"path": path, "score": 100 * float(similarity), "group": photo, "distortion": kind,
                             "level": level})
    labels = pd.DataFrame(rows)
    labels.to_csv(folder / "labels.csv", index=False)
    return labels


def level_order(labels: pd.DataFrame, scores: dict[str, float]) -> dict[str, float]:
    """Per distortion type (and "all"): the share of same-photo level pairs whose higher level scores lower."""
    correct, total = {}, {}
    for (kind, _), rows in labels[labels["level"] > 0].groupby(["distortion", "group"]):
        ordered = rows.sort_values("level")["path"].map(scores).to_numpy()
        for i, j in itertools.combinations(range(len(ordered)), 2):
            correct[kind] = correct.get(kind, 0) + bool(ordered[i] > ordered[j])
            total[kind] = total.get(kind, 0) + 1
    shares = {kind: correct[kind] / total[kind] for kind in TYPES if kind in total}
    shares["all"] = sum(correct.values()) / sum(total.values())
    return shares


def measure(folder: Path, evaluate_flags: list[str]) -> dict:
    """`grepq evaluate` on one set (LL pathway, 50 labels, 10 splits), plus the zero-shot level order per type."""
    from grepq_core.model.extractor import load_available
    from pipelines import evaluate
    from pipelines.evaluate_data import Cache, gather
    from pipelines.options import encoder_spec

    argv = ["--dataset", "csv", "--root", str(folder), "--protocol", "both", "--pathways", "ll",
            "--n-train", "50", "--splits", "10", "--features-cache", str(folder / "cache"),
            "--output", str(folder / "evaluation"), *evaluate_flags]
    report = evaluate.run(argv)
    spec = encoder_spec(evaluate.arg_parser().parse_args(argv))
    extractor, _ = load_available(spec)
    labels = pd.read_csv(folder / "labels.csv")
    paths = [str(folder / p) for p in labels["path"]]
    rows, _, _ = gather(paths, extractor, Cache(str(folder / "cache"), spec, extractor.identities))
    scores = {p: row["zs_ll"] for p, row in zip(labels["path"], rows)}
    return {"report": report, "level_order": level_order(labels, scores)}


SUMMARY = {"zero-shot LL": "grepq zero-shot (same splits)", "grepq fit": "grepq fit (kept by CV)",
           "NSS ridge": "NSS ridge (BRISQUE's 36 features)", "LL ridge": "grepq LL ridge"}


def summary(name: str, measured: dict) -> str:
    """One set's few-shot medians and its level order per type, as two Markdown tables."""
    results = {r["method"]: r for r in measured["report"]["results"] if r["protocol"] == "few-shot"}
    cells = [f"{results[m]['values']['srcc']:.3f}" if results.get(m, {}).get("values") else "-"
             for m in SUMMARY.values()]
    kept = results.get(SUMMARY["grepq fit"], {}).get("note", "")
    order = measured["level_order"]
    return "\n".join([
        f"### {name}: {measured['report']['images']} images, {measured['report']['groups']} photos", "",
        "| " + " | ".join(SUMMARY) + " |", "| --- " * len(SUMMARY) + "|", "| " + " | ".join(cells) + " |", "",
        f"grepq fit: {kept}", "",
        "| level order | " + " | ".join(order) + " |", "| --- " * (len(order) + 1) + "|",
        "| zero-shot LL | " + " | ".join(f"{v:.3f}" for v in order.values()) + " |", ""])


def main():
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, required=True, help="where the packages are unpacked")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: tuning, independent")
    args, evaluate_flags = parser.parse_args(argv[:split]), argv[split + 1:]
    texts = []
    for name in args.sets.split(","):
        build(args.sources, args.output / name, SETS[name])
        texts.append(summary(name, measure(args.output / name, evaluate_flags)))
    print("\n" + "\n".join(texts))


if __name__ == "__main__":
    main()
