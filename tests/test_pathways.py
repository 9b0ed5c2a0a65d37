"""The pathway registry: a third pathway through `register` alone, and normalisation that comes with the weights."""
import json

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFilter
from torch import nn

from grepq_core import pathways
from grepq_core import views as V
from grepq_core.extractor import EncoderSpec, Extractor, image_views
from grepq_core.hl_encoder import build_hl_encoder
from grepq_core.pathway import Encoder, Pathway
from grepq_core.weights import parameters_digest
from pipelines import extract, fit, report, score
from tests.tiny_models import tiny_clip_config_path
from transforms.store import read_table

TOY_NORM = V.Normalization((0.25, 0.5, 0.75), (0.5, 0.25, 0.125))


class ToyPathway(Pathway):
    """Four features of a 32x32 thumbnail from a tiny conv net; zero-shot score: its mean brightness."""

    name = "toy"
    title = "Toy"

    def load(self, spec) -> Encoder:
        torch.manual_seed(7)
        module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).eval()
        return Encoder(self, module, f"toy:tiny@{parameters_digest(module)}", TOY_NORM)

    def views(self, image, config):
        return {"toy": V.clip_view(image, size=32)}

    def encode(self, encoder, run, views):
        outputs = run(encoder.module, [v["toy"] for v in views], encoder.normalization)
        return [out[0] for out in outputs], [float(np.asarray(v["toy"]).mean() / 255) for v in views], None


@pytest.fixture
def toy():
    pathways.register(ToyPathway())
    yield
    pathways.unregister("toy")


def test_a_registered_pathway_runs_through_extract_fit_score_and_report(toy, photos_dir, model_flags, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    names = []
    for src in sorted(photos_dir.iterdir()):
        img = Image.open(src).convert("RGB")
        for level in range(3):
            name = f"{src.stem}_{level}.jpg"
            img.filter(ImageFilter.GaussianBlur(2 * level)).save(root / name, quality=90)
            names.append(name)
    out = tmp_path / "out"
    extract.run(["--input", str(root / "*.jpg"), "--output", str(out), *model_flags, "--pathways", "ll,toy",
                 "--batch-size", "6", "--max-patches", "8"])
    rows = read_table(str(out), "features").to_pandas()
    assert len(rows) == len(names)
    assert rows.toy_features.map(len).eq(4).all() and rows.toy_identity.str.startswith("toy:tiny@").all()
    assert rows.hl_features.isna().all() and rows.zs_toy.between(0, 1).all()
    # the toy's features are its module's output on its own view and normalisation
    pixels = np.asarray(Image.open(root / names[0]).convert("RGB"))
    view = V.clip_view(V.to_tensor(pixels), size=32)[None]
    encoder = ToyPathway().load(None)
    with torch.inference_mode():
        expected = encoder.module(TOY_NORM(view))[0].numpy()
    first = rows.set_index("path").loc[str(root / names[0])]
    np.testing.assert_allclose(first.toy_features, expected, rtol=0, atol=1e-5)

    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": names, "score": [90 - 30 * int(n[-5]) for n in names]}).to_csv(labels, index=False)
    model = tmp_path / "model.json"
    fit.run(["--features", str(out), "--labels", str(labels), "--output", str(model)])
    assert [b for b, _ in json.loads(model.read_text())["layout"] if b != "zero_shot"] == ["ll", "toy"]
    score.run(["--features", str(out), "--model", str(model), "--output", str(out)])
    scores = read_table(str(out), "scores").to_pandas()
    assert len(scores) == len(names) and scores.score.notna().all() and "zs_toy" in scores
    page = tmp_path / "report.html"
    report.run(["--scores", str(out), "--output", str(page)])
    assert "Toy encoder" in page.read_text() and rows.toy_identity.iloc[0] in page.read_text()


def test_hl_weights_whose_tag_has_its_own_mean_and_std_are_fed_with_them(tmp_path):
    config = tiny_clip_config_path(tmp_path, "RN")
    name = "grepq-tiny-rn"
    open_clip.add_model_config(config)
    torch.manual_seed(3)
    weights = tmp_path / "tiny_clip.pt"
    torch.save(open_clip.create_model(name).state_dict(), weights)
    mean, std = (0.9, 0.1, 0.5), (0.05, 0.5, 2.0)
    open_clip.pretrained._PRETRAINED[name] = {"grepqtest": {"file": str(weights), "mean": mean, "std": std}}
    try:
        encoder, identity = build_hl_encoder(config, "grepqtest")
        assert identity.startswith(f"hl:{name}:grepqtest@")
        assert encoder.normalization == V.Normalization(mean, std) != V.OPENAI_CLIP
        spec = EncoderSpec(pathways=("hl",), hl_model=config, hl_weights="grepqtest", device="cpu", batch_size=2)
        extractor = Extractor.load(spec)
        pixels = np.asarray(Image.new("RGB", (300, 240), (200, 90, 30)))
        views = image_views(pixels, spec)
        row = extractor.encode([views])[0]
        with torch.inference_mode():
            x = torch.as_tensor(views.tensors["hl"])[None]
            ours, _ = encoder(V.Normalization(mean, std)(x))
            openai, _ = encoder(V.OPENAI_CLIP(x))
        fed_ours = np.abs(row["hl_features"] - ours[0].numpy()).max()
        fed_openai = np.abs(row["hl_features"] - openai[0].numpy()).max()
        assert fed_ours < 1e-6 and fed_openai > 1000 * max(fed_ours, 1e-9)
    finally:
        open_clip.pretrained._PRETRAINED.pop(name, None)


def test_ll_normalisation_travels_with_the_checkpoint(tmp_path):
    from grepq_core.ll_encoder import create_ll_encoder, load_ll_encoder, save_ll_checkpoint

    encoder = create_ll_encoder("resnet18-w8")
    encoder.normalization = V.Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    save_ll_checkpoint(encoder, str(tmp_path / "unit.pt"), "resnet18-w8")
    loaded, _ = load_ll_encoder(str(tmp_path / "unit.pt"))
    assert loaded.normalization == encoder.normalization
    legacy = torch.load(tmp_path / "unit.pt", weights_only=True)
    del legacy["input"]
    torch.save(legacy, tmp_path / "legacy.pt")
    assert load_ll_encoder(str(tmp_path / "legacy.pt"))[0].normalization == V.IMAGENET


def test_unknown_pathways_are_refused_with_a_suggestion():
    with pytest.raises(Exception, match="Did you mean hl"):
        pathways.parse_pathways("ll,hl2")
