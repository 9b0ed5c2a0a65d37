"""Training both pathways: the training set on DirectRunner, QACL training and resume, GCL fine-tuning."""
import glob
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grepq_core.errors import GrepqError
from grepq_core.images.decode import load_image
from grepq_core.model import views as V
from grepq_core.model.hl_encoder import build_hl_encoder, save_hl_checkpoint
from grepq_core.model.ll_encoder import create_ll_encoder, load_ll_encoder
from grepq_core.model.weights import load_checkpoint, parameters_digest
from grepq_core.training.data import TrainingSetSpec, load_record, plan_versions, read_index
from grepq_core.training.ll import LLTrainConfig, qacl_batch_loss, qacl_views, train_ll
from pipelines import make_training_set, train_hl
from pipelines import train_ll as train_ll_cli
from tests.conftest import photo
from tests.tiny_models import photo_batch, tiny_clip_config_path, tiny_hl_encoder

_SPEC_FLAGS = ["--per-image", "2", "--levels", "2,4", "--size", "224", "--seed", "3"]
_TINY = LLTrainConfig(arch="resnet18-w8", epochs=2, batch=2, lr=1e-3, grid=3)


def _log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def training_set(tmp_path_factory):
    """Three real photos and one broken file through `grepq make-training-set`: (photo dir, prefix)."""
    photos = tmp_path_factory.mktemp("pristine")
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray(photo(name, width=300)).save(photos / f"{name}.jpg", quality=92)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    prefix = tmp_path_factory.mktemp("training") / "set"
    make_training_set.run(["--input", str(photos / "*.jpg"), "--output", str(prefix), *_SPEC_FLAGS])
    return photos, str(prefix)


def test_training_set_has_graded_versions_and_fsim(training_set):
    photos, prefix = training_set
    rows = read_index(prefix)
    spec = TrainingSetSpec(per_image=2, levels=(2, 4), size=224, seed=3)
    assert [r["source"] for r in rows] == sorted(str(p) for p in photos.glob("*.jpg") if p.name != "broken.jpg")
    for row in rows:
        record = load_record(prefix, row)
        assert record.source == row["source"] and record.names == row["names"]
        assert record.versions.shape == (spec.num_versions, 224, 224, 3) == (5, 224, 224, 3)
        assert record.versions.dtype == np.uint8
        assert record.names == ["reference"] + [f"{n}:{lvl}" for n, lvl in plan_versions(record.source, spec)]
        reference = V.clip_view(V.to_tensor(load_image(record.source)), 224).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(record.versions[0], reference)
        assert all((v != reference).any() for v in record.versions[1:])
        A = record.fsim
        np.testing.assert_array_equal(A, A.T)
        np.testing.assert_array_equal(np.diag(A), 1.0)
        off = A[~np.eye(len(A), dtype=bool)]
        assert np.isfinite(off).all() and (off > 0).all() and (off < 1).all()


def test_unusable_photos_are_listed_not_fatal(training_set):
    _, prefix = training_set
    skipped = [json.loads(line) for p in sorted(glob.glob(f"{prefix}/skipped-*.jsonl"))
               for line in open(p)]
    assert [(s["path"].rsplit("/", 1)[-1], s["stage"], s["reason"]) for s in skipped] == [
        ("broken.jpg", "decode", "not_an_image")]


def test_version_plan_is_seeded_by_seed_and_path():
    spec = TrainingSetSpec(per_image=3, levels=(2, 4), seed=0)
    sources = [f"gs://bucket/photo{i}.jpg" for i in range(8)]
    plans = [plan_versions(s, spec) for s in sources]
    assert plans == [plan_versions(s, TrainingSetSpec(per_image=3, levels=(2, 4), seed=0)) for s in sources]
    assert plans != [plan_versions(s, TrainingSetSpec(per_image=3, levels=(2, 4), seed=1)) for s in sources]
    assert len({tuple(p) for p in plans}) > 1
    for plan in plans:
        kinds = [name for name, _ in plan]
        assert len(set(kinds)) == 3 and [lvl for _, lvl in plan] == [2, 4] * 3
    with pytest.raises(GrepqError, match="Did you mean jpeg"):
        TrainingSetSpec(distortions=("jpg",), per_image=1)


