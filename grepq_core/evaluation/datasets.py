"""Label files and folder layouts of the standard IQA datasets.

docs/method.md, "Evaluation conventions of the field": every loader returns one
row per image with

- ``path``: the absolute path (or URL, for an fsspec ``root``) of the image,
- ``score``: higher is better; a DMOS (lower is better) is negated,
- ``group``: the reference content the image was made from, for datasets
  where several images share one (LIVE, CSIQ, TID2013, KADID-10k, PIPAL),
  else the image's own file name, so `evaluation.content_split` never puts one
  content on both sides of a split.

Each loader's docstring states the files it expects under ``root``; a
missing label file raises GrepqError naming it with that layout, and so do
images missing under a local root (URL roots are not listed, only read).
Where the official label file is an .xlsx, grepq reads a CSV export of the
same sheet with the same column names (no Excel reader is a dependency).

Sources for file names, columns and score conventions: the IQA-PyTorch
(pyiqa) dataset scripts (scripts/process_{live,csiq,tid2013,kadid10k,koniq10k,
livechallenge,spaq,flive,pipal}.py) and its pyiqa/dataset_info.py (DMOS vs
MOS, ranges); the GRepQ reference code's KonIQ and CLIVE lists
(Evaluation/datasets/*.csv); HyperIQA-style LIVE/CLIVE loaders
(dmos_realigned.mat, the [7:1169] CLIVE slice); the CSIQ MATLAB readers of
csiq.DMOS.xlsx (dst_imgs/<type>/<image>.<TAG>.<level>.png); the AGIQA-1K/3K
release READMEs (AIGC_MOS_Zscore.xlsx: Image, Prompt, MOS; data.csv:
name, ..., mos_quality).
"""
from __future__ import annotations

import inspect
import os
import posixpath
import re
from collections.abc import Callable, Sequence

import fsspec
import numpy as np
import pandas as pd
import scipy.io

from grepq_core.errors import GrepqError, did_you_mean

__all__ = ["DATASETS", "load_dataset"]

_LIVE_FOLDERS = (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174))
# CSIQ dst_type (case and spaces ignored) -> (folder under dst_imgs, tag in the file name)
_CSIQ_TYPES = {"noise": ("awgn", "AWGN"), "awgn": ("awgn", "AWGN"), "jpeg": ("jpeg", "JPEG"),
               "jpeg2000": ("jpeg2000", "jpeg2000"), "fnoise": ("fnoise", "fnoise"),
               "blur": ("blur", "BLUR"), "contrast": ("contrast", "contrast")}


class _MissingFile(GrepqError):
    """An expected file is absent; `load_dataset` adds the loader's layout."""


def _is_url(root: str) -> bool:
    return "://" in root


def _join(root: str, *parts: str) -> str:
    if _is_url(root):
        return posixpath.join(root.rstrip("/"), *parts)
    return os.path.abspath(os.path.join(root, *parts))


def _exists(path: str) -> bool:
    fs, inner = fsspec.core.url_to_fs(path)
    return fs.exists(inner)


def _require(path: str, xlsx: str = "") -> str:
    """`path` if it exists; else _MissingFile, saying so when only the .xlsx original is there."""
    if _exists(path):
        return path
    if xlsx and _exists(xlsx):
        raise _MissingFile(f"missing {path} (found {os.path.basename(xlsx)}: save it as CSV under that name)")
    raise _MissingFile(f"missing {path}")


def _read_csv(path: str, columns: Sequence[str], names: Sequence[str] = (), xlsx: str = "") -> pd.DataFrame:
    """A label CSV with the given columns checked; `names` columns read as text."""
    frame = pd.read_csv(_require(path, xlsx), dtype={c: str for c in names})
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise GrepqError(f"{path} lacks column(s) {missing}; it has {list(frame.columns)}")
    return frame


def _loadmat(path: str, *variables: str) -> dict:
    """A .mat file's variables; GrepqError unless at least one of `variables` is in it."""
    with fsspec.open(_require(path), "rb") as f:
        mat = scipy.io.loadmat(f)
    if not any(v in mat for v in variables):
        found = [k for k in mat if not k.startswith("__")]
        raise GrepqError(f"{path} has no variable {' or '.join(variables)}; it has {found}")
    return mat


def _mat_strings(cells: np.ndarray) -> list[str]:
    """Strings of a MATLAB cell array of char arrays, in storage order."""
    return [str(np.ravel(c)[0]) if isinstance(c, np.ndarray) else str(c) for c in np.ravel(cells)]


