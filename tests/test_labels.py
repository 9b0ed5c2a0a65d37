"""Label files: every problem is reported with counts; fit refuses too few rows."""
import pytest

from grepq_core.errors import GrepqError
from grepq_core.labels import join_labels, read_labels
from grepq_core.regressor import MIN_TRAIN_ROWS

FEATURES = [f"/data/night/img_{i:02d}.jpg" for i in range(20)] + ["/data/other/img_00.jpg"]


def _csv(tmp_path, text):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return str(path)


def test_missing_columns_name_what_is_there(tmp_path):
    with pytest.raises(GrepqError, match=r"lacks column\(s\) \['score'\].*\['path', 'mos'\]"):
        read_labels(_csv(tmp_path, "path,mos\na.jpg,3\n"))


def test_nan_and_non_numeric_scores_are_skipped_with_counts(tmp_path):
    labels = read_labels(_csv(tmp_path, "path,score\na.jpg,3\nb.jpg,\nc.jpg,good\nd.jpg,nan\n"))
    assert labels.scores == {"a.jpg": 3.0}
    assert any("3 of 4 label rows" in w and "line 3" in w for w in labels.warnings)


def test_duplicates_merge_when_equal_and_fail_when_not(tmp_path):
    labels = read_labels(_csv(tmp_path, "path,score\na.jpg,3\na.jpg,3\n"))
    assert labels.scores == {"a.jpg": 3.0} and "1 duplicate" in labels.warnings[0]
    with pytest.raises(GrepqError, match="1 path\\(s\\) appear .* with different scores"):
        read_labels(_csv(tmp_path, "path,score\na.jpg,3\na.jpg,4\n"))


def test_dmos_is_flipped(tmp_path):
    assert read_labels(_csv(tmp_path, "path,score\na.jpg,30\n"), lower_is_better=True).scores == {"a.jpg": -30.0}


def test_join_by_full_path_or_unique_file_name_and_count_unmatched(tmp_path):
    text = "path,score\n/data/night/img_01.jpg,1\nimg_02.jpg,2\nmissing.jpg,5\n../../etc/passwd,9\n"
    matched, warnings = join_labels(read_labels(_csv(tmp_path, text)), FEATURES)
    assert matched == {"/data/night/img_01.jpg": 1.0, "/data/night/img_02.jpg": 2.0}
    assert any("2 of 4 labels match no feature row" in w for w in warnings)


def test_ambiguous_file_name_is_an_error(tmp_path):
    with pytest.raises(GrepqError, match="match several images"):
        join_labels(read_labels(_csv(tmp_path, "path,score\nimg_00.jpg,1\n")), FEATURES)


def test_fit_refuses_fewer_rows_than_the_minimum(extracted_small, tmp_path):
    from pipelines import fit

    out, paths = extracted_small
    rows = "\n".join(f"{p},{i}" for i, p in enumerate(paths[: MIN_TRAIN_ROWS - 1]))
    with pytest.raises(Exception, match=f"at least {MIN_TRAIN_ROWS} labelled rows, got {MIN_TRAIN_ROWS - 1}"):
        fit.run(["--features", str(out), "--label-csv", _csv(tmp_path, "path,score\n" + rows),
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
