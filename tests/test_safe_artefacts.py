"""Model files are data: a crafted pickle posing as one is refused without running it."""
import json
import pickle

import pytest

from grepq_core.errors import GrepqError
from grepq_core.fitting.ridge_file import load_ridge
from grepq_core.model.ll_encoder import load_ll_encoder
from grepq_core.model.pristine import PristineModel


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "pwned"

    def write(name):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"state_dict": _Payload(str(marker))}))
        return str(path)

    return write, marker


def test_pickle_as_ll_weights_is_refused(crafted):
    write, marker = crafted
    with pytest.raises(GrepqError):
        load_ll_encoder(write("ll_encoder.pt"))
    assert not marker.exists()


def test_pickle_as_pristine_model_is_refused(crafted):
    write, marker = crafted
    with pytest.raises(GrepqError):
        PristineModel.load(write("pristine.npz"))
    assert not marker.exists()


def test_pickle_as_regressor_is_refused(crafted, tmp_path):
    write, marker = crafted
    with pytest.raises(GrepqError):
        load_ridge(write("model.json"))
    assert not marker.exists()
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(GrepqError):
        load_ridge(str(tmp_path / "other.json"))


def test_pickle_as_weights_stops_extract_before_any_image(crafted, photos_dir, tmp_path):
    from pipelines import extract

    write, marker = crafted
    with pytest.raises(GrepqError):
        extract.run(["--input", str(photos_dir / "*"), "--output", str(tmp_path / "out"),
                     "--pathways", "ll", "--ll-weights", write("ll.pt"), "--pristine", "none"])
    assert not marker.exists() and not (tmp_path / "out").exists()
