"""A ridge model file is untrusted input: every corruption is one clear GrepqError naming file and field."""
import copy
import json

import numpy as np
import pytest

from grepq_core.errors import GrepqError
from grepq_core.fitting import ridge_file
from grepq_core.fitting.ridge_file import MAX_MODEL_BYTES, load_ridge, save_ridge

# Written by `RidgeModel.save` as it was before load checked every field (commit 5ab014a), compacted;
# fitted on the 12 rows below with folds=3.
CURRENT_FORMAT_FILE = (
    '{"format": "grepq-ridge/1", "coef": [0.8387435566245406, -0.10136037201572679, -3.8308547983979575, '
    '-0.08760304634805563, 0.06219673139745605], "intercept": 3.210833333333333, "scaler_mean": '
    '[-0.34708333333333324, -3.5277500000000006, -12.919500000000001, -0.03266666666666667, '
    '0.10991666666666662], "scaler_scale": [0.9190451075557837, 8.82136016652194, 79.02335754013914, '
    '0.08226211494701284, 0.8956676707288752], "alpha": 0.1, "layout": [["ll", 2], ["hl", 3]], '
    '"identities": {"ll": "ll:resnet18-w8@0123abcd", "hl": "hl:RN50:openai@89ab"}, "n_train": 12, '
    '"cv": {"srcc": 0.9510489510489512, "plcc": 0.9850530916829447, "folds": 3, "by_alpha": '
    '[[0.1, 0.9510489510489512, 0.5266186584651742], [1.0, 0.8321678321678322, 5.259561842022802], '
    '[10.0, 0.39860139860139865, 12.558617623047626], [100.0, -0.17482517482517487, 16.40575779612799]]}, '
    '"direction": "higher is better", "label_range": [-4.83, 8.84]}')
ROWS = np.array([[0.001, 2.987, -27.414, -0.089, -0.455], [-0.992, 0.601, 134.022, -0.049, -0.62],
                 [0.49, 3.569, 10.541, -0.093, -0.029]])
PREDICTIONS = [4.177065376446591, -4.581823904530292, 2.8105300199733163]  # by the code that wrote it
LAYOUT = [["ll", 2], ["hl", 3]]
IDS = {"ll": "ll:resnet18-w8@0123abcd", "hl": "hl:RN50:openai@89ab"}
GOOD = json.loads(CURRENT_FORMAT_FILE)


def _write(tmp_path, record, name="model.json") -> str:
    path = tmp_path / name
    path.write_text(record if isinstance(record, str) else json.dumps(record))  # NaN/Infinity as Python writes them
    return str(path)


def _changed(**fields):
    """GOOD with top-level fields replaced (a value of `...` deletes the field)."""
    def change(record):
        for key, value in fields.items():
            if value is ...:
                del record[key]
            else:
                record[key] = value
    return change


def _set(path, value):
    """GOOD with one nested item replaced, e.g. _set(("cv", "by_alpha", 0, 1), nan)."""
    def change(record):
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


