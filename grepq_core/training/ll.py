"""Training the LL encoder with the quality-aware contrastive loss (QACL).

docs/method.md, "Training the LL encoder". Each step takes a batch of photos from
a training set (data.py), each with K versions and their FSIM matrix A:

- anchor view: fragments of all K versions at one set of random positions;
- second view: fragments at independent positions, then flipped
  horizontally and vertically at random (p = 0.5 each), one flip for all K
  versions of a photo (as the reference, which flips the stacked versions);
- both views, ImageNet-normalised, go through the encoder in two passes
  and ``qacl_loss(f, g, A, tau)`` is minimised with AdamW, the learning
  rate decaying along a cosine from `lr` to `min_lr` over all the run's steps;
- with ``across`` > 0, ``across`` times the across-photo term is added: a
  linear head, trained with the encoder and thrown away after, scores both
  views of every version in the batch, and its scores must rise with each
  version's FSIM to its own reference (``across_photo_loss``), so versions
  of different photos are put on one scale.

Reproducibility: the encoder is initialised under ``torch.manual_seed(seed)``,
or from ``init`` (e.g. "shipped": fine-tuning on one's own photos);
epoch e's photo order and step s's views come from generators seeded with
(seed, e) and (seed, s). A run is thus a function of its config and data
(bitwise on CPU), and resuming from the checkpoint of step s replays steps
s+1, s+2, ... of the uninterrupted run.

Deviations from the reference code: inputs are ImageNet-normalised (the
reference feeds [0, 1]) because that is what grepq's extractor feeds the
encoder; the reference's periodic LR-decay hook (factor 1.0, a no-op) is
dropped. On CUDA the forward passes run under bf16 autocast with
channels_last; on CPU in fp32.

Files written for ``output`` = CKPT (a path or fsspec URL), at every
checkpoint and at the end:

    CKPT             the encoder (`save_ll_checkpoint`; meta: step, epoch, config)
    <CKPT>.state.pt  step, optimizer and scheduler state, the across-photo head (``weights_only`` loadable)
    <CKPT>.log.jsonl one line per step so far: step, epoch, loss, lr (and, with ``across``, the two terms:
                     qacl, across)

where <CKPT> is CKPT without a trailing ``.pt``.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict

import fsspec
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from grepq_core.errors import GrepqError
from grepq_core.model import views as V
from grepq_core.model.devices import resolve_device
from grepq_core.model.ll_encoder import LLEncoder, create_ll_encoder, load_ll_encoder, save_ll_checkpoint
from grepq_core.model.weights import load_checkpoint, save_checkpoint
from grepq_core.training.configs import LLTrainConfig
from grepq_core.training.data import derived_seed, load_record, read_index
from grepq_core.training.losses import across_photo_loss, qacl_loss

__all__ = [
    "STATE_FORMAT",
    "batch_losses",
    "qacl_batch_loss",
    "qacl_views",
    "sibling_path",
    "train_ll",
]

STATE_FORMAT = "grepq-ll-train-state/1"
log = logging.getLogger(__name__)


def sibling_path(checkpoint: str, suffix: str) -> str:
    """A file next to `checkpoint`: its name without ``.pt``, plus `suffix`."""
    return checkpoint.removesuffix(".pt") + suffix


def qacl_views(versions: torch.Tensor, generator: torch.Generator,
               grid: int = 7, fragment: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor and flipped second view of ``[B, K, 3, H, W]`` uint8 versions, each ``[B, K, 3, gf, gf]``
    for a `grid` g of `fragment` f crops (7 of 32: 224x224, docs/method.md).

    Positions and flips are drawn on the CPU `generator`, so the views do not
    depend on the device `versions` lives on.
    """
    height, width = versions.shape[-2:]

    def cut(photo: torch.Tensor) -> torch.Tensor:
        positions = V.fragment_positions(height, width, grid, fragment, generator=generator)
        return V.fragments(photo, size=fragment, positions=positions)

    anchors, seconds = [], []
    for photo in versions:
        anchors.append(cut(photo))
        second = cut(photo)
        flip_h, flip_v = (torch.rand(2, generator=generator) < 0.5).tolist()
        dims = [d for d, flip in ((-1, flip_h), (-2, flip_v)) if flip]
        seconds.append(second.flip(dims) if dims else second)
    return torch.stack(anchors), torch.stack(seconds)


