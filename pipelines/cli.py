"""The `grepq` command: one subcommand per pipeline, each a thin call into run()."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grepq_core.errors import GrepqError
from pipelines.options import FLAG_GROUPS

__all__ = ["main", "COMMANDS"]

# name -> (module with run(argv), flag groups shown in --help, one-line summary)
COMMANDS = {
    "extract": ("pipelines.extract", ("io", "encoders", "views"), "images -> Parquet features + dead letters"),
    "fit": ("pipelines.fit", ("io", "fit"), "fit the ridge regressor on a few labelled images"),
    "score": ("pipelines.score", ("io", "score"), "score feature rows (ridge, or zero-shot without --model)"),
    "run": ("pipelines.run_all", ("io", "encoders", "views", "fit", "score"), "extract, fit if labelled, score"),
}

_BEAM_NOTE = ("Any other flag goes to Beam, e.g. --runner DataflowRunner --project P --region R "
              "--temp_location gs://... (see docs/dataflow.md).")


def _help_parser(name: str) -> argparse.ArgumentParser:
    module, groups, summary = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"grepq {name}", description=summary, epilog=_BEAM_NOTE)
    for group in groups:
        FLAG_GROUPS[group](parser)
    return parser


def _labels_alias(argv: list[str]) -> list[str]:
    """`--labels X` is grepq's label file; Beam's own --labels is spelt differently here."""
    return ["--label-csv" + a[len("--labels"):] if a == "--labels" or a.startswith("--labels=") else a
            for a in argv]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(prog="grepq", description=(
        "Tell good images from bad ones without a reference (GRepQ), at collection scale."))
    top.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND",
                     help="; ".join(f"{n}: {c[2]}" for n, c in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    top.parse_args(argv[:1])
    name, rest = argv[0], argv[1:]
    if "fit" in COMMANDS[name][1]:
        rest = _labels_alias(rest)
    if "-h" in rest or "--help" in rest:
        _help_parser(name).print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        importlib.import_module(COMMANDS[name][0]).run(rest)
    except GrepqError as e:
        print(f"grepq {name}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
