"""`grepq train-ll`: a training set -> an LL encoder checkpoint (QACL, docs/method.md).

    read index -> per step: load records, cut views, QACL, AdamW -> checkpoint + log

Writes CKPT (the encoder, `--ll-weights CKPT` loads it), <CKPT>.state.pt
(for --resume) and <CKPT>.log.jsonl (step, epoch, loss, lr); see
grepq_core/training/ll.py.
"""
from __future__ import annotations

import argparse

from grepq_core.ll_encoder import list_ll_architectures
from grepq_core.training.ll import LLTrainConfig, train_ll

__all__ = ["run", "arg_parser"]


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq train-ll", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False)
    defaults = LLTrainConfig()
    parser.add_argument("--data", required=True, action="append",
                        help="training-set prefix written by `grepq make-training-set`; repeatable (the sets "
                             "train as one, e.g. the same photos made with different --seed)")
    parser.add_argument("--output", required=True, help="checkpoint path or URL (e.g. ll.pt)")
    parser.add_argument("--arch", default=defaults.arch, choices=list_ll_architectures(),
                        help=f"LL architecture (default {defaults.arch})")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch", type=int, default=defaults.batch, help="photos per step (each gives K fragments)")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--min-lr", type=float, default=defaults.min_lr, help="end of the cosine decay")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--tau", type=float, default=defaults.tau, help="QACL temperature")
    parser.add_argument("--grid", type=int, default=defaults.grid,
                        help=f"views are a grid x grid of fragments (default {defaults.grid}: 224x224 with 32x32 "
                             "fragments; 3 gives 96x96 views, the zero-shot patch size, at a fifth of the cost)")
    parser.add_argument("--fragment", type=int, default=defaults.fragment,
                        help=f"side of each fragment (default {defaults.fragment}); --grid 1 --fragment 96 gives "
                             "single seamless crops the size of the zero-shot patches")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--init", help="start from these LL weights instead of a random encoder: 'shipped', a "
                                       "checkpoint path or URL of the same --arch (fine-tuning on one's own photos)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--resume", help="continue from this checkpoint (same flags as the run that wrote it)")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="also checkpoint every N steps (0: end only)")
    parser.add_argument("--max-steps", type=int, help="stop after N steps (the schedule still spans --epochs)")
    parser.add_argument("--workers", type=int, default=2, help="record-loading processes (0: in the main process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(argv=None):
    args = arg_parser().parse_args(argv)
    config = LLTrainConfig(arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr, min_lr=args.min_lr,
                           weight_decay=args.weight_decay, tau=args.tau, grid=args.grid,
                           fragment=args.fragment, seed=args.seed, init=args.init)
    train_ll(args.data, args.output, config, resume=args.resume, device=args.device,
             checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, workers=args.workers,
             progress=not args.no_progress)
    print(f"LL encoder -> {args.output}")
