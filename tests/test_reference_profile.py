"""The reference profile on files in the authors' formats, built here by code that mimics their training code.

Each check compares grepq with a direct computation written in the test: a
forward pass of the same weights on the whole image in [0, 1], the HL tower
without its positional embedding, the zero-shot formulas in numpy.
"""
import json
import pickle

import h5py
import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from conftest import photo
from PIL import Image, ImageFilter
from scipy.special import expit
from torch import nn
from torchvision.models import resnet18

from grepq_core.errors import WeightsUnavailable
from grepq_core.model import views as V
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.hl_encoder import build_hl_encoder
from grepq_core.model.ll_encoder import load_ll_encoder
from grepq_core.model.pristine import PristineModel, load_pristine
from grepq_core.model.profiles import spec_for
from pipelines import evaluate
from pipelines.cli import main
from tests.tiny_models import tiny_clip_config_path
from transforms.store import read_table


class _AuthorsLLModel(nn.Module):
    """The authors' LLModel layout: torchvision ResNet-18 twice (base_model and a Sequential of it) + MLP head."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.base_model = resnet18()
        self.encoder.resnet18 = nn.Sequential(*list(self.encoder.base_model.children())[:-1])
        self.head = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Linear(512, 128))

    def forward(self, x):
        return self.head(self.encoder.resnet18(x).flatten(1))


@pytest.fixture(scope="module")
def authors_files(tmp_path_factory):
    """The three released files, in the authors' formats, with random weights, and the modules behind them."""
    root = tmp_path_factory.mktemp("authors")
    torch.manual_seed(11)
    ll = _AuthorsLLModel().eval()
    for module in ll.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save({"model": {"state_dict": ll.state_dict()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999)}]}},
               root / "low_level_model_weights.tar")
    config = tiny_clip_config_path(root, "RN")
    open_clip.add_model_config(config)
    base = open_clip.create_model("grepq-tiny-rn").eval()
    torch.save(base.state_dict(), root / "base_clip.pt")
    tuned = open_clip.create_model("grepq-tiny-rn").eval()  # another draw: the fine-tuned image tower
    torch.save(tuned.visual.state_dict(), root / "high_level_model_weights.pth")
    patches = np.concatenate([_tiles01(photo(n, width=384)) for n in ("astronaut", "coffee")])
    with h5py.File(root / "pristine_patches_096_0.75_0.80.hdf5", "w") as f:
        f.create_dataset("data", data=patches)
    return {"root": root, "ll": ll, "base": base, "tuned": tuned, "config": config, "patches": patches,
            "flags": ["--ll-weights", str(root / "low_level_model_weights.tar"), "--hl-model", config,
                      "--hl-weights", str(root / "base_clip.pt"),
                      "--hl-visual-weights", str(root / "high_level_model_weights.pth"),
                      "--pristine", str(root / "pristine_patches_096_0.75_0.80.hdf5")]}


def _tiles01(img: np.ndarray, size: int = 96) -> np.ndarray:
    """Non-overlapping tiles as the authors store pristine patches: float32 (N, 3, S, S) in [0, 1]."""
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    return x.unfold(1, size, size).unfold(2, size, size).permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size).numpy()


def _spec(authors_files, **overrides):
    root = authors_files["root"]
    settings = {"ll_weights": str(root / "low_level_model_weights.tar"), "hl_model": authors_files["config"],
                "hl_weights": str(root / "base_clip.pt"),
                "hl_visual_weights": str(root / "high_level_model_weights.pth"),
                "pristine": str(root / "pristine_patches_096_0.75_0.80.hdf5"), "device": "cpu", "batch_size": 8}
    return spec_for("reference", **{**settings, **overrides})