@pytest.mark.parametrize("grid, fragment", [(7, 32), (3, 32), (1, 96)])
def test_views_share_positions_across_versions(training_set, grid, fragment):
    """Every version of a photo is cut at the same fragment positions (version k = reference + 10k shows it)."""
    _, prefix = training_set
    reference = torch.from_numpy(load_record(prefix, read_index(prefix)[0]).versions[0]).permute(2, 0, 1)
    reference = reference.clamp(max=200)
    versions = torch.stack([reference + 10 * k for k in range(3)])[None]
    anchor, second = qacl_views(versions, torch.Generator().manual_seed(0), grid, fragment)
    side = fragment * grid
    assert anchor.shape == second.shape == (1, 3, 3, side, side)
    for view in (anchor, second):
        for k in range(3):
            assert torch.equal(view[0, k], view[0, 0] + 10 * k)
    assert not torch.equal(anchor, second)


def test_make_training_set_ladder_gives_a_type_other_levels(tmp_path):
    """--ladder jpeg=...: the records' JPEG versions are at the ladder's qualities, not the registered ones."""
    from grepq_core.training.data import derived_seed
    from grepq_core.training.distortions import apply_distortion

    Image.fromarray(photo("astronaut", width=300)).save(tmp_path / "astronaut.png")
    prefix = str(tmp_path / "set")
    make_training_set.run(["--input", str(tmp_path / "*.png"), "--output", prefix, "--distortions", "jpeg",
                           "--per-image", "1", "--levels", "1,5", "--size", "224", "--ladder", "jpeg=90,60,35,15,5"])
    [row] = read_index(prefix)
    record = load_record(prefix, row)
    assert record.names == ["reference", "jpeg:1", "jpeg:5"]
    for version, level in zip(record.versions[1:], (1, 5)):
        expected = apply_distortion(record.versions[0], "jpeg", level, derived_seed(0, record.source, "jpeg"),
                                    ladder=(90, 60, 35, 15, 5))
        np.testing.assert_array_equal(version, expected)
    assert not np.array_equal(record.versions[1], apply_distortion(record.versions[0], "jpeg", 1))
    with pytest.raises(GrepqError, match="--ladder` takes NAME=P1"):
        make_training_set.run(["--input", str(tmp_path / "*.png"), "--output", prefix, "--ladder", "jpeg=high"])


def test_qacl_training_lowers_the_loss(training_set, tmp_path):
    _, prefix = training_set
    out = tmp_path / "ll.pt"
    train_ll_cli.run(["--data", prefix, "--output", str(out), "--arch", "resnet18-w8", "--epochs", "6",
                      "--batch-size", "3", "--lr", "1e-3", "--seed", "0", "--device", "cpu", "--workers", "0",
                      "--no-progress"])
    log = _log(tmp_path / "ll.log.jsonl")
    assert [line["step"] for line in log] == list(range(1, 7))
    losses = [line["loss"] for line in log]
    assert np.isfinite(losses).all() and np.mean(losses[-2:]) < np.mean(losses[:2])
    lrs = [line["lr"] for line in log]
    assert lrs[0] == 1e-3 and all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] > 1e-6

    # The same views before and after training; the run starts from torch.manual_seed(seed).
    trained, identity = load_ll_encoder(str(out))
    assert identity.startswith("ll:resnet18-w8@")
    torch.manual_seed(0)
    start = create_ll_encoder("resnet18-w8")
    records = [load_record(prefix, row) for row in read_index(prefix)]
    versions = torch.stack([torch.from_numpy(r.versions).permute(0, 3, 1, 2) for r in records])
    fsim = torch.stack([torch.from_numpy(r.fsim) for r in records])
    with torch.no_grad():
        before, after = (np.mean([qacl_batch_loss(encoder.train(), versions, fsim, torch.Generator().manual_seed(s))
                                  .item() for s in range(2)]) for encoder in (start, trained))
    assert after < 0.9 * before