def _images(root: str, names: Sequence[str], folders: Sequence[str]) -> list[str]:
    """Full path of each image: the first of `folders` (under root) that holds it.

    Under a local root every image must exist; a URL root takes the first
    folder; a name that is itself a URL is kept as is.
    """
    if _is_url(root):
        return [n if _is_url(n) else _join(root, folders[0], n) for n in names]
    paths, missing = [], []
    for name in names:
        if _is_url(name):
            paths.append(name)
            continue
        found = next((p for p in (_join(root, f, name) for f in folders) if os.path.isfile(p)), None)
        paths.append(found or _join(root, folders[0], name))
        if found is None:
            missing.append(paths[-1])
    if missing:
        raise _MissingFile(f"{len(missing)} of {len(names)} images are missing, e.g. {missing[:3]}")
    return paths


def _frame(paths, scores, groups) -> pd.DataFrame:
    return pd.DataFrame({"path": list(paths), "score": np.asarray(scores, dtype=np.float64),
                         "group": [str(g) for g in groups]})


def _load_live(root: str, labels: str | None = None) -> pd.DataFrame:
    """LIVE IQA release 2 (779 distorted images, 29 contents; DMOS, negated).

    Expects under root: jp2k/, jpeg/, wn/, gblur/, fastfading/ holding
    img<i>.bmp (227, 233, 174, 174, 174 entries, in that order),
    dmos_realigned.mat (``dmos_new``, ``orgs``) or else dmos.mat (``dmos``,
    ``orgs``), and refnames_all.mat (``refnames_all``). Entries with orgs = 1
    are the references themselves and are dropped. score = -DMOS; group = the
    reference image name. `labels` replaces the DMOS .mat file.
    """
    dmos_path = labels or _join(root, "dmos_realigned.mat")
    if labels is None and not _exists(dmos_path):
        dmos_path = _join(root, "dmos.mat")
    mat = _loadmat(dmos_path, "dmos_new", "dmos")
    dmos = np.ravel(mat["dmos_new"] if "dmos_new" in mat else mat["dmos"]).astype(np.float64)
    orgs = np.ravel(_loadmat(dmos_path, "orgs")["orgs"]).astype(bool)
    refs = _mat_strings(_loadmat(_join(root, "refnames_all.mat"), "refnames_all")["refnames_all"])
    names = [f"{folder}/img{i}.bmp" for folder, count in _LIVE_FOLDERS for i in range(1, count + 1)]
    if not len(dmos) == len(orgs) == len(refs) == len(names):
        raise GrepqError(f"{dmos_path} and refnames_all.mat should list {len(names)} images, "
                         f"found {len(dmos)}, {len(orgs)} and {len(refs)}")
    keep = ~orgs
    kept = [n for n, k in zip(names, keep) if k]
    return _frame(_images(root, kept, [""]), -dmos[keep], np.asarray(refs)[keep])


def _load_csiq(root: str, labels: str | None = None) -> pd.DataFrame:
    """CSIQ (866 distorted images, 30 contents; DMOS in [0, 1], negated).

    Expects under root: csiq.DMOS.csv, the sheet ``all_by_image`` of the
    official csiq.DMOS.xlsx saved as CSV, with columns image, dst_type
    (noise, jpeg, jpeg 2000, fnoise, blur, contrast), dst_lev and dmos; and
    dst_imgs/<awgn|jpeg|jpeg2000|fnoise|blur|contrast>/
    <image>.<AWGN|JPEG|jpeg2000|fnoise|BLUR|contrast>.<dst_lev>.png.
    score = -dmos; group = image (the reference name).
    """
    path = labels or _join(root, "csiq.DMOS.csv")
    table = _read_csv(path, ["image", "dst_type", "dst_lev", "dmos"], names=["image"],
                      xlsx=_join(root, "csiq.DMOS.xlsx"))
    names = []
    for image, kind, level in zip(table["image"], table["dst_type"], table["dst_lev"]):
        key = re.sub(r"\s+", "", str(kind).lower())
        if key not in _CSIQ_TYPES:
            raise GrepqError(f"{path}: unknown dst_type {kind!r}; expected one of {sorted(_CSIQ_TYPES)}")
        folder, tag = _CSIQ_TYPES[key]
        names.append(f"{folder}/{image}.{tag}.{int(float(level))}.png")
    return _frame(_images(root, names, ["dst_imgs"]), -table["dmos"].astype(float), table["image"])


def _load_tid2013(root: str, labels: str | None = None) -> pd.DataFrame:
    """TID2013 (3,000 distorted images, 25 contents; MOS 0-9).

    Expects under root: mos_with_names.txt, one "MOS filename" line per
    image (e.g. "5.51429 i01_01_1.bmp"), and distorted_images/.
    group = the reference number from the name (i01 ... i25).
    """
    path = _require(labels or _join(root, "mos_with_names.txt"))
    with fsspec.open(path, "r") as f:
        rows = [line.split() for line in f if line.strip()]
    if any(len(r) != 2 for r in rows):
        raise GrepqError(f"{path}: expected 'MOS filename' on every line")
    names = [r[1] for r in rows]
    return _frame(_images(root, names, ["distorted_images"]), [float(r[0]) for r in rows],
                  [n[:3].lower() for n in names])


