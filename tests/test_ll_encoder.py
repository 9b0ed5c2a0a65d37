"""LL encoder: ResNet-18 topology, features on real photos, registry, checkpoints."""

import re
import uuid

import pytest
import torch
from torchvision.models import resnet18

from grepq_core.errors import GrepqError, WeightsUnavailable
from grepq_core.model import shipped
from grepq_core.model.ll_encoder import (
    LLEncoder,
    create_ll_encoder,
    list_ll_architectures,
    load_ll_encoder,
    save_ll_checkpoint,
)
from grepq_core.model.views import IMAGENET_MEAN, IMAGENET_STD
from grepq_core.model.weights import save_checkpoint
from tests.tiny_models import photo_batch, tiny_ll_checkpoint


def _photos(tmp_path, height, width):
    return photo_batch(tmp_path, height, width, IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture(scope="module")
def resnet18_encoder():
    torch.manual_seed(0)
    return create_ll_encoder("resnet18").eval()


@pytest.mark.parametrize("height, width", [(224, 224), (240, 320), (96, 96)])
def test_features_on_real_photos(resnet18_encoder, tmp_path, height, width):
    x = _photos(tmp_path, height, width)
    with torch.no_grad():
        features = resnet18_encoder(x)
        pooled = resnet18_encoder.features_pooled(x)
    assert features.shape == (3, 128) and features.dtype == torch.float32
    assert pooled.shape == (3, 512)
    assert torch.isfinite(features).all()
    # three different photos give three different rows
    assert torch.cdist(features, features)[~torch.eye(3, dtype=torch.bool)].min() > 1e-4


def test_trunk_is_torchvision_resnet18_without_fc(resnet18_encoder):
    reference = {k: v.shape for k, v in resnet18().state_dict().items() if not k.startswith("fc.")}
    trunk = {k: v.shape for k, v in resnet18_encoder.trunk.state_dict().items()}
    assert trunk == reference
    reference_params = sum(p.numel() for name, p in resnet18().named_parameters() if not name.startswith("fc."))
    assert sum(p.numel() for p in resnet18_encoder.trunk.parameters()) == reference_params


def test_head_is_512_512_relu_128(resnet18_encoder):
    linear_shapes = [tuple(m.weight.shape) for m in resnet18_encoder.head if isinstance(m, torch.nn.Linear)]
    assert linear_shapes == [(512, 512), (128, 512)]
    assert isinstance(resnet18_encoder.head[1], torch.nn.ReLU)
    assert resnet18_encoder.config == {"width": 64, "hidden": 512, "feature_dim": 128}


@pytest.mark.parametrize("arch", list_ll_architectures())
def test_every_registered_architecture_builds_and_runs(arch):
    encoder = create_ll_encoder(arch).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 64, 48))
    assert out.shape == (2, encoder.config["feature_dim"])
    assert torch.isfinite(out).all()


def test_unknown_architecture_suggests_a_name():
    with pytest.raises(GrepqError, match="Did you mean resnet18") as info:
        create_ll_encoder("resnet-18")
    assert all(name in str(info.value) for name in list_ll_architectures())


def _trained_like(width_arch="resnet18-w8", seed=0):
    """An encoder whose BatchNorm statistics moved off their defaults, as after training."""
    torch.manual_seed(seed)
    encoder = create_ll_encoder(width_arch).train()
    encoder(torch.randn(4, 3, 64, 64))
    return encoder.eval()


def test_checkpoint_round_trip(tmp_path):
    encoder = _trained_like()
    path = str(tmp_path / "ll.pt")
    save_ll_checkpoint(encoder, path, "resnet18-w8", meta={"epochs": 15})

    loaded, identity = load_ll_encoder(path)
    assert not loaded.training
    assert re.fullmatch(r"ll:resnet18-w8@[0-9a-f]{12}", identity)
    x = _photos(tmp_path, 224, 224)
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))
    assert load_ll_encoder(path)[1] == identity
    assert torch.load(path, weights_only=True)["meta"] == {"epochs": 15}


def test_identity_tracks_weights(tmp_path):
    first = load_ll_encoder(tiny_ll_checkpoint(tmp_path / "a.pt", seed=0))[1]
    again = load_ll_encoder(tiny_ll_checkpoint(tmp_path / "b.pt", seed=0))[1]
    other = load_ll_encoder(tiny_ll_checkpoint(tmp_path / "c.pt", seed=1))[1]
    assert first == again != other


def test_load_from_memory_url(tmp_path):
    encoder = _trained_like()
    url = f"memory://grepq-tests/{uuid.uuid4().hex}/ll.pt"
    save_ll_checkpoint(encoder, url, "resnet18-w8")
    save_ll_checkpoint(encoder, str(tmp_path / "ll.pt"), "resnet18-w8")
    loaded, identity = load_ll_encoder(url)
    assert identity == load_ll_encoder(str(tmp_path / "ll.pt"))[1]
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(loaded(x), encoder(x))


def test_missing_shipped_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "SHIPPED_LL", tmp_path / "absent" / "ll_encoder.pt")
    with pytest.raises(WeightsUnavailable) as info:
        load_ll_encoder("shipped")
    assert "`ll_weights` PATH_OR_URL" in str(info.value)
    assert "grepq train-ll" in str(info.value)


def test_shipped_path_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "SHIPPED_LL", tmp_path / "ll_encoder.pt")
    tiny_ll_checkpoint(shipped.SHIPPED_LL)
    assert load_ll_encoder("shipped")[1] == load_ll_encoder(str(shipped.SHIPPED_LL))[1]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(WeightsUnavailable, match="nothing-here.pt"):
        load_ll_encoder(str(tmp_path / "nothing-here.pt"))


def test_foreign_checkpoint_is_refused(tmp_path):
    path = str(tmp_path / "plain_state_dict.pt")
    save_checkpoint(resnet18().state_dict(), path)
    with pytest.raises(WeightsUnavailable, match="neither a grepq LL checkpoint nor the authors"):
        load_ll_encoder(path)


def test_save_refuses_a_mislabelled_architecture(tmp_path):
    with pytest.raises(GrepqError, match="resnet18"):
        save_ll_checkpoint(LLEncoder(width=8, hidden=64), str(tmp_path / "x.pt"), "resnet18")


def test_a_grepq_checkpoint_without_its_architecture_says_what_it_lacks(tmp_path):
    checkpoint = torch.load(tiny_ll_checkpoint(tmp_path / "ll.pt"), weights_only=True)
    del checkpoint["arch"]
    torch.save(checkpoint, tmp_path / "no_arch.pt")
    with pytest.raises(WeightsUnavailable, match="is a grepq LL checkpoint without arch"):
        load_ll_encoder(str(tmp_path / "no_arch.pt"))