def test_resume_reaches_the_uninterrupted_state(training_set, tmp_path):
    _, prefix = training_set
    full = train_ll(prefix, str(tmp_path / "full.pt"), _TINY, device="cpu")
    train_ll(prefix, str(tmp_path / "part.pt"), _TINY, device="cpu", max_steps=3)
    assert _log(tmp_path / "part.log.jsonl") == _log(tmp_path / "full.log.jsonl")[:3]
    resumed = train_ll(prefix, str(tmp_path / "resumed.pt"), _TINY, device="cpu", resume=str(tmp_path / "part.pt"))
    assert _log(tmp_path / "resumed.log.jsonl") == _log(tmp_path / "full.log.jsonl")
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(GrepqError, match="lr"):
        train_ll(prefix, str(tmp_path / "other.pt"), LLTrainConfig(arch="resnet18-w8", epochs=2, batch=2, lr=1e-4),
                 device="cpu", resume=str(tmp_path / "part.pt"))


def test_the_across_photo_term_trains_with_qacl_and_resumes_with_its_head(training_set, tmp_path):
    """--across adds the term to the loss and logs both parts; its head is saved with the state, so a resumed
    run matches the uninterrupted one; without it the log and weights are QACL's alone."""
    _, prefix = training_set
    across = LLTrainConfig(**{**_TINY.__dict__, "across": 0.5, "epochs": 4})
    full = train_ll(prefix, str(tmp_path / "full.pt"), across, device="cpu")
    log = _log(tmp_path / "full.log.jsonl")
    assert all(line["loss"] == pytest.approx(line["qacl"] + 0.5 * line["across"]) for line in log)
    train_ll(prefix, str(tmp_path / "part.pt"), across, device="cpu", max_steps=3)
    resumed = train_ll(prefix, str(tmp_path / "resumed.pt"), across, device="cpu", resume=str(tmp_path / "part.pt"))
    assert _log(tmp_path / "resumed.log.jsonl") == log
    assert parameters_digest(resumed) == parameters_digest(full)
    assert load_checkpoint(str(tmp_path / "full.pt"))["meta"]["trained"] == "qacl+across"

    plain = train_ll(prefix, str(tmp_path / "plain.pt"), _TINY, device="cpu")
    assert set(_log(tmp_path / "plain.log.jsonl")[0]) == {"step", "epoch", "loss", "lr"}
    assert "head" not in load_checkpoint(str(tmp_path / "plain.state.pt"))
    assert parameters_digest(plain) != parameters_digest(train_ll(prefix, str(tmp_path / "other.pt"), LLTrainConfig(
        **{**_TINY.__dict__, "across": 0.5}), device="cpu"))


def test_init_fine_tunes_existing_weights(training_set, tmp_path):
    """--init starts from given weights (a checkpoint or the shipped model) and trains on from there."""
    _, prefix = training_set
    trained = str(tmp_path / "trained.pt")
    train_ll(prefix, trained, _TINY, device="cpu")
    tuned_config = LLTrainConfig(**{**_TINY.__dict__, "init": trained})
    start = train_ll(prefix, str(tmp_path / "start.pt"), tuned_config, device="cpu", max_steps=0)
    assert parameters_digest(start) == load_ll_encoder(trained)[1].split("@")[1]
    train_ll(prefix, str(tmp_path / "tuned.pt"), tuned_config, device="cpu", max_steps=1)
    assert load_ll_encoder(str(tmp_path / "tuned.pt"))[1] != load_ll_encoder(trained)[1]  # it trained on
    assert load_checkpoint(str(tmp_path / "tuned.pt"))["meta"]["config"]["init"] == trained

    with pytest.raises(GrepqError, match="resnet18-w8 encoder; `arch` is resnet18-w16"):
        train_ll(prefix, str(tmp_path / "other.pt"), LLTrainConfig(arch="resnet18-w16", init=trained), device="cpu")
    Path(trained).unlink()  # a resumed run takes its weights from its own checkpoint, not from --init
    train_ll(prefix, str(tmp_path / "tuned.pt"), tuned_config, device="cpu", resume=str(tmp_path / "tuned.pt"))

    shipped = train_ll(prefix, str(tmp_path / "shipped.pt"), LLTrainConfig(arch="resnet18-w32", init="shipped"),
                       device="cpu", max_steps=0)
    assert parameters_digest(shipped) == load_ll_encoder("shipped")[1].split("@")[1]


