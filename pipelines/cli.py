"""The `grepq` command: one subcommand per pipeline, each a thin call into run().

Every subcommand module has `run(argv)` and `arg_parser()` (what --help shows).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grepq_core.errors import GrepqError
from pipelines.options import flag_message

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line summary)
COMMANDS = {
    "extract": ("pipelines.extract", "images -> Parquet features + dead letters"),
    "fit": ("pipelines.fit", "fit the ridge regressor on a few labelled images"),
    "score": ("pipelines.score", "score feature rows (ridge, or zero-shot without --model)"),
    "run": ("pipelines.run_all", "extract, fit when labels are given, score, write the report"),
    "make-training-set": ("pipelines.make_training_set", "pristine photos -> graded versions + FSIM matrices"),
    "train-ll": ("pipelines.train_ll", "train the low-level encoder (quality-aware contrastive loss)"),
    "train-hl": ("pipelines.train_hl", "fine-tune the CLIP image tower (group contrastive loss)"),
    "build-pristine": ("pipelines.build_pristine", "pristine photos -> pristine model for zero-shot LL"),
    "report": ("pipelines.report", "one self-contained HTML page of a scoring run's results"),
    "suggest-labels": ("pipelines.suggest_labels", "which images to label first (a CSV to fill in)"),
    "evaluate": ("pipelines.evaluate", "SRCC/PLCC/KRCC on an IQA dataset, zero-shot and few-shot, with baselines"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(map(len, COMMANDS))
    top = argparse.ArgumentParser(
        prog="grepq", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tell good images from bad ones without a reference (GRepQ), at collection scale.",
        epilog="commands:\n" + "\n".join(f"  {n:<{width}}  {c[1]}" for n, c in COMMANDS.items())
        + "\n\n`grepq COMMAND --help` shows a command's flags.")
    top.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of the commands below")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    top.parse_args(argv[:1])
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    if "-h" in rest or "--help" in rest:
        module.arg_parser().print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        module.run(rest)
    except SystemExit as e:  # argparse has printed the usage and the error
        return e.code
    except GrepqError as e:
        print(f"grepq {name}: error: {flag_message(str(e), module.arg_parser())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
