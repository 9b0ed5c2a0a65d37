"""Dataset loaders and group-aware splits (grepq_core/evaluation/datasets.py).

Each test builds a small copy of a dataset's real layout in tmp_path: the
label file in its official format and a few real images (crops of
scikit-image photos saved as .bmp/.png/.jpg), then loads it.
"""
import csv
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.io
import skimage.data
from PIL import Image

from grepq_core.errors import GrepqError
from grepq_core.evaluation.datasets import DATASETS, load_dataset
from grepq_core.evaluation.protocols import content_split

_SOURCES = (skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea())


def _image(root, rel: str, seed: int) -> str:
    """A distinct 40x56 crop of a real photo saved at root/rel in the format its extension names."""
    src = _SOURCES[seed % len(_SOURCES)]
    r, c = (seed * 37) % (src.shape[0] - 40), (seed * 53) % (src.shape[1] - 56)
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(src[r:r + 40, c:c + 56]).save(path)
    return rel


def _write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _cells(strings, shape):
    """A MATLAB cell array of strings, as scipy.io.savemat writes object arrays."""
    cells = np.empty(len(strings), dtype=object)
    cells[:] = [np.array([s]) for s in strings]
    return cells.reshape(shape)


# Each builder writes a dataset's layout under root and returns (its label
# file or folder relative to root, the expected rows as (relative image
# path, score, group)).