def test_several_training_sets_train_as_one(training_set, tmp_path):
    """Sets made with other seeds add records; sets of another K are refused by name."""
    photos, prefix = training_set
    reseeded, wider = str(tmp_path / "reseeded"), str(tmp_path / "wider")
    make_training_set.run(["--input", str(photos / "*.jpg"), "--output", reseeded, *_SPEC_FLAGS[:-1], "4"])
    assert [load_record(reseeded, r).names for r in read_index(reseeded)] != [
        load_record(prefix, r).names for r in read_index(prefix)]
    out = tmp_path / "both.pt"
    train_ll_cli.run(["--data", prefix, "--data", reseeded, "--output", str(out), "--arch", "resnet18-w8",
                      "--epochs", "2", "--batch-size", "2", "--grid", "3", "--device", "cpu", "--workers", "0",
                      "--no-progress"])
    assert len(_log(tmp_path / "both.log.jsonl")) == 2 * 3  # 6 records in batches of 2, two epochs
    assert load_checkpoint(str(out))["meta"]["data"] == [prefix, reseeded]

    make_training_set.run(["--input", str(photos / "astronaut.jpg"), "--output", wider, "--per-image", "3",
                           "--levels", "2,4", "--size", "224"])
    with pytest.raises(GrepqError, match="same `per_image`, `levels` and `size`"):
        train_ll([prefix, wider], str(tmp_path / "mixed.pt"), _TINY, device="cpu")


def test_gcl_fine_tunes_only_the_image_tower(photos_dir, tmp_path):
    config = tiny_clip_config_path(tmp_path, "RN")
    start, _ = tiny_hl_encoder(tmp_path, "RN", seed=0)
    save_hl_checkpoint(start, str(tmp_path / "start.pt"), config)
    out = tmp_path / "hl.pt"
    train_hl.run(["--input", str(photos_dir / "*"), "--output", str(out), "--hl-model", config,
                  "--hl-weights", str(tmp_path / "start.pt"), "--epochs", "2", "--batch-size", "4", "--tau-g", "2",
                  "--lr", "1e-3", "--device", "cpu", "--workers", "0", "--no-progress"])
    log = _log(tmp_path / "hl.log.jsonl")
    assert [line["step"] for line in log] == [1, 2]
    assert [line["lr"] for line in log] == pytest.approx([1e-3 / 2.5, 2e-3 / 2.5])  # 6 photos: 1 step per epoch
    tuned, identity = build_hl_encoder(config, str(out))
    assert identity.startswith("hl:grepq-tiny-rn:checkpoint@")
    assert torch.equal(tuned.text_features, start.text_features)
    changed = [n for n, p in tuned.visual.named_parameters() if not torch.equal(p, start.visual.get_parameter(n))]
    assert changed
    x = photo_batch(tmp_path, 224, 224, V.CLIP_MEAN, V.CLIP_STD)
    with torch.no_grad():
        before, after = start.encode_image(x), tuned.encode_image(x)
    assert torch.isfinite(after).all() and not torch.allclose(before, after)