def _load_kadid10k(root: str, labels: str | None = None) -> pd.DataFrame:
    """KADID-10k (10,125 distorted images, 81 contents).

    Expects under root: dmos.csv with columns dist_img, ref_img, dmos, and
    images/. Despite its name, KADID's ``dmos`` is a mean degradation-
    category rating from 1 (very annoying) to 5 (imperceptible): higher is
    better, so it is used as is (pyiqa's dataset_info lists it as MOS,
    range 1-5). group = ref_img.
    """
    table = _read_csv(labels or _join(root, "dmos.csv"), ["dist_img", "ref_img", "dmos"],
                      names=["dist_img", "ref_img"])
    return _frame(_images(root, table["dist_img"], ["images"]), table["dmos"], table["ref_img"])


def _load_clive(root: str, labels: str | None = None) -> pd.DataFrame:
    """LIVE In the Wild Challenge, CLIVE (1,162 photos; MOS 0-100).

    Expects under root: Data/AllImages_release.mat (``AllImages_release``),
    Data/AllMOS_release.mat (``AllMOS_release``) and Images/. The seven
    training images t1.bmp ... t7.bmp (Images/trainingImages/) are dropped,
    the usual 1,162-image protocol. `labels` replaces the MOS .mat file.
    """
    names = _mat_strings(_loadmat(_join(root, "Data", "AllImages_release.mat"),
                                  "AllImages_release")["AllImages_release"])
    mos = np.ravel(_loadmat(labels or _join(root, "Data", "AllMOS_release.mat"),
                            "AllMOS_release")["AllMOS_release"])
    if len(names) != len(mos):
        raise GrepqError(f"CLIVE lists {len(names)} images but {len(mos)} MOS values")
    keep = [i for i, n in enumerate(names) if not re.fullmatch(r"t\d+\.bmp", n)]
    kept = [names[i] for i in keep]
    return _frame(_images(root, kept, ["Images"]), mos[keep], kept)


def _load_koniq10k(root: str, labels: str | None = None) -> pd.DataFrame:
    """KonIQ-10k (10,073 photos).

    Expects under root: koniq10k_scores_and_distributions.csv with columns
    image_name and MOS_zscore (0-100, the scale GRepQ's reference uses) or,
    without it, MOS (1-5); and 1024x768/.
    """
    table = _read_csv(labels or _join(root, "koniq10k_scores_and_distributions.csv"), ["image_name"],
                      names=["image_name"])
    column = next((c for c in ("MOS_zscore", "MOS") if c in table.columns), None)
    if column is None:
        raise GrepqError(f"KonIQ-10k labels need a MOS_zscore or MOS column; found {list(table.columns)}")
    return _frame(_images(root, table["image_name"], ["1024x768"]), table[column], table["image_name"])


def _load_spaq(root: str, labels: str | None = None) -> pd.DataFrame:
    """SPAQ (11,125 smartphone photos; MOS 0-100).

    Expects under root: "Annotations/MOS and Image attribute scores.csv",
    the official .xlsx saved as CSV, with columns "Image name" and "MOS";
    and TestImage/. (Papers usually resize SPAQ photos to a 512-pixel short
    side before scoring; that is the caller's choice.)
    """
    base = _join(root, "Annotations", "MOS and Image attribute scores")
    table = _read_csv(labels or base + ".csv", ["Image name", "MOS"], names=["Image name"],
                      xlsx=base + ".xlsx")
    return _frame(_images(root, table["Image name"], ["TestImage"]), table["MOS"], table["Image name"])


def _load_flive(root: str, labels: str | None = None) -> pd.DataFrame:
    """FLIVE / PaQ-2-PiQ (about 40k photos; MOS 0-100).

    Expects root to be the FLIVE database folder: labels_image.csv with
    columns name (relative path, e.g. "voc_emotic_ava/xxx.jpg") and mos,
    and the images at root/<name>.
    """
    table = _read_csv(labels or _join(root, "labels_image.csv"), ["name", "mos"], names=["name"])
    return _frame(_images(root, table["name"], [""]), table["mos"], table["name"])