NAN, INF = float("nan"), float("inf")
CORRUPTIONS = {
    # the hostile test's findings
    "coef too short": (_changed(coef=GOOD["coef"][:-1]), "field coef has 4 values; layout ll:2, hl:3 needs 5"),
    "coef too long": (_changed(coef=GOOD["coef"] + [0.0]), "field coef has 6 values"),
    "coef 2-D": (_changed(coef=[GOOD["coef"]]), "field coef has 1 values"),
    "coef 2-D, right length": (_changed(coef=[[c] for c in GOOD["coef"]]), "field coef[0] must be a number"),
    "string intercept": (_changed(intercept="3.2"), "field intercept must be a number, not str"),
    "scaler mean of length 1": (_changed(scaler_mean=[0.0]), "field scaler_mean has 1 values"),
    "scaler scale of length 1": (_changed(scaler_scale=[1.0]), "field scaler_scale has 1 values"),
    "NaN coef": (_set(("coef", 1), NAN), "field coef[1] must be finite, not nan"),
    "zero scale": (_set(("scaler_scale", 2), 0.0), "field scaler_scale[2] must be positive"),
    "infinite intercept": (_changed(intercept=INF), "field intercept must be finite, not inf"),
    # more of the same kind
    "negative scale": (_set(("scaler_scale", 0), -1.0), "field scaler_scale[0] must be positive"),
    "denormal scale": (_set(("scaler_scale", 4), 1e-320), "field scaler_scale[4] must be positive"),
    "infinite scale": (_set(("scaler_scale", 4), INF), "field scaler_scale[4] must be finite"),
    "-inf mean": (_set(("scaler_mean", 3), -INF), "field scaler_mean[3] must be finite"),
    "boolean coef": (_set(("coef", 0), True), "field coef[0] must be a number, not bool"),
    "null intercept": (_changed(intercept=None), "field intercept must be a number, not null"),
    "intercept past float": (_changed(intercept=10 ** 400), "field intercept must be finite"),
    "coef not a list": (_changed(coef={"0": 1.0}), "field coef must be a list of numbers, not dict"),
    "unknown field": (_changed(extra=1), "field 'extra' is not part of the format"),
    "layout not a list": (_changed(layout="ll:2,hl:3"), "field layout must be a non-empty list"),
    "layout empty": (_changed(layout=[]), "field layout must be a non-empty list"),
    "layout pair too short": (_changed(layout=[["ll"], ["hl", 3]]), "field layout[0] must be a [name, width]"),
    "layout name not a string": (_changed(layout=[[1, 2], ["hl", 3]]), "field layout[0] must be a [name, width]"),
    "layout width zero": (_changed(layout=[["ll", 0], ["hl", 5]]), "field layout[0] width must be at least 1"),
    "layout width negative": (_changed(layout=[["ll", -2], ["hl", 7]]), "field layout[0] width must be at least 1"),
    "layout width float": (_changed(layout=[["ll", 2.0], ["hl", 3]]), "field layout[0] width must be an integer"),
    "layout width string": (_changed(layout=[["ll", "2"], ["hl", 3]]), "field layout[0] width must be an integer"),
    "layout width boolean": (_changed(layout=[["ll", True], ["hl", 4]]), "field layout[0] width must be an integer"),
    "layout widths != coef length": (_changed(layout=[["ll", 3], ["hl", 3]]),
                                     "field coef has 5 values; layout ll:3, hl:3 needs 6"),
    "layout names a block twice": (_changed(layout=[["ll", 2], ["ll", 3]]), "field layout names a block twice"),
    "identity not a string": (_set(("identities", "ll"), 5), "field identities['ll'] must be a non-empty string"),
    "identity empty": (_set(("identities", "hl"), ""), "field identities['hl'] must be a non-empty string"),
    "identity with a newline": (_set(("identities", "hl"), "hl:a\nb"), "field identities['hl'] must be a non-empty"),
    "layout name with a newline": (_changed(layout=[["l\nl", 2], ["hl", 3]]), "field layout[0] must be a [name"),
    "identities a list": (_changed(identities=["ll:x", "hl:y"]), "field identities must be an object"),
    "identities miss a block": (_changed(identities={"ll": "ll:x"}), "field identities names ['ll']"),
    "alpha negative": (_changed(alpha=-1.0), "field alpha must not be negative"),
    "alpha NaN": (_changed(alpha=NAN), "field alpha must be finite"),
    "alpha string": (_changed(alpha="0.1"), "field alpha must be a number"),
    "n_train zero": (_changed(n_train=0), "field n_train must be at least 1"),
    "n_train fractional": (_changed(n_train=12.5), "field n_train must be an integer"),
    "cv not an object": (_changed(cv=[0.9]), "field cv must be an object"),
    "cv without srcc": (_changed(cv={k: v for k, v in GOOD["cv"].items() if k != "srcc"}), "field cv.srcc is missing"),
    "cv srcc NaN": (_set(("cv", "srcc"), NAN), "field cv.srcc must be finite"),
    "cv one fold": (_set(("cv", "folds"), 1), "field cv.folds must be at least 2"),
    "cv by_alpha empty": (_set(("cv", "by_alpha"), []), "field cv.by_alpha must be a non-empty list"),
    "cv by_alpha pair": (_set(("cv", "by_alpha", 0), [0.1, 0.9]), "field cv.by_alpha[0] must be an [alpha"),
    "cv by_alpha infinite": (_set(("cv", "by_alpha", 2, 2), INF), "field cv.by_alpha[2][2] must be finite"),
    "direction other": (_changed(direction="lower is better"), "field direction must be 'higher is better'"),
    "label range reversed": (_changed(label_range=[8.0, 1.0]), "field label_range has its lowest label"),
    "label range one value": (_changed(label_range=[1.0]), "field label_range must be [lowest, highest]"),
    "label range NaN": (_changed(label_range=[NAN, 1.0]), "field label_range[0] must be finite"),
    "choice weight above one": (_changed(choice={"chosen": "features+zero-shot", "cv_srcc": {"features+zero-shot": 0.5},
                                                 "weight": 1.5}), "field choice.weight must be between 0 and 1"),
    "choice weight a string": (_changed(choice={"chosen": "features+zero-shot", "cv_srcc": {"features+zero-shot": 0.5},
                                                "weight": "0.5"}), "field choice.weight must be a number"),
    **{f"missing {key}": (_changed(**{key: ...}), f"field '{key}' is missing")
       for key in ("coef", "intercept", "scaler_mean", "scaler_scale", "alpha", "layout", "identities",
                   "n_train", "cv", "direction")},
}


