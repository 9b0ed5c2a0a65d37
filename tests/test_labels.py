"""Label files: every problem is reported with counts; fit refuses too few rows; read as a capped stream."""
import csv
import json
import os
import threading

import pytest

from grepq_core.errors import GrepqError
from grepq_core.fitting.labels import MAX_LABEL_BYTES, LabelFile
from grepq_core.fitting.ridge_fit import MIN_TRAIN_ROWS
from pipelines.cli import main
from pipelines.options import parse

FEATURES = [f"/data/night/img_{i:02d}.jpg" for i in range(20)] + ["/data/other/img_00.jpg"]


def _csv(tmp_path, text):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return str(path)


def _match(path, features=FEATURES, lower_is_better=False):
    return LabelFile(path, lower_is_better).match(features)


def test_missing_columns_name_what_is_there(tmp_path):
    with pytest.raises(GrepqError, match=r"lacks column\(s\) \['score'\].*\['path', 'mos'\]"):
        LabelFile(_csv(tmp_path, "path,mos\na.jpg,3\n"))


def test_nan_and_non_numeric_scores_are_skipped_with_counts(tmp_path):
    matched, warnings = _match(_csv(tmp_path, "path,score\na.jpg,3\nb.jpg,\nc.jpg,good\nd.jpg,nan\n"),
                               ["/x/a.jpg", "/x/b.jpg", "/x/c.jpg", "/x/d.jpg"])
    assert matched == {"/x/a.jpg": 3.0}
    assert any("3 of 4 label rows" in w and "line 3" in w for w in warnings)


def test_duplicates_merge_when_equal_and_fail_when_not(tmp_path):
    matched, warnings = _match(_csv(tmp_path, "path,score\nimg_01.jpg,3\n/data/night/img_01.jpg,3\n"))
    assert matched == {"/data/night/img_01.jpg": 3.0} and "1 duplicate" in warnings[0]
    with pytest.raises(GrepqError, match="1 image\\(s\\) have different scores .* keep one score per image"):
        _match(_csv(tmp_path, "path,score\nimg_01.jpg,3\nimg_01.jpg,4\n"))


def test_dmos_is_flipped(tmp_path):
    assert _match(_csv(tmp_path, "path,score\na.jpg,30\n"), ["a.jpg"], lower_is_better=True)[0] == {"a.jpg": -30.0}


def test_join_by_full_path_or_unique_file_name_and_count_unmatched(tmp_path):
    text = "path,score\n/data/night/img_01.jpg,1\nimg_02.jpg,2\nmissing.jpg,5\n../../etc/passwd,9\n"
    matched, warnings = _match(_csv(tmp_path, text))
    assert matched == {"/data/night/img_01.jpg": 1.0, "/data/night/img_02.jpg": 2.0}
    assert any("2 of 4 label rows match no feature row" in w for w in warnings)


def test_ambiguous_file_name_is_an_error(tmp_path):
    with pytest.raises(GrepqError, match="match several images"):
        _match(_csv(tmp_path, "path,score\nimg_00.jpg,1\n"))


ODD_PATHS = ["a .jpg", "b\r.jpg", "c\n.jpg", " d.jpg", "e\r\n.jpg", "007", "f,\"g\".jpg"]


def _csv_module_file(tmp_path, rows, header=("path", "score"), encoding="utf-8"):
    """A label file as Python's csv module writes it (quoting fields with \\r, \\n, commas, quotes)."""
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding=encoding) as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def test_paths_keep_spaces_and_line_breaks_exactly_as_written(tmp_path):
    labels = _csv_module_file(tmp_path, [(p, i) for i, p in enumerate(ODD_PATHS)])
    assert _match(labels, ODD_PATHS) == ({p: float(i) for i, p in enumerate(ODD_PATHS)}, [])
    features = [f"/data/{p}" for p in ODD_PATHS] + ["/data/a.jpg", "/data/b.jpg", "/data/c.jpg", "/data/d.jpg"]
    matched, warnings = _match(labels, features)
    assert matched == {f"/data/{p}": float(i) for i, p in enumerate(ODD_PATHS)} and not warnings