def _load_pipal(root: str, labels: str | None = None) -> pd.DataFrame:
    """PIPAL training set (23,200 distorted images, 200 contents; Elo, higher is better).

    Expects under root: Train_Label/*.txt with "name,elo" lines (e.g.
    "A0001_00_00.bmp,1520.06"), and the distorted images in Train_Dis/ or
    spread over the release's Distortion_1/ ... Distortion_4/.
    group = the reference id before the first "_" (A0001). `labels`
    replaces the Train_Label folder.
    """
    folder = _require(labels or _join(root, "Train_Label"))
    fs, inner = fsspec.core.url_to_fs(folder)
    names, elos = [], []
    for txt in sorted(fs.glob(posixpath.join(inner, "*.txt"))):
        with fs.open(txt, "r") as f:
            for line in f:
                if line.strip():
                    name, elo = line.strip().split(",")
                    names.append(name)
                    elos.append(float(elo))
    if not names:
        raise GrepqError(f"no 'name,elo' lines in {folder}/*.txt")
    folders = ["Train_Dis"] + [f"Distortion_{i}" for i in range(1, 5)]
    return _frame(_images(root, names, folders), elos, [n.split("_")[0] for n in names])


def _load_agiqa1k(root: str, labels: str | None = None) -> pd.DataFrame:
    """AGIQA-1K (1,080 AI-generated images; z-scored MOS).

    Expects under root: AIGC_MOS_Zscore.csv, the official
    AIGC_MOS_Zscore.xlsx saved as CSV, with columns Image and MOS; and the
    images in file/ (the folder of the release's file.zip) or images/.
    """
    table = _read_csv(labels or _join(root, "AIGC_MOS_Zscore.csv"), ["Image", "MOS"], names=["Image"],
                      xlsx=_join(root, "AIGC_MOS_Zscore.xlsx"))
    return _frame(_images(root, table["Image"], ["file", "images"]), table["MOS"], table["Image"])


def _load_agiqa3k(root: str, labels: str | None = None) -> pd.DataFrame:
    """AGIQA-3K (2,982 AI-generated images; perceptual-quality MOS).

    Expects under root: data.csv with columns name and mos_quality (the
    perception MOS; mos_align, text-image alignment, is not used), and the
    images in file/ (the folder of the release's file.zip) or images/.
    """
    table = _read_csv(labels or _join(root, "data.csv"), ["name", "mos_quality"], names=["name"])
    return _frame(_images(root, table["name"], ["file", "images"]), table["mos_quality"], table["name"])


def _load_csv(root: str, labels: str | None = None) -> pd.DataFrame:
    """Any dataset as a CSV: columns path and score, optional group.

    Expects root/labels.csv, or the file given as `labels`. ``path`` is
    relative to root (or absolute, or a URL); ``score`` is higher-is-better
    unless load_dataset(..., lower_is_better=True), which negates it;
    ``group`` defaults to the path.
    """
    table = _read_csv(labels or _join(root, "labels.csv"), ["path", "score"], names=["path", "group"])
    paths = _images(root, table["path"], [""])
    return _frame(paths, table["score"], table["group"] if "group" in table.columns else paths)


DATASETS: dict[str, Callable[..., pd.DataFrame]] = {
    "live": _load_live,
    "csiq": _load_csiq,
    "tid2013": _load_tid2013,
    "kadid10k": _load_kadid10k,
    "clive": _load_clive,
    "koniq10k": _load_koniq10k,
    "spaq": _load_spaq,
    "flive": _load_flive,
    "pipal": _load_pipal,
    "agiqa1k": _load_agiqa1k,
    "agiqa3k": _load_agiqa3k,
    "csv": _load_csv,
}
"""Dataset name -> loader(root, labels=None); each loader's docstring states its layout."""


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_dataset(name: str, root: str, labels: str | None = None,
                 lower_is_better: bool = False) -> pd.DataFrame:
    """Rows (path, score, group) of dataset `name` under `root`, score higher-is-better.

    Names ignore case and punctuation ("KADID-10k" = "kadid10k"). `labels`
    replaces the label file (see each loader). `lower_is_better` negates the
    scores of the generic "csv" dataset; the named datasets' direction is
    built in.
    """
    key = _key(name)
    if key not in DATASETS:
        raise GrepqError(f"unknown dataset {name!r}.{did_you_mean(key, DATASETS)} Known: {', '.join(DATASETS)}")
    loader = DATASETS[key]
    if lower_is_better and loader is not _load_csv:
        raise GrepqError(f"`lower_is_better` applies to the 'csv' dataset only: {name}'s score "
                         "direction is built in")
    try:
        frame = loader(root, labels)
    except _MissingFile as e:
        layout = inspect.cleandoc(loader.__doc__)
        raise GrepqError(f"{name}: {e}. Expected layout:\n{layout}") from None
    if lower_is_better:
        frame["score"] = -frame["score"]
    return frame