def _view_features(encoder: LLEncoder, versions: torch.Tensor, generator: torch.Generator, grid: int,
                   fragment: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LL features ``[B, K, D]`` of the anchor and the second view (`qacl_views`) of each version."""
    anchor, second = qacl_views(versions, generator, grid, fragment)
    batch, k = anchor.shape[:2]
    cuda = versions.device.type == "cuda"
    features = []
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        for view in (anchor, second):
            x = encoder.normalization(view.flatten(0, 1))
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            features.append(encoder(x).float().view(batch, k, -1))
    return features[0], features[1]


def qacl_batch_loss(
    encoder: LLEncoder,
    versions: torch.Tensor,
    fsim: torch.Tensor,
    generator: torch.Generator,
    tau: float = 0.5,
    grid: int = 7,
    fragment: int = 32,
) -> torch.Tensor:
    """QACL of one batch: versions ``[B, K, 3, H, W]`` uint8 and FSIM ``[B, K, K]`` on the encoder's device."""
    f, g = _view_features(encoder, versions, generator, grid, fragment)
    return qacl_loss(f, g, fsim.float(), tau)


def batch_losses(encoder: LLEncoder, head: nn.Module | None, versions: torch.Tensor, fsim: torch.Tensor,
                 generator: torch.Generator, config: LLTrainConfig) -> dict[str, torch.Tensor]:
    """The terms of one step: ``qacl``, and with a `head` ``across`` (the across-photo term on both views,
    the quality of version k being its FSIM to the reference, ``fsim[:, k, 0]``); ``loss`` is
    qacl + config.across * across."""
    f, g = _view_features(encoder, versions, generator, config.grid, config.fragment)
    terms = {"qacl": qacl_loss(f, g, fsim.float(), config.tau)}
    loss = terms["qacl"]
    if head is not None:
        quality = fsim[:, :, 0].float().reshape(-1)
        scores = head(torch.cat([f.flatten(0, 1), g.flatten(0, 1)])).squeeze(-1)
        terms["across"] = across_photo_loss(scores, torch.cat([quality, quality]))
        loss = loss + config.across * terms["across"]
    return {"loss": loss, **terms}


class _Records(Dataset):
    """(prefix, index row) pairs -> (versions ``[K, 3, S, S]`` uint8, FSIM ``[K, K]`` float32), read on demand."""

    def __init__(self, rows: list[tuple[str, dict]]):
        shapes = {(len(r["names"]), *r["size"]) for _, r in rows}
        if len(shapes) != 1:
            raise GrepqError(f"the training records mix different K or size {sorted(shapes)}: "
                             "make every training set with the same `per_image`, `levels` and `size`")
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index: int):
        record = load_record(*self.rows[index])
        versions = torch.from_numpy(np.ascontiguousarray(record.versions.transpose(0, 3, 1, 2)))
        return versions, torch.from_numpy(record.fsim.astype(np.float32))


def _cosine(config: LLTrainConfig, total_steps: int):
    """LambdaLR factor: lr * factor(s) falls from `lr` to `min_lr` along a cosine over `total_steps`."""
    floor = config.min_lr / config.lr

    def factor(step: int) -> float:
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return factor


