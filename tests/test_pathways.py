"""The pathway registry: a third pathway with its own settings through `register` alone (on remote workers too),
and normalisation that comes with the weights."""
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFilter
from torch import nn

import grepq_core
from grepq_core.model import registry
from grepq_core.model import views as V
from grepq_core.model.cut import image_views
from grepq_core.model.extractor import Extractor
from grepq_core.model.hl_encoder import build_hl_encoder
from grepq_core.model.pathway import Encoded, Encoder, Pathway
from grepq_core.model.profiles import spec_for
from grepq_core.model.settings import Setting
from grepq_core.model.weights import load_checkpoint, parameters_digest
from pipelines import extract, fit, report, score
from tests.conftest import photo
from tests.tiny_models import tiny_clip_config_path
from transforms.store import read_table

TOY_NORM = V.Normalization((0.25, 0.5, 0.75), (0.5, 0.25, 0.125))


def _toy_module() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).eval()


class ToyPathway(Pathway):
    """Four features of a small square thumbnail from a tiny conv net; zero-shot score: its mean brightness.

    Its own settings: weights (a state dict file, or 'none' for the seed-7 net) and the thumbnail's side.
    """

    name = "toy"
    title = "Toy"
    settings = (Setting("toy_weights", "none", "the toy net's state dict, or 'none' for its seed-7 weights"),
                Setting("toy_size", 32, "side of the toy's square view", parse=int))

    def load(self, spec) -> Encoder:
        module = _toy_module()
        if spec.setting("toy_weights") != "none":
            module.load_state_dict(load_checkpoint(spec.setting("toy_weights")))
        return Encoder(self, module, f"toy:tiny@{parameters_digest(module)}", TOY_NORM)

    def views(self, image, spec):
        return {"toy": V.clip_view(image, size=spec.setting("toy_size"))}

    def encode(self, encoder, run, views):
        outputs = run(encoder.module, [v["toy"] for v in views], encoder.normalization, True)
        return Encoded([out[0] for out in outputs], [float(np.asarray(v["toy"]).mean() / 255) for v in views])


@pytest.fixture
def toy(tmp_path):
    """The toy pathway registered, and a weights file of its own (other weights than its seed-7 default)."""
    registry.register(ToyPathway())
    torch.manual_seed(11)
    weights = tmp_path / "toy.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).state_dict(), weights)
    yield str(weights)
    registry.unregister("toy")


def _blur_levels(photos_dir, root) -> list[str]:
    root.mkdir()
    names = []
    for src in sorted(photos_dir.iterdir()):
        img = Image.open(src).convert("RGB")
        for level in range(3):
            name = f"{src.stem}_{level}.jpg"
            img.filter(ImageFilter.GaussianBlur(2 * level)).save(root / name, quality=90)
            names.append(name)
    return names


def _toy_features(path, weights: str, size: int) -> np.ndarray:
    """What the toy net with `weights` gives on its `size` view of the image at `path`."""
    module = _toy_module()
    module.load_state_dict(torch.load(weights, weights_only=True))
    view = V.clip_view(V.to_tensor(np.asarray(Image.open(path).convert("RGB"))), size=size)[None]
    with torch.inference_mode():
        return module(TOY_NORM(view))[0].numpy()


def test_a_registered_pathway_with_its_own_settings_runs_through_extract_fit_score_report_and_the_api(
        toy, photos_dir, model_flags, tiny_models, tmp_path):
    root = tmp_path / "in"
    names = _blur_levels(photos_dir, root)
    out = tmp_path / "out"
    help_text = extract.arg_parser().format_help()
    assert "--toy-weights" in help_text and "--toy-size" in help_text
    extract.run(["--input", str(root / "*.jpg"), "--output", str(out), *model_flags, "--pathways", "ll,toy",
                 "--toy-weights", toy, "--toy-size", "24", "--batch-size", "6", "--max-patches", "8"])
    rows = read_table(str(out), "features").to_pandas()
    assert len(rows) == len(names)
    assert rows.toy_features.map(len).eq(4).all() and rows.toy_identity.str.startswith("toy:tiny@").all()
    assert rows.toy_identity.iloc[0] != ToyPathway().load(spec_for(pathways="toy")).identity  # its own weights
    assert rows.hl_features.isna().all() and rows.zs_toy.between(0, 1).all()
    first = rows.set_index("path").loc[str(root / names[0])]
    np.testing.assert_allclose(first.toy_features, _toy_features(root / names[0], toy, 24), rtol=0, atol=1e-5)

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

    api = grepq_core.load(pathways="ll,toy", ll_weights=tiny_models["ll"], pristine=tiny_models["pristine"],
                          toy_weights=toy, toy_size=24, max_patches=8, batch_size=6, model=str(model))
    frame = api.score([str(root / n) for n in names]).set_index("path")
    for column in ("toy_features", "ll_features"):
        np.testing.assert_array_equal(np.stack(frame[column]), np.stack(rows.set_index("path").loc[frame.index,
                                                                                                  column]))
    np.testing.assert_array_equal(frame.score, scores.set_index("path").loc[frame.index].score)


def test_a_worker_that_never_imported_a_pathway_imports_it_from_the_spec(toy, tiny_models, tmp_path):
    """A spec made where the toy is registered builds the toy on a fresh process that only unpickles it."""
    spec = spec_for(pathways="ll,toy", ll_weights=tiny_models["ll"], pristine=tiny_models["pristine"],
                    toy_weights=toy, toy_size=24, device="cpu")
    assert ("toy", f"{ToyPathway.__module__}:ToyPathway") in spec.sources
    (tmp_path / "spec.pkl").write_bytes(pickle.dumps(spec))
    image = tmp_path / "chelsea.jpg"
    Image.fromarray(photo("chelsea", width=200)).save(image, quality=90)
    code = (f"import pickle, numpy as np\n"
            f"from grepq_core.model import registry\n"
            f"from grepq_core.model.extractor import Extractor\n"
            f"from grepq_core.model.cut import image_views\n"
            f"from grepq_core.images.decode import load_image\n"
            f"assert 'toy' not in registry.names()\n"
            f"spec = pickle.loads(open({str(tmp_path / 'spec.pkl')!r}, 'rb').read())\n"
            f"row = Extractor.load(spec).encode([image_views(load_image({str(image)!r}), spec)])[0]\n"
            f"np.save({str(tmp_path / 'toy.npy')!r}, row['toy_features'])\n")
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tests.parent)
    expected = Extractor.load(spec).encode([image_views(np.asarray(Image.open(image).convert("RGB")), spec)])[0]
    np.testing.assert_array_equal(np.load(tmp_path / "toy.npy"), expected["toy_features"])


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
        spec = spec_for(pathways=("hl",), hl_model=config, hl_weights="grepqtest", device="cpu", batch_size=2)
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
    from grepq_core.model.ll_encoder import create_ll_encoder, load_ll_encoder, save_ll_checkpoint

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
        registry.parse_pathways("ll,hl2")