def test_blank_paths_are_skipped_but_not_stripped(tmp_path):
    matched, warnings = _match(_csv_module_file(tmp_path, [("  ", 1), ("\t", 2), ("x.jpg ", 3)]), ["x.jpg ", "x.jpg"])
    assert matched == {"x.jpg ": 3.0}
    assert any("2 of 3 label rows have no path" in w for w in warnings)


def test_column_names_match_loosely(tmp_path):
    path = _csv_module_file(tmp_path, [(" a.jpg", "3")], header=(" Path ", "SCORE"), encoding="utf-8-sig")
    assert _match(path, [" a.jpg"])[0] == {" a.jpg": 3.0}
    with pytest.raises(GrepqError, match="2 columns named 'path'"):
        LabelFile(_csv_module_file(tmp_path, [("a.jpg", "b.jpg", 3)], header=("path", "Path", "score")))


def test_fit_refuses_fewer_rows_than_the_minimum(extracted_small, tmp_path):
    from pipelines import fit

    out, paths = extracted_small
    rows = "\n".join(f"{p},{i}" for i, p in enumerate(paths[: MIN_TRAIN_ROWS - 1]))
    with pytest.raises(Exception, match=f"at least {MIN_TRAIN_ROWS} labelled rows, got {MIN_TRAIN_ROWS - 1}"):
        fit.run(["--features", str(out), "--labels", _csv(tmp_path, "path,score\n" + rows),
                 "--output", str(tmp_path / "model.json")])
    assert not (tmp_path / "model.json").exists()


@pytest.fixture(scope="module")
def extracted_small(tmp_path_factory, photos_dir, tiny_models):
    from PIL import Image, ImageFilter

    from pipelines import extract

    corpus = tmp_path_factory.mktemp("labels_corpus")
    for src in sorted(photos_dir.iterdir()):
        for radius in (0, 3):
            Image.open(src).convert("RGB").filter(ImageFilter.GaussianBlur(radius)).save(
                corpus / f"{src.stem}_{radius}.jpg")
    out = tmp_path_factory.mktemp("labels_out")
    extract.run(["--input", str(corpus / "*.jpg"), "--output", str(out), "--pathways", "ll",
                 "--ll-weights", tiny_models["ll"], "--pristine", "none"])
    return out, sorted(str(p) for p in corpus.iterdir())


@pytest.mark.timeout(60)
def test_a_label_file_can_be_a_pipe(tmp_path, capsys):
    """`--labels <(cat labels.csv)` used to fail with "File or stream is not seekable."."""
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("path,score\na.jpg,3\nb.jpg,4\n"))
    writer.start()
    assert _match(str(fifo), ["/x/a.jpg", "/x/b.jpg"])[0] == {"/x/a.jpg": 3.0, "/x/b.jpg": 4.0}
    writer.join()


@pytest.mark.timeout(60)
def test_an_endless_label_file_is_refused_at_the_cap_in_one_line(tmp_path, capsys):
    """`--labels /dev/zero` used to grow to 24 GB before the kernel killed it."""
    assert main(["fit", "--features", str(tmp_path), "--labels", "/dev/zero", "--output", str(tmp_path / "m.json")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"grepq fit: error: --labels /dev/zero is larger than {MAX_LABEL_BYTES >> 20} MiB"]


def test_the_label_file_stays_out_of_the_pipeline(extracted_small, tmp_path):
    """A large label file used to be pickled into the pipeline (a 200 MB one: 6.8 GB, killed after 300 s)."""
    import apache_beam as beam

    from pipelines import fit

    out, paths = extracted_small
    others = "".join(f"/elsewhere/{i:06d}/photo_{i}.jpg,{i % 5}\n" for i in range(100_000))
    labels = _csv(tmp_path, "path,score\n" + "".join(f"{p},{i % 5}\n" for i, p in enumerate(paths)) + others)
    assert os.path.getsize(labels) > 3_000_000
    args, _ = parse(fit.arg_parser(), ["--features", str(out), "--labels", labels, "--output", "m.json"])
    pipeline = beam.Pipeline()
    fit.build(pipeline, args, str(out), str(tmp_path / "model.json"))
    assert len(pipeline.to_runner_api().SerializeToString()) < 200_000
    fit.run(["--features", str(out), "--labels", labels, "--output", str(tmp_path / "model.json")])
    assert json.loads((tmp_path / "model.json").read_text())["n_train"] == len(paths)