def _unit(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255  # ToTensor


@pytest.fixture(scope="module")
def image():
    return photo("chelsea", width=250)  # 250 x 165: not a multiple of anything


@pytest.fixture(scope="module")
def row(authors_files, image, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("GREPQ_CACHE", str(tmp_path_factory.mktemp("cache")))
    extractor = Extractor.load(_spec(authors_files))
    return extractor, extractor.encode([image_views(image, extractor.spec)])[0]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


def test_ll_features_are_a_forward_of_the_same_weights_on_the_whole_image_in_unit_range(authors_files, image, row):
    with torch.inference_mode():
        expected = authors_files["ll"](_unit(image))[0].numpy()
    np.testing.assert_allclose(row[1]["ll_features"], expected, rtol=0, atol=2e-5)
    assert row[1]["profile"] == "reference" and row[1]["ll_identity"].startswith("ll:resnet18@")


def test_hl_embedding_is_the_tuned_tower_without_its_positional_embedding(authors_files, image, row):
    extractor, got = row
    hl = extractor.encoders["hl"].module
    x = V.OPENAI_CLIP(V.to_tensor(image)[None])
    with torch.inference_mode():
        zeroed = build_hl_encoder(authors_files["config"], str(authors_files["root"] / "base_clip.pt"),
                                  visual_weights=str(authors_files["root"] / "high_level_model_weights.pth"))[0]
        zeroed.visual.attnpool.positional_embedding.zero_()  # interpolating zeros adds nothing
        expected = zeroed.encode_image(x)[0].numpy()
        # at the tower's native size, open_clip's own forward with the embedding zeroed agrees
        native = torch.nn.functional.interpolate(x, size=(224, 224))
        np.testing.assert_allclose(hl.encode_image(native).numpy(), zeroed.visual(native).numpy(), atol=2e-5)
        tuned = {k: v for k, v in authors_files["tuned"].visual.state_dict().items()}
        assert all(torch.equal(hl.visual.state_dict()[k], v) for k, v in tuned.items())
        text = authors_files["base"].encode_text(open_clip.get_tokenizer("grepq-tiny-rn")(list(hl.prompts)),
                                                 normalize=True)
    np.testing.assert_allclose(got["hl_features"], expected, rtol=0, atol=2e-5)
    torch.testing.assert_close(hl.text_features, text)  # the prompts come from the base model's text tower
    assert ":checkpoint+visual:nopos@" in got["hl_identity"]


def test_zero_shot_scores_follow_the_reference_formulas(authors_files, image, row):
    _, got = row
    ll = authors_files["ll"]
    with torch.inference_mode():
        pristine = ll(torch.from_numpy(authors_files["patches"])).double().numpy()
        x = _unit(image)[0]
        patches = x.unfold(1, 96, 48).unfold(2, 96, 48).permute(1, 2, 0, 3, 4).reshape(-1, 3, 96, 96)
        test = ll(patches).double().numpy()
    assert len(test) == 8  # every patch: 2 rows ((165 - 96) // 48 + 1) x 4 columns ((250 - 96) // 48 + 1)
    mu_r, mu_t = pristine.mean(0), test.mean(0)
    cov = (np.cov(pristine, rowvar=False) + np.cov(test, rowvar=False)) / 2 + 0.001 * np.eye(128)
    d = np.sqrt((mu_r - mu_t) @ np.linalg.inv(cov) @ (mu_r - mu_t))
    assert got["zs_ll"] == pytest.approx(1 - expit(d / 100), abs=1e-6)
    emb = got["hl_features"] / np.linalg.norm(got["hl_features"])
    text = build_hl_encoder(authors_files["config"], str(authors_files["root"] / "base_clip.pt"))[0].text_features
    cos = text.numpy().astype(np.float64) @ emb
    assert got["zs_hl"] == pytest.approx(expit(10 * (cos[0] - cos[1])), abs=1e-5)


def test_the_pristine_model_from_patches_is_fitted_once_and_cached(authors_files, tmp_path, monkeypatch):
    monkeypatch.setenv("GREPQ_CACHE", str(tmp_path))
    encoder, identity = load_ll_encoder(str(authors_files["root"] / "low_level_model_weights.tar"))
    hdf5 = str(authors_files["root"] / "pristine_patches_096_0.75_0.80.hdf5")
    first = load_pristine(hdf5, encoder, identity)
    cached = list((tmp_path / "pristine").glob("*.npz"))
    assert len(cached) == 1 and first.n_patches == len(authors_files["patches"])
    again = load_pristine(hdf5, encoder, identity)
    np.testing.assert_array_equal(again.cov, PristineModel.load(str(cached[0])).cov)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["low_level_model_weights.tar", "high_level_model_weights.pth",
                                  "pristine_patches_096_0.75_0.80.hdf5"])
def test_a_pickle_posing_as_a_released_file_is_refused_without_running(authors_files, tmp_path, name):
    marker = tmp_path / "ran"
    with open(tmp_path / name, "wb") as f:
        pickle.dump({"model": {"state_dict": _Exploit(str(marker))}}, f)
    key = {"low_level_model_weights.tar": "ll_weights", "high_level_model_weights.pth": "hl_visual_weights",
           "pristine_patches_096_0.75_0.80.hdf5": "pristine"}[name]
    with pytest.raises(WeightsUnavailable):
        Extractor.load(_spec(authors_files, **{key: str(tmp_path / name)}))
    assert not marker.exists()


def test_extract_and_evaluate_run_the_reference_profile_end_to_end(authors_files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GREPQ_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "set"
    data.mkdir()
    rows = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = Image.fromarray(photo(name, width=200))
        for level in range(3):
            img.filter(ImageFilter.GaussianBlur(1.5 * level)).save(data / f"{name}_{level}.png")
            rows.append({"path": f"{name}_{level}.png", "score": 100 - 30 * level, "group": name})
    pd.DataFrame(rows).to_csv(data / "labels.csv", index=False)
    out = tmp_path / "out"
    assert main(["extract", "--profile", "reference", *authors_files["flags"], "--input", str(data / "*.png"),
                 "--output", str(out), "--batch-size", "4"]) == 0
    table = read_table(str(out), "features").to_pandas()
    assert len(table) == 12 and set(table.profile) == {"reference"}
    assert table.ll_features.map(len).eq(128).all() and table.zs_ll.notna().all()
    report = evaluate.run(["--dataset", "csv", "--root", str(data), "--protocol", "zero-shot", "--profile",
                           "reference", *authors_files["flags"], "--output", str(tmp_path / "ev")])
    printed = capsys.readouterr().out
    assert report["plcc_mapping"] == "cubic" and "In the paper's layout" in printed
    assert "| method | csv SRCC | csv PLCC |" in printed
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert saved["profile"] == "reference"


def test_the_reference_profile_fixes_its_views(capsys, tmp_path):
    (tmp_path / "one.jpg").write_bytes(b"")
    assert main(["extract", "--profile", "reference", "--max-patches", "8", "--input", str(tmp_path / "*.jpg"),
                 "--output", str(tmp_path / "o")]) == 2
    assert "--profile reference fixes --max-patches: leave them out" in capsys.readouterr().err