def _build_live(root):
    names = [f"{f}/img{i}.bmp" for f, n in (("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174),
                                             ("fastfading", 174)) for i in range(1, n + 1)]
    refs = [f"ref{i % 29}.bmp" for i in range(len(names))]
    dmos = np.linspace(5.0, 80.0, len(names))
    orgs = np.ones(len(names))
    expected = []
    for k, i in enumerate((0, 1, 300, 500, 981)):  # the rest are reference copies (orgs = 1)
        orgs[i] = 0
        expected.append((_image(root, names[i], k), -dmos[i], refs[i]))
    scipy.io.savemat(os.path.join(root, "dmos_realigned.mat"), {"dmos_new": dmos[None], "orgs": orgs[None]})
    scipy.io.savemat(os.path.join(root, "refnames_all.mat"), {"refnames_all": _cells(refs, (1, -1))})
    return "dmos_realigned.mat", expected


def _build_csiq(root):
    rows = [("1600", 1, "noise", 1, 0.01, 0.06), ("1600", 3, "jpeg 2000", 2, 0.02, 0.31),
            ("boston", 5, "blur", 4, 0.03, 0.72), ("boston", 6, "contrast", 1, 0.01, 0.12),
            ("1600", 2, "jpeg", 5, 0.02, 0.69), ("boston", 4, "fnoise", 3, 0.02, 0.41)]
    files = ["awgn/1600.AWGN.1.png", "jpeg2000/1600.jpeg2000.2.png", "blur/boston.BLUR.4.png",
             "contrast/boston.contrast.1.png", "jpeg/1600.JPEG.5.png", "fnoise/boston.fnoise.3.png"]
    header = ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"]
    _write_csv(os.path.join(root, "csiq.DMOS.csv"), header, rows)
    return "csiq.DMOS.csv", [(_image(root, "dst_imgs/" + f, k), -r[5], r[0])
                             for k, (f, r) in enumerate(zip(files, rows))]


def _build_tid2013(root):
    rows = [("5.51429", "i01_01_1.bmp"), ("3.02000", "i01_08_5.bmp"), ("6.10000", "i25_17_2.bmp")]
    with open(os.path.join(root, "mos_with_names.txt"), "w") as f:
        f.write("".join(f"{m} {n}\r\n" for m, n in rows))
    return "mos_with_names.txt", [(_image(root, "distorted_images/" + n, k), float(m), n[:3])
                                  for k, (m, n) in enumerate(rows)]


def _build_kadid10k(root):
    rows = [("I01_01_01.png", "I01.png", 4.57, 0.29), ("I01_05_05.png", "I01.png", 1.27, 0.11),
            ("I02_03_02.png", "I02.png", 3.90, 0.52)]
    _write_csv(os.path.join(root, "dmos.csv"), ["dist_img", "ref_img", "dmos", "var"], rows)
    return "dmos.csv", [(_image(root, "images/" + r[0], k), r[2], r[1]) for k, r in enumerate(rows)]


def _build_clive(root):
    names = ["t1.bmp", "t2.bmp", "100.bmp", "1024.JPG", "10.bmp"]
    mos = np.array([63.9, 25.3, 32.6, 70.1, 82.9])
    os.makedirs(os.path.join(root, "Data"))
    scipy.io.savemat(os.path.join(root, "Data", "AllImages_release.mat"),
                     {"AllImages_release": _cells(names, (-1, 1))})
    scipy.io.savemat(os.path.join(root, "Data", "AllMOS_release.mat"), {"AllMOS_release": mos[None]})
    for k, n in enumerate(names[:2]):
        _image(root, "Images/trainingImages/" + n, k)
    return "Data/AllMOS_release.mat", [(_image(root, "Images/" + n, k), m, n)
                                  for k, (n, m) in enumerate(zip(names[2:], mos[2:]))]


def _build_koniq10k(root):
    rows = [("10004473376.jpg", 0, 1, 2, 60, 37, 100, 3.83, 0.6, 77.38),
            ("100117038.jpg", 3, 10, 40, 40, 7, 100, 3.38, 0.8, 65.15),
            ("10058760545.jpg", 40, 40, 15, 5, 0, 100, 1.85, 0.8, 15.23)]
    _write_csv(os.path.join(root, "koniq10k_scores_and_distributions.csv"),
               ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"], rows)
    return "koniq10k_scores_and_distributions.csv", [(_image(root, "1024x768/" + r[0], k), r[9], r[0])
                                                     for k, r in enumerate(rows)]


def _build_spaq(root):
    rows = [("00001.jpg", 48.86, 50, 40, 45, 60, 52), ("00002.jpg", 62.5, 61, 55, 60, 70, 66),
            ("00003.jpg", 12.5, 20, 30, 25, 20, 15)]
    header = ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"]
    _write_csv(os.path.join(root, "Annotations", "MOS and Image attribute scores.csv"), header, rows)
    return "Annotations/MOS and Image attribute scores.csv", [(_image(root, "TestImage/" + r[0], k), r[1], r[0])
                                                  for k, r in enumerate(rows)]


def _build_flive(root):
    rows = [("voc_emotic_ava/VOC2012__2007_000272.jpg", 71.2, 500, 375),
            ("blur_dataset/motion0049.jpg", 40.1, 480, 640), ("EE371R/cem4_dsc00232.jpg", 65.0, 640, 480)]
    _write_csv(os.path.join(root, "labels_image.csv"), ["name", "mos", "height", "width"], rows)
    return "labels_image.csv", [(_image(root, r[0], k), r[1], r[0]) for k, r in enumerate(rows)]


def _build_pipal(root):
    rows = {"A0001.txt": [("A0001_00_00.bmp", 1520.0648), ("A0001_05_03.bmp", 1095.025)],
            "A0002.txt": [("A0002_01_15.bmp", 1162.5677)]}
    os.makedirs(os.path.join(root, "Train_Label"))
    expected = []
    for k, (txt, lines) in enumerate(rows.items()):
        with open(os.path.join(root, "Train_Label", txt), "w") as f:
            f.write("".join(f"{n},{e}\n" for n, e in lines))
        for j, (n, e) in enumerate(lines):
            folder = f"Distortion_{1 + k + j}"  # the release spreads images over four folders
            expected.append((_image(root, f"{folder}/{n}", 2 * k + j), e, n[:5]))
    return "Train_Label", expected


def _build_agiqa1k(root):
    rows = [("sd_0_0_0_0.png", "a bird driving aircraft", 2.91), ("ds_1_3_2_0.png", "a cat", 1.47),
            ("sd_5_1_0_1.png", "a teddy bear", 3.33)]
    _write_csv(os.path.join(root, "AIGC_MOS_Zscore.csv"), ["Image", "Prompt", "MOS"], rows)
    return "AIGC_MOS_Zscore.csv", [(_image(root, "file/" + r[0], k), r[2], r[0]) for k, r in enumerate(rows)]


def _build_agiqa3k(root):
    rows = [("AttnGAN_normal_000.jpg", "a man", "", "", "", 1.63, 0.7, 2.1, 0.6),
            ("midjourney_normal_001.png", "a cat", "", "", "baroque", 3.92, 0.5, 3.0, 0.4),
            ("sdxl_abstract_002.png", "a dog", "red", "", "", 3.01, 0.6, 2.5, 0.7)]
    _write_csv(os.path.join(root, "data.csv"), ["name", "prompt", "adj1", "adj2", "style", "mos_quality",
                                                "std_quality", "mos_align", "std_align"], rows)
    return "data.csv", [(_image(root, "images/" + r[0], k), r[5], r[0]) for k, r in enumerate(rows)]


def _build_csv(root):
    rows = [("photos/a.png", 3.5, "x"), ("photos/b.jpg", 1.0, "x"), ("photos/c.bmp", 4.25, "y")]
    _write_csv(os.path.join(root, "labels.csv"), ["path", "score", "group"], rows)
    return "labels.csv", [(_image(root, r[0], k), r[1], r[2]) for k, r in enumerate(rows)]


BUILDERS = {"live": _build_live, "csiq": _build_csiq, "tid2013": _build_tid2013, "kadid10k": _build_kadid10k,
            "clive": _build_clive, "koniq10k": _build_koniq10k, "spaq": _build_spaq, "flive": _build_flive,
            "pipal": _build_pipal, "agiqa1k": _build_agiqa1k, "agiqa3k": _build_agiqa3k, "csv": _build_csv}


def test_every_registered_dataset_has_a_layout_test():
    assert set(BUILDERS) == set(DATASETS)
    for loader in DATASETS.values():
        assert "Expects" in loader.__doc__


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_loader_reads_the_official_layout(tmp_path, name):
    _, expected = BUILDERS[name](str(tmp_path))
    frame = load_dataset(name, str(tmp_path))
    assert list(frame.columns) == ["path", "score", "group"]
    got = sorted(zip(frame["path"], frame["score"], frame["group"]))
    want = sorted((str(tmp_path / rel), score, group) for rel, score, group in expected)
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want])
    assert [g[2] for g in got] == [w[2] for w in want]
    for path in frame["path"]:
        assert os.path.isabs(path)
        with Image.open(path) as im:
            assert im.convert("RGB").size == (56, 40)