@pytest.mark.parametrize("change, message", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_each_corruption_is_one_line_naming_file_and_field(tmp_path, change, message):
    record = copy.deepcopy(GOOD)
    change(record)
    path = _write(tmp_path, record)
    with pytest.raises(GrepqError) as raised:
        load_ridge(path)
    text = str(raised.value)
    assert message in text and path in text and "\n" not in text, text


@pytest.mark.parametrize("text", ["[1, 2]", '"grepq-ridge/1"', "3", "null", '{"coef": [1.0]}',
                                  '{"format": ["grepq-ridge/1"]}'])
def test_json_that_is_not_a_model_object_is_refused(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(GrepqError, match="is not a grepq-ridge/1 model"):
        load_ridge(path)


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe\x00garbage", b"[" * 200_000, b'{"format": NaN'])
def test_text_that_is_not_json_is_refused(tmp_path, data):
    path = tmp_path / "model.json"
    path.write_bytes(data)
    with pytest.raises(GrepqError, match="is not JSON") as raised:
        load_ridge(str(path))
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    head, tail = CURRENT_FORMAT_FILE.split('"coef": [', 1)
    path = tmp_path / "model.json"
    path.write_text(head + '"coef": [' + "0.0, " * (MAX_MODEL_BYTES // 5) + tail)  # ~16 MB of coefficients
    assert path.stat().st_size > MAX_MODEL_BYTES

    def parse(*args, **kwargs):
        raise AssertionError("an oversized model file was parsed")

    monkeypatch.setattr(ridge_file.json, "loads", parse)
    with pytest.raises(GrepqError, match=f"{path} is larger than 16 MB"):
        load_ridge(str(path))


def test_a_file_written_by_the_current_save_still_loads_and_predicts(tmp_path):
    model = load_ridge(_write(tmp_path, CURRENT_FORMAT_FILE), layout=LAYOUT, identities=IDS)
    np.testing.assert_allclose(model.predict(ROWS), PREDICTIONS, rtol=1e-13)
    assert model.label_range == [-4.83, 8.84] and model.cv["folds"] == 3 and model.n_train == 12


def test_a_model_from_before_calibration_loads_without_a_label_range(tmp_path):
    record = copy.deepcopy(GOOD)
    del record["label_range"]
    model = load_ridge(_write(tmp_path, record))
    np.testing.assert_allclose(model.predict(ROWS), PREDICTIONS, rtol=1e-13)
    with pytest.raises(GrepqError, match="no label range"):
        model.calibrate(np.zeros(1), 1, 5)


def test_save_writes_strict_json_and_round_trips(tmp_path):
    model = load_ridge(_write(tmp_path, CURRENT_FORMAT_FILE))
    out = tmp_path / "again.json"
    save_ridge(model, str(out))

    def refuse(constant):
        raise AssertionError(f"{constant} in saved model")

    assert json.loads(out.read_text(), parse_constant=refuse) == GOOD
    np.testing.assert_array_equal(load_ridge(str(out)).predict(ROWS), model.predict(ROWS))


def test_save_refuses_a_model_that_would_not_load(tmp_path):
    model = load_ridge(_write(tmp_path, CURRENT_FORMAT_FILE))
    model.coef[0] = np.nan
    out = tmp_path / "bad.json"
    with pytest.raises(GrepqError, match="refusing to save .*field coef\\[0\\] must be finite"):
        save_ridge(model, str(out))
    assert not out.exists()
