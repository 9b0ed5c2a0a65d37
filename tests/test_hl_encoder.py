"""HL encoder: any-size CLIP image towers, prompt embeddings, weight sources, thread safety."""

import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from grepq_core.errors import GrepqError, WeightsUnavailable
from grepq_core.model.hl_encoder import DEFAULT_PROMPTS, build_hl_encoder, save_hl_checkpoint
from grepq_core.model.views import CLIP_MEAN, CLIP_STD
from grepq_core.model.weights import save_checkpoint
from tests.tiny_models import photo_batch, tiny_clip_config_path, tiny_hl_encoder

KINDS = ["RN", "ViT"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hl")


@pytest.fixture(scope="module", params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def encoder(workdir, kind):
    return tiny_hl_encoder(workdir, kind, seed=0)[0]


def _photos(workdir, height=224, width=224):
    return photo_batch(workdir, height, width, CLIP_MEAN, CLIP_STD)


def _open_clip_twin(encoder, kind):
    """The plain open_clip model carrying the encoder's image-tower weights."""
    clip = open_clip.create_model(f"grepq-tiny-{kind.lower()}").eval()
    clip.visual.load_state_dict(encoder.visual.state_dict())
    return clip


def test_shapes_and_dtype_on_real_photos(encoder, workdir):
    with torch.no_grad():
        embedding, cosine = encoder(_photos(workdir))
    assert embedding.shape == (3, 32) and embedding.dtype == torch.float32
    assert cosine.shape == (3, 2) and cosine.dtype == torch.float32
    assert (cosine.abs() <= 1 + 1e-6).all()
    assert torch.cdist(embedding, embedding)[~torch.eye(3, dtype=torch.bool)].min() > 1e-6
    expected = F.normalize(embedding, dim=-1) @ encoder.text_features.T
    torch.testing.assert_close(cosine, expected)


def test_native_size_equals_open_clip(encoder, workdir, kind):
    x = _photos(workdir)
    with torch.no_grad():
        embedding, _ = encoder(x)
        reference = _open_clip_twin(encoder, kind).encode_image(x)
    torch.testing.assert_close(embedding, reference, rtol=1e-5, atol=1e-6)


def test_any_input_size(encoder, workdir, kind):
    x = _photos(workdir, 320, 256)
    with torch.no_grad():
        embedding, cosine = encoder(x)
        small, _ = encoder(_photos(workdir, 96, 160))
        with pytest.raises(RuntimeError):  # open_clip alone only takes its native grid
            _open_clip_twin(encoder, kind).encode_image(x)
    assert embedding.shape == (3, 32) and cosine.shape == (3, 2) and small.shape == (3, 32)
    assert torch.isfinite(embedding).all() and torch.isfinite(small).all()


def test_parameters_untouched_by_other_sizes(encoder, workdir):
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with torch.no_grad():
        encoder(_photos(workdir, 320, 256))
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_threads_share_one_encoder(encoder, workdir):
    inputs = [_photos(workdir, 224, 224), _photos(workdir, 320, 256)]
    with torch.no_grad():
        sequential = [encoder(x)[0] for x in inputs]
    results = {}

    def work(index):
        with torch.no_grad():
            results[index] = [encoder(inputs[index])[0] for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, expected in enumerate(sequential):
        for got in results[index]:
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_text_features_are_normalised_and_distinct(encoder):
    assert encoder.text_features.shape == (2, 32)
    torch.testing.assert_close(encoder.text_features.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(encoder.text_features[0], encoder.text_features[1])
    assert encoder.prompts == DEFAULT_PROMPTS
    assert not encoder.text_features.requires_grad


def test_identity_format_and_sensitivity(workdir, kind):
    _, identity = tiny_hl_encoder(workdir, kind, seed=0)
    _, again = tiny_hl_encoder(workdir, kind, seed=0)
    _, other = tiny_hl_encoder(workdir, kind, seed=1)
    assert re.fullmatch(rf"hl:grepq-tiny-{kind.lower()}:random@[0-9a-f]{{12}}", identity)
    assert identity == again != other


def test_full_clip_state_dict_checkpoint(workdir, kind):
    config = tiny_clip_config_path(workdir, kind)
    torch.manual_seed(7)
    clip = open_clip.create_model(Path(config).stem).eval()
    path = str(workdir / f"clip-{kind}.pt")
    save_checkpoint({"state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)

    encoder, identity = build_hl_encoder(config, weights=path)
    assert identity.startswith(f"hl:grepq-tiny-{kind.lower()}:checkpoint@")
    x = _photos(workdir)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x)[0], clip.encode_image(x))
        tokens = open_clip.get_tokenizer(Path(config).stem)(list(DEFAULT_PROMPTS))
        torch.testing.assert_close(encoder.text_features, clip.encode_text(tokens, normalize=True))


def test_clip_state_dict_of_another_model_is_refused(workdir):
    torch.manual_seed(0)
    vit = open_clip.create_model(Path(tiny_clip_config_path(workdir, "ViT")).stem)
    path = str(workdir / "vit-clip.pt")
    save_checkpoint(vit.state_dict(), path)
    with pytest.raises(WeightsUnavailable, match="vit-clip.pt"):
        build_hl_encoder(tiny_clip_config_path(workdir, "RN"), weights=path)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_grepq_hl_checkpoint_round_trip(encoder, workdir, kind, where):
    config = tiny_clip_config_path(workdir, kind)
    _, identity = tiny_hl_encoder(workdir, kind, seed=0)
    path = str(workdir / f"hl-{kind}.pt") if where == "local" else f"memory://grepq-tests/{uuid.uuid4().hex}.pt"
    save_hl_checkpoint(encoder, path, config, meta={"epochs": 2})

    loaded, loaded_identity = build_hl_encoder(config, weights=path)
    assert not loaded.training
    assert loaded_identity == identity.replace(":random@", ":checkpoint@")
    x = _photos(workdir, 256, 320)
    with torch.no_grad():
        for got, expected in zip(loaded(x), encoder(x)):
            torch.testing.assert_close(got, expected)


def test_hl_checkpoint_for_another_model_is_refused(encoder, workdir, kind):
    path = str(workdir / f"hl-mismatch-{kind}.pt")
    save_hl_checkpoint(encoder, path, tiny_clip_config_path(workdir, kind))
    other = "ViT" if kind == "RN" else "RN"
    with pytest.raises(GrepqError, match=f"grepq-tiny-{kind.lower()}"):
        build_hl_encoder(tiny_clip_config_path(workdir, other), weights=path)


def test_hl_checkpoint_with_other_prompts_is_refused(encoder, workdir, kind):
    config = tiny_clip_config_path(workdir, kind)
    path = str(workdir / f"hl-prompts-{kind}.pt")
    save_hl_checkpoint(encoder, path, config)
    with pytest.raises(GrepqError, match="prompts"):
        build_hl_encoder(config, weights=path, prompts=("A sharp photo.", "A blurry photo."))


def test_custom_prompts_change_text_features(workdir):
    config = tiny_clip_config_path(workdir, "RN")
    torch.manual_seed(0)
    default, _ = build_hl_encoder(config, weights=None)
    torch.manual_seed(0)
    custom, _ = build_hl_encoder(config, weights=None, prompts=("A sharp photo.", "A blurry photo."))
    assert custom.prompts == ("A sharp photo.", "A blurry photo.")
    assert not torch.allclose(custom.text_features, default.text_features)


def test_unknown_model_suggests_names():
    with pytest.raises(GrepqError, match="Did you mean.*RN50"):
        build_hl_encoder("RN-50", weights=None)


def test_unknown_tag_lists_valid_tags():
    with pytest.raises(GrepqError, match="openai"):
        build_hl_encoder("RN50", weights="opneai")


def test_missing_checkpoint_names_the_path(workdir):
    path = str(workdir / "absent" / "hl.pt")
    with pytest.raises(WeightsUnavailable, match="absent/hl.pt"):
        build_hl_encoder(tiny_clip_config_path(workdir, "RN"), weights=path)


def test_openai_weights_offline_say_what_to_do(tmp_path):
    """open_clip fetches pretrained tags from the Hugging Face hub; offline that must fail fast and clearly."""
    script = (
        "from grepq_core.model.hl_encoder import build_hl_encoder\n"
        "from grepq_core.errors import WeightsUnavailable\n"
        "try:\n"
        "    build_hl_encoder('RN50', 'openai')\n"
        "except WeightsUnavailable as e:\n"
        "    print('WeightsUnavailable:', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("WeightsUnavailable:")
    assert "`hl_weights` PATH_OR_URL" in done.stdout and "`pathways` ll" in done.stdout