@pytest.mark.parametrize("name", ["live", "csiq"])
def test_dmos_is_flipped_so_higher_is_better(tmp_path, name):
    _, expected = BUILDERS[name](str(tmp_path))
    frame = load_dataset(name, str(tmp_path)).set_index("path")
    raw_dmos = {str(tmp_path / rel): -score for rel, score, _ in expected}
    least, most = min(raw_dmos, key=raw_dmos.get), max(raw_dmos, key=raw_dmos.get)
    assert frame.loc[least, "score"] > frame.loc[most, "score"]
    assert (frame["score"] <= 0).all()


def test_kadid_dmos_is_kept_as_is(tmp_path):
    _build_kadid10k(str(tmp_path))
    frame = load_dataset("KADID-10k", str(tmp_path)).set_index("path")
    assert frame.loc[str(tmp_path / "images/I01_01_01.png"), "score"] == pytest.approx(4.57)


def test_live_falls_back_to_dmos_mat(tmp_path):
    _, expected = _build_live(str(tmp_path))
    mat = scipy.io.loadmat(tmp_path / "dmos_realigned.mat")
    os.remove(tmp_path / "dmos_realigned.mat")
    scipy.io.savemat(tmp_path / "dmos.mat", {"dmos": mat["dmos_new"] + 1, "orgs": mat["orgs"]})
    frame = load_dataset("LIVE", str(tmp_path))
    np.testing.assert_allclose(np.sort(frame["score"]), np.sort([s - 1 for _, s, _ in expected]))


def test_clive_drops_the_seven_training_images(tmp_path):
    _build_clive(str(tmp_path))
    frame = load_dataset("clive", str(tmp_path))
    assert not any("trainingImages" in p or os.path.basename(p).startswith("t") for p in frame["path"])


def test_koniq_falls_back_to_mos_without_zscore(tmp_path):
    _build_koniq10k(str(tmp_path))
    path = tmp_path / "koniq10k_scores_and_distributions.csv"
    pd.read_csv(path).drop(columns="MOS_zscore").to_csv(path, index=False)
    frame = load_dataset("koniq10k", str(tmp_path))
    assert sorted(frame["score"]) == [1.85, 3.38, 3.83]


def test_mat_file_without_the_expected_variable(tmp_path):
    _build_clive(str(tmp_path))
    scipy.io.savemat(tmp_path / "Data" / "AllMOS_release.mat", {"mos": np.ones((1, 5))})
    with pytest.raises(GrepqError, match=r"has no variable AllMOS_release; it has \['mos'\]"):
        load_dataset("clive", str(tmp_path))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_missing_label_file_names_it_and_the_layout(tmp_path, name):
    label, _ = BUILDERS[name](str(tmp_path))
    target = tmp_path / label
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    reported = tmp_path / ("dmos.mat" if name == "live" else label)  # LIVE falls back to dmos.mat
    with pytest.raises(GrepqError, match="Expected layout") as err:
        load_dataset(name, str(tmp_path))
    assert f"missing {reported}" in str(err.value)


