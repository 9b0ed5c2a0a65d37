"""`grepq train-ll`: a training set -> an LL encoder checkpoint (QACL, docs/method.md).

    read index -> per step: load records, cut views, QACL, AdamW -> checkpoint + log

Writes CKPT (the encoder, `--ll-weights CKPT` loads it), <CKPT>.state.pt
(for --resume) and <CKPT>.log.jsonl (step, epoch, loss, lr); see
grepq_core/training/ll.py.

The parser imports no torch, so --help is fast: its defaults are
LLTrainConfig's (grepq_core/training/configs.py) and its --arch choices
are read from the architecture registry file.
"""
from __future__ import annotations

import argparse
import json
from importlib import resources

from grepq_core.training.configs import LLTrainConfig
from pipelines.options import HelpFormatter

__all__ = ["run", "arg_parser"]


def _architectures() -> list[str]:
    """The registered LL architectures (what grepq_core.ll_encoder.list_ll_architectures returns), without torch."""
    return list(json.loads((resources.files("grepq_core.model") / "configs" / "ll_encoders.json").read_text()))


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq train-ll", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, action="append",
                        help="training-set prefix written by `grepq make-training-set`; repeatable (the sets "
                             "train as one, e.g. the same photos made with different --seed)")
    parser.add_argument("--output", required=True, help="checkpoint path or URL (e.g. ll.pt)")
    c = LLTrainConfig
    parser.add_argument("--arch", default=c.arch, choices=_architectures(), help="LL architecture")
    parser.add_argument("--epochs", type=int, default=c.epochs, help="passes over the training set")
    # dest "batch": LLTrainConfig's errors name the field `batch`, which the CLI maps back to this flag.
    parser.add_argument("--batch-size", dest="batch", metavar="BATCH_SIZE", type=int, default=c.batch,
                        help="photos per step (each gives K fragments)")
    parser.add_argument("--lr", type=float, default=c.lr, help="AdamW learning rate at the start of the cosine decay")
    parser.add_argument("--min-lr", type=float, default=c.min_lr, help="learning rate at the end of the cosine decay")
    parser.add_argument("--weight-decay", type=float, default=c.weight_decay, help="AdamW weight decay")
    parser.add_argument("--tau", type=float, default=c.tau, help="QACL temperature")
    parser.add_argument("--grid", type=int, default=c.grid,
                        help="views are a grid x grid of fragments (7: 224x224 with 32x32 fragments; 3 gives "
                             "96x96 views, the zero-shot patch size, at a fifth of the cost)")
    parser.add_argument("--fragment", type=int, default=c.fragment,
                        help="side of each fragment; --grid 1 --fragment 96 gives single seamless crops the size "
                             "of the zero-shot patches")
    parser.add_argument("--seed", type=int, default=c.seed, help="seed of the initial weights, photo order and views")
    parser.add_argument("--init", default=c.init,
                        help="start from these LL weights instead of a random encoder: 'shipped', a "
                             "checkpoint path or URL of the same --arch (fine-tuning on one's own photos)")
    parser.add_argument("--across", type=float, default=c.across,
                        help="weight of the across-photo term beside QACL: a linear head on the features must "
                             "rank the versions of all photos in a batch by their FSIM to their own reference "
                             "(0: QACL alone)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--resume", help="continue from this checkpoint (same flags as the run that wrote it)")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="also checkpoint every N steps (0: end only)")
    parser.add_argument("--max-steps", type=int, help="stop after N steps (the schedule still spans --epochs)")
    parser.add_argument("--workers", type=int, default=2, help="record-loading processes (0: in the main process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(argv=None):
    args = arg_parser().parse_args(argv)  # first, so that a flag error needs no heavy import
    from grepq_core.training.ll import train_ll

    config = LLTrainConfig(arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr, min_lr=args.min_lr,
                           weight_decay=args.weight_decay, tau=args.tau, grid=args.grid,
                           fragment=args.fragment, seed=args.seed, init=args.init,
                           across=args.across)
    train_ll(args.data, args.output, config, resume=args.resume, device=args.device,
             checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, workers=args.workers,
             progress=not args.no_progress)
    print(f"LL encoder -> {args.output}")