def _step_batches(n: int, config: LLTrainConfig, first_step: int, stop: int) -> list[list[int]]:
    """Photo indices of steps first_step+1 .. stop; epoch e shuffles with seed (seed, "order", e)."""
    per_epoch = math.ceil(n / config.batch)
    batches = []
    for epoch in range(first_step // per_epoch, math.ceil(stop / per_epoch)):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(config.seed, "order", epoch)))
        batches.extend(b.tolist() for b in order.split(config.batch))
    start = first_step - (first_step // per_epoch) * per_epoch
    return batches[start : start + stop - first_step]


def _start_from(encoder: LLEncoder, config: LLTrainConfig) -> None:
    """Copy the weights of `config.init` into `encoder`, which must be of the same architecture."""
    start, identity = load_ll_encoder(config.init)
    arch = identity.removeprefix("ll:").split("@")[0]
    if arch != config.arch:
        raise GrepqError(f"`init` {config.init} is a {arch} encoder; `arch` is {config.arch}")
    encoder.load_state_dict(start.state_dict())
    log.info("starting from %s (%s)", config.init, identity)


def _restore(resume: str, encoder, head, optimizer, scheduler, config: LLTrainConfig, n_records: int):
    """Load encoder, optimizer and scheduler from a checkpoint; return (step, log lines so far)."""
    checkpoint = load_checkpoint(resume)
    state = load_checkpoint(sibling_path(resume, ".state.pt"))
    if state.get("format") != STATE_FORMAT:
        raise GrepqError(f"{sibling_path(resume, '.state.pt')} is not a grepq LL training state")
    saved = {**asdict(LLTrainConfig()), **state["config"]}  # options added since the run take their defaults
    changed = {k: (saved[k], v) for k, v in asdict(config).items() if saved[k] != v}
    if changed:
        raise GrepqError("`resume` continues a run with the same settings; these differ (checkpoint, now): "
                         + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    if state["records"] != n_records:
        raise GrepqError(f"`resume`: the checkpoint was trained on {state['records']} records, `data` has {n_records}")
    encoder.load_state_dict(checkpoint["state_dict"])
    if head is not None:
        head.load_state_dict(state["head"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    step = state["step"]
    with fsspec.open(sibling_path(resume, ".log.jsonl"), "rt") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return step, [line for line in lines if line["step"] <= step]


def _save(output: str, encoder, head, optimizer, scheduler, config: LLTrainConfig, step: int, epoch: int,
          n_records: int, log_lines: list[dict], data: list[str]) -> None:
    meta = {"trained": "qacl" if head is None else "qacl+across", "step": step, "epoch": epoch,
            "config": asdict(config), "data": data}
    save_ll_checkpoint(encoder, output, config.arch, meta=meta)
    state = {"format": STATE_FORMAT, "step": step, "records": n_records, "config": asdict(config),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    if head is not None:
        state["head"] = head.state_dict()
    save_checkpoint(state, sibling_path(output, ".state.pt"))
    with fsspec.open(sibling_path(output, ".log.jsonl"), "wt") as f:
        f.writelines(json.dumps(line) + "\n" for line in log_lines)


def train_ll(
    data: str | list[str],
    output: str,
    config: LLTrainConfig = LLTrainConfig(),
    *,
    resume: str | None = None,
    device: str = "auto",
    checkpoint_every: int = 0,
    max_steps: int | None = None,
    workers: int = 0,
    progress: bool = False,
) -> LLEncoder:
    """Train an LL encoder on the training set(s) at `data`; write checkpoints to `output`.

    Several sets (e.g. the same photos made with different ``--seed``, so
    other distortion draws) train as one.
    The schedule spans ``epochs`` full passes; `max_steps` stops early (a later
    `resume` continues the same schedule). `checkpoint_every` N > 0 also saves
    every N steps. Returns the encoder in eval mode.
    """
    data = [data] if isinstance(data, str) else list(data)
    rows = [(prefix, row) for prefix in data for row in read_index(prefix)]
    dataset = _Records(rows)
    per_epoch = math.ceil(len(rows) / config.batch)
    total = config.epochs * per_epoch
    stop = total if max_steps is None else min(total, max_steps)
    target = resolve_device(device)

    torch.manual_seed(config.seed)
    encoder = create_ll_encoder(config.arch)
    if config.init and not resume:  # a resumed run takes its weights from the checkpoint
        _start_from(encoder, config)
    encoder = encoder.to(target)
    if target.type == "cuda":
        encoder = encoder.to(memory_format=torch.channels_last)
    head = nn.Linear(encoder.config["feature_dim"], 1).to(target) if config.across > 0 else None
    parameters = [*encoder.parameters(), *([] if head is None else head.parameters())]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(config, total))
    step, log_lines = 0, []
    if resume:
        step, log_lines = _restore(resume, encoder, head, optimizer, scheduler, config, len(rows))
        log.info("resumed %s at step %d of %d", resume, step, total)
    log.info("QACL: %d photos x %d versions, %d steps per epoch, %d steps", len(rows),
             len(rows[0][1]["names"]), per_epoch, total)

    encoder.train()
    loader = DataLoader(dataset, batch_sampler=_step_batches(len(rows), config, step, stop), num_workers=workers)
    bar = tqdm(total=stop, initial=step, desc="train-ll", unit="step", disable=not progress)
    for versions, fsim in loader:
        step += 1
        epoch = (step - 1) // per_epoch + 1
        lr = optimizer.param_groups[0]["lr"]
        generator = torch.Generator().manual_seed(derived_seed(config.seed, "views", step))
        terms = batch_losses(encoder, head, versions.to(target), fsim.to(target), generator, config)
        loss = terms["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        parts = {} if head is None else {name: terms[name].item() for name in ("qacl", "across")}
        log_lines.append({"step": step, "epoch": epoch, "loss": loss.item(), "lr": lr, **parts})
        bar.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch)
        bar.update()
        if checkpoint_every and step % checkpoint_every == 0 and step < stop:
            _save(output, encoder, head, optimizer, scheduler, config, step, epoch, len(rows), log_lines, data)
    bar.close()
    _save(output, encoder, head, optimizer, scheduler, config, step, (step - 1) // per_epoch + 1, len(rows),
          log_lines, data)
    return encoder.eval()