def test_xlsx_without_its_csv_export_says_what_to_do(tmp_path):
    _build_csiq(str(tmp_path))
    os.rename(tmp_path / "csiq.DMOS.csv", tmp_path / "csiq.DMOS.xlsx")
    with pytest.raises(GrepqError, match=r"csiq\.DMOS\.csv.*found csiq\.DMOS\.xlsx: save it as CSV"):
        load_dataset("csiq", str(tmp_path))


def test_missing_image_is_reported(tmp_path):
    _build_tid2013(str(tmp_path))
    os.remove(tmp_path / "distorted_images" / "i01_08_5.bmp")
    with pytest.raises(GrepqError, match="1 of 3 images are missing.*i01_08_5.bmp"):
        load_dataset("tid2013", str(tmp_path))


def test_label_file_override_and_missing_columns(tmp_path):
    _build_kadid10k(str(tmp_path))
    other = tmp_path / "elsewhere.csv"
    pd.read_csv(tmp_path / "dmos.csv").iloc[:2].to_csv(other, index=False)
    assert len(load_dataset("kadid10k", str(tmp_path), labels=str(other))) == 2
    pd.read_csv(other).rename(columns={"dmos": "mos"}).to_csv(other, index=False)
    with pytest.raises(GrepqError, match=r"lacks column\(s\) \['dmos'\]"):
        load_dataset("kadid10k", str(tmp_path), labels=str(other))


def test_generic_csv_lower_is_better_negates(tmp_path):
    _build_csv(str(tmp_path))
    plain = load_dataset("csv", str(tmp_path)).set_index("path")["score"]
    flipped = load_dataset("csv", str(tmp_path), lower_is_better=True).set_index("path")["score"]
    pd.testing.assert_series_equal(flipped, -plain)


def test_generic_csv_group_defaults_to_path(tmp_path):
    _build_csv(str(tmp_path))
    pd.read_csv(tmp_path / "labels.csv").drop(columns="group").to_csv(tmp_path / "labels.csv", index=False)
    frame = load_dataset("csv", str(tmp_path))
    assert list(frame["group"]) == list(frame["path"])


def test_lower_is_better_is_refused_for_named_datasets(tmp_path):
    _build_live(str(tmp_path))
    with pytest.raises(GrepqError, match="csv"):
        load_dataset("live", str(tmp_path), lower_is_better=True)


def test_unknown_dataset_suggests_close_names(tmp_path):
    with pytest.raises(GrepqError, match="Did you mean kadid10k"):
        load_dataset("kadid", str(tmp_path))
    with pytest.raises(GrepqError, match="Known: live"):
        load_dataset("imagenet", str(tmp_path))


def _frame(sizes):
    groups = [f"g{i}" for i, n in enumerate(sizes) for _ in range(n)]
    return pd.DataFrame({"path": [f"{i}.png" for i in range(len(groups))], "score": 0.0, "group": groups})


@pytest.mark.parametrize("seed", range(5))
def test_content_split_never_shares_a_content_and_tests_whole_contents(seed):
    frame = _frame([1, 3, 5, 8, 2, 7, 4, 6, 3, 9])
    train, test = content_split(frame, n_train=12, seed=seed)
    assert len(train) == 12
    assert set(frame["group"].iloc[train]).isdisjoint(frame["group"].iloc[test])
    tested = set(frame["group"].iloc[test])
    assert len(tested) == 2  # 20% of the 10 contents
    assert set(test) == set(np.flatnonzero(frame["group"].isin(tested)))


def test_content_split_draws_the_labels_from_many_training_contents():
    # Large contents (TID2013-like): 50 labels come from across the training contents, not one or two.
    frame = _frame([120] * 20)
    train, test = content_split(frame, n_train=50, seed=0)
    assert len(train) == 50 and frame["group"].iloc[train].nunique() >= 10
    assert len(test) == 4 * 120


def test_content_split_with_one_image_per_content_is_a_plain_random_split():
    frame = _frame([1] * 40)
    train, test = content_split(frame, n_train=10, seed=3)
    assert len(train) == 10 and len(test) == 8
    assert not np.array_equal(train, content_split(frame, n_train=10, seed=4)[0])
    np.testing.assert_array_equal(train, content_split(frame, n_train=10, seed=3)[0])


def test_content_split_refuses_too_many_labels_or_one_content():
    with pytest.raises(GrepqError, match="n_train"):
        content_split(_frame([5, 5]), n_train=7, seed=0)
    with pytest.raises(GrepqError, match="at least 2 contents"):
        content_split(_frame([5]), n_train=2, seed=0)

