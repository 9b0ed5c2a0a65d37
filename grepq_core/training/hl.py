"""Fine-tuning the HL encoder with the group contrastive loss (GCL).

docs/method.md, "Fine-tuning the HL encoder". Each step takes a batch of
pristine photos (CLIP view: shortest side to 224, centre crop), embeds them
with the image tower being trained, and:

- pseudo-labels each from the current embedding and the frozen prompt
  embeddings, q = sigmoid((cos(e, t_good) - cos(e, t_bad)) / 0.1);
- takes the batch/tau_g lowest and highest q as two groups;
- maps the embeddings through a projection head (1024 -> 128, ReLU) and
  minimises ``gcl_loss`` between the two groups (temperature 0.5).

Only the image tower and the head train (Adam, learning rate rising
linearly over the first `warmup_epochs`, then constant); the prompt
embeddings stay frozen and the head is thrown away: the output is a
``grepq-hl/1`` checkpoint that `build_hl_encoder(model, weights=CKPT)`
loads. Like the reference, the tower trains in train mode (its BatchNorm
layers use and update batch statistics), epochs drop the last partial
batch, and every batch is a fresh shuffle seeded with (seed, epoch).

Deviations from the reference code: the head's parameters are optimised
with the tower's (the reference's optimizer holds only the tower, leaving
its head at its random start); the CLIP view resizes before the centre crop
(the reference crops 224 pixels at native resolution); photos are decoded
once up front and kept as 224x224 uint8 (150 KB each).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict

import fsspec
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from grepq_core.errors import GrepqError, ImageError
from grepq_core.images.decode import load_image
from grepq_core.model import views as V
from grepq_core.model.devices import resolve_device
from grepq_core.model.hl_encoder import HLEncoder, build_hl_encoder, save_hl_checkpoint
from grepq_core.training.configs import HLTrainConfig
from grepq_core.training.data import derived_seed
from grepq_core.training.ll import sibling_path
from grepq_core.training.losses import ProjectionHead, gcl_loss, prompt_pseudo_labels, select_groups

__all__ = ["gcl_batch_loss", "load_clip_views", "train_hl"]

log = logging.getLogger(__name__)


class _ClipViews(Dataset):
    """path -> CLIP view ``[3, size, size]`` uint8, or None for an unusable image."""

    def __init__(self, paths: list[str], size: int):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return V.clip_view(V.to_tensor(load_image(self.paths[index])), self.size).clone()
        except ImageError as e:
            log.warning("skipped %s: %s", self.paths[index], e)
            return None


def load_clip_views(paths: list[str], size: int = 224, workers: int = 0) -> torch.Tensor:
    """The CLIP views of all decodable images as ``[N, 3, size, size]`` uint8; bad images are skipped."""
    loader = DataLoader(_ClipViews(paths, size), batch_size=None, num_workers=workers)
    views = [v for v in loader if v is not None]
    if len(views) < len(paths):
        log.warning("skipped %d of %d images that could not be decoded", len(paths) - len(views), len(paths))
    if not views:
        raise GrepqError("none of the `input` images could be decoded")
    return torch.stack(views)


def gcl_batch_loss(encoder: HLEncoder, head: ProjectionHead, views: torch.Tensor,
                   config: HLTrainConfig) -> torch.Tensor:
    """GCL of one batch of CLIP views ``[N, 3, S, S]`` uint8 on the encoder's device."""
    x = encoder.normalization(views)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=views.device.type == "cuda"):
        embedding = encoder.encode_image(x).float()
    q = prompt_pseudo_labels(embedding.detach(), encoder.text_features, config.label_temperature)
    low, high = select_groups(q, config.tau_g)
    return gcl_loss(head(embedding), low, high, config.temperature)


def train_hl(
    images: list[str],
    output: str,
    config: HLTrainConfig = HLTrainConfig(),
    *,
    device: str = "auto",
    max_steps: int | None = None,
    workers: int = 0,
    progress: bool = False,
) -> HLEncoder:
    """Fine-tune the HL image tower on the pristine photos `images`; write a grepq-hl checkpoint to `output`.

    Also writes ``<output>.log.jsonl`` (step, epoch, loss, lr per step).
    Returns the encoder in eval mode.
    """
    target = resolve_device(device)
    encoder, start_identity = build_hl_encoder(config.model, config.weights)
    encoder.to(target)
    encoder.visual.train()
    views = load_clip_views(images, config.size, workers)
    per_epoch = len(views) // config.batch
    if per_epoch == 0:
        raise GrepqError(f"`batch` {config.batch} is larger than the {len(views)} usable photos")
    total = config.epochs * per_epoch
    stop = total if max_steps is None else min(total, max_steps)
    warmup = config.warmup_epochs * per_epoch

    torch.manual_seed(config.seed)
    head = ProjectionHead(encoder.text_features.shape[1], config.head_dim).to(target).train()
    optimizer = torch.optim.Adam([*encoder.visual.parameters(), *head.parameters()], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    log.info("GCL: %d photos, %d steps per epoch, %d steps, starting from %s", len(views), per_epoch, total,
             start_identity)

    log_lines = []
    bar = tqdm(total=stop, desc="train-hl", unit="step", disable=not progress)
    for step in range(1, stop + 1):
        epoch, index = divmod(step - 1, per_epoch)
        order = torch.randperm(len(views), generator=torch.Generator().manual_seed(
            derived_seed(config.seed, "order", epoch)))
        batch = order[index * config.batch : (index + 1) * config.batch]
        lr = optimizer.param_groups[0]["lr"]
        loss = gcl_batch_loss(encoder, head, views[batch].to(target), config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        log_lines.append({"step": step, "epoch": epoch + 1, "loss": loss.item(), "lr": lr})
        bar.set_postfix(loss=f"{loss.item():.4f}", epoch=epoch + 1)
        bar.update()
    bar.close()

    encoder.eval()
    meta = {"trained": "gcl", "steps": stop, "photos": len(views), "start": start_identity,
            "config": asdict(config)}
    save_hl_checkpoint(encoder, output, config.model, meta=meta)
    with fsspec.open(sibling_path(output, ".log.jsonl"), "wt") as f:
        f.writelines(json.dumps(line) + "\n" for line in log_lines)
    return encoder
