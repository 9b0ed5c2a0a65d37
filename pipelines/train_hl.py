"""`grepq train-hl`: pristine photos -> a fine-tuned HL (CLIP) image tower (GCL, docs/method.md).

    decode + CLIP view -> per step: pseudo-labels, low/high groups, GCL, Adam -> checkpoint + log

Writes CKPT, a grepq-hl checkpoint (`--hl-model M --hl-weights CKPT` loads
it), and <CKPT>.log.jsonl; see grepq_core/training/hl.py.

The parser imports no torch, so --help is fast: its defaults are
HLTrainConfig's (grepq_core/training/configs.py).
"""
from __future__ import annotations

import argparse

from grepq_core.training.configs import HLTrainConfig
from pipelines.options import HelpFormatter

__all__ = ["run", "arg_parser"]


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq train-hl", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("--input", action="append", required=True,
                        help="glob of pristine photos (local or fsspec URL); repeatable")
    parser.add_argument("--output", required=True, help="checkpoint path or URL (e.g. hl.pt)")
    c = HLTrainConfig
    parser.add_argument("--hl-model", default=c.model, help="open_clip architecture name or model-config JSON path")
    parser.add_argument("--hl-weights", default=c.weights,
                        help="start weights: open_clip pretrained tag, a checkpoint path/URL, or 'none'")
    parser.add_argument("--epochs", type=int, default=c.epochs, help="passes over the photos")
    # dest "batch": HLTrainConfig's errors name the field `batch`, which the CLI maps back to this flag.
    parser.add_argument("--batch-size", dest="batch", metavar="BATCH_SIZE", type=int, default=c.batch,
                        help="photos per step")
    parser.add_argument("--tau-g", type=int, default=c.tau_g,
                        help="each step's two groups are the batch-size/tau-g photos of lowest and of highest "
                             "pseudo-label")
    parser.add_argument("--lr", type=float, default=c.lr, help="Adam learning rate after the warm-up")
    parser.add_argument("--warmup-epochs", type=float, default=c.warmup_epochs,
                        help="epochs over which the learning rate rises linearly to --lr")
    parser.add_argument("--seed", type=int, default=c.seed,
                        help="seed of the head's initial weights and the photo order")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--max-steps", type=int, help="stop after N steps")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0: in the main process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(argv=None):
    args = arg_parser().parse_args(argv)  # first, so that a flag error needs no heavy import
    from grepq_core.training.data import list_images
    from grepq_core.training.hl import train_hl

    images = list_images(args.input)
    config = HLTrainConfig(model=args.hl_model, weights=args.hl_weights, epochs=args.epochs, batch=args.batch,
                           tau_g=args.tau_g, lr=args.lr, warmup_epochs=args.warmup_epochs, seed=args.seed)
    train_hl(images, args.output, config, device=args.device, max_steps=args.max_steps, workers=args.workers,
             progress=not args.no_progress)
    print(f"HL encoder ({args.hl_model}) -> {args.output}")
