"""Weight files: safe loading, fsspec URLs, clear failures, parameter digests."""

import pickle
import uuid

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from grepq_core.errors import WeightsUnavailable
from grepq_core.model.weights import load_checkpoint, open_uri, parameters_digest, save_checkpoint


class _WritesMarker:
    """A pickle payload that, if unpickled, runs code creating a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _checkpoint():
    return {"format": "test/1", "state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "meta": {"epochs": 3}}


def _assert_same(loaded, expected):
    assert loaded["format"] == expected["format"] and loaded["meta"] == expected["meta"]
    assert torch.equal(loaded["state_dict"]["w"], expected["state_dict"]["w"])


def test_round_trip_local_creates_parent_dirs(tmp_path):
    uri = str(tmp_path / "new" / "dir" / "ckpt.pt")
    save_checkpoint(_checkpoint(), uri)
    _assert_same(load_checkpoint(uri), _checkpoint())


def test_round_trip_memory_url():
    uri = f"memory://grepq-tests/{uuid.uuid4().hex}/ckpt.pt"
    save_checkpoint(_checkpoint(), uri)
    with open_uri(uri) as f:
        assert len(f.read()) > 0
    _assert_same(load_checkpoint(uri), _checkpoint())


@pytest.mark.parametrize("uri", ["/nonexistent/grepq/ckpt.pt", "memory://grepq-tests/absent.pt"])
def test_missing_file_names_the_path(uri):
    with pytest.raises(WeightsUnavailable, match="not found") as info:
        load_checkpoint(uri)
    assert uri.split("://")[-1] in str(info.value)


def test_unknown_protocol_is_weights_unavailable():
    with pytest.raises(WeightsUnavailable, match="nosuchproto://x/ckpt.pt"):
        load_checkpoint("nosuchproto://x/ckpt.pt")


def _unsafe_torch_load(f):
    return torch.load(f, weights_only=False)


@pytest.mark.parametrize("dump, unsafe_load", [(torch.save, _unsafe_torch_load), (pickle.dump, pickle.load)])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_crafted_pickle_is_refused_without_running_code(tmp_path, dump, unsafe_load):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        dump({"state_dict": _WritesMarker(marker)}, f)

    with pytest.raises(WeightsUnavailable, match="evil.pt"):
        load_checkpoint(str(path))
    assert not marker.exists()

    # The payload is real: an unrestricted load runs it.
    with open(path, "rb") as f:
        unsafe_load(f)
    assert marker.read_text() == "ran"


def test_garbage_bytes_are_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(b"\x00\x01 this is not a checkpoint" * 10)
    with pytest.raises(WeightsUnavailable, match="noise.pt"):
        load_checkpoint(str(path))


def test_non_dict_checkpoint_is_refused(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(WeightsUnavailable, match="expected a dict"):
        load_checkpoint(str(path))


def test_safetensors_file_loads(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors = {"visual.proj": torch.randn(4, 2), "logit_scale": torch.tensor(4.6)}
    save_file(tensors, str(path))
    loaded = load_checkpoint(str(path))
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))  # 8x8 input


def test_digest_is_deterministic_and_weight_sensitive():
    first, again, other = _net(0), _net(0), _net(1)
    digest = parameters_digest(first)
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert parameters_digest(again) == digest
    assert parameters_digest(other) != digest

    with torch.no_grad():
        again[0].weight[0, 0, 0, 0] += 1e-6
    assert parameters_digest(again) != digest


def test_digest_covers_buffers():
    net = _net(0)
    digest = parameters_digest(net)
    net.train()
    net(torch.randn(2, 3, 8, 8))  # updates BatchNorm running statistics only
    assert parameters_digest(net) != digest
