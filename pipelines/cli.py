"""The `grepq` command: one subcommand per pipeline, each a thin call into run().

Every subcommand module has `run(argv)` and `arg_parser()` (what --help shows).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from grepq_core.errors import GrepqError, found_in
from pipelines.options import flag_message
from transforms.runs import grepq_version

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line summary)
COMMANDS = {
    "extract": ("pipelines.extract", "images -> Parquet features + dead letters"),
    "fit": ("pipelines.fit", "fit the ridge regressor on a few labelled images"),
    "score": ("pipelines.score", "score feature rows (ridge, or zero-shot without --model)"),
    "run": ("pipelines.run_all", "extract, fit when labels are given, score, write the report"),
    "compact": ("pipelines.compact", "merge an output's many small shards into few large ones, atomically"),
    "filter": ("pipelines.filtering", "a scored collection -> the kept samples as shards / Parquet, as they came in"),
    "make-training-set": ("pipelines.make_training_set", "pristine photos -> graded versions + FSIM matrices"),
    "train-ll": ("pipelines.train_ll", "train the low-level encoder (quality-aware contrastive loss)"),
    "train-hl": ("pipelines.train_hl", "fine-tune the CLIP image tower (group contrastive loss)"),
    "build-pristine": ("pipelines.build_pristine", "pristine photos -> pristine model for zero-shot LL"),
    "report": ("pipelines.report", "one self-contained HTML page of a scoring run's results"),
    "suggest-labels": ("pipelines.suggest_labels", "which images to label first (a CSV to fill in)"),
    "evaluate": ("pipelines.evaluate", "SRCC/PLCC/KRCC on an IQA dataset, zero-shot and few-shot, with baselines"),
}


def _user_error(error: BaseException) -> GrepqError | OSError | None:
    """The GrepqError behind `error`, else the I/O error (OSError) behind it, if any."""
    return found_in(error, GrepqError) or found_in(error, OSError)


class _UserErrorsOnce(logging.Filter):
    """Drops Beam's logged traceback of a user or I/O error raised in a pipeline: the command prints it, in one
    line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("apache_beam") and record.exc_info
                    and _user_error(record.exc_info[1]) is not None)


def _logging(rest: list[str]) -> list[str]:
    """Set up logging from --verbose / --log-level LEVEL (any command), and return the other arguments.

    By default grepq's own lines (INFO) and everyone's warnings and errors,
    with timestamps; --verbose adds Beam's and the other libraries' INFO lines.
    """
    level, out, args = None, [], iter(rest)
    for arg in args:
        if arg == "--verbose":
            level = level or "INFO"
        elif arg == "--log-level" or arg.startswith("--log-level="):
            level = (arg.split("=", 1)[1] if "=" in arg else next(args, "INFO")).upper()
        else:
            out.append(arg)
    logging.basicConfig(level=level or "WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_UserErrorsOnce())
    for package in ("grepq_core", "transforms", "pipelines"):
        logging.getLogger(package).setLevel(level or "INFO")
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    width = max(map(len, COMMANDS))
    top = argparse.ArgumentParser(
        prog="grepq", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tell good images from bad ones without a reference (GRepQ), at collection scale.",
        epilog="commands:\n" + "\n".join(f"  {n:<{width}}  {c[1]}" for n, c in COMMANDS.items())
        + "\n\n`grepq COMMAND --help` shows a command's flags. Every command also takes --verbose "
        "(Beam's and other libraries' INFO lines too) and --log-level LEVEL.")
    top.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of the commands below")
    top.add_argument("--version", action="version", version=f"grepq {grepq_version()}")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] == "--version":
        print(f"grepq {grepq_version()}")
        return 0
    top.parse_args(argv[:1])
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    if "-h" in rest or "--help" in rest:
        module.arg_parser().print_help()
        return 0
    rest = _logging(rest)
    try:
        module.run(rest)
    except SystemExit as e:  # argparse has printed the usage and the error
        return e.code
    except KeyboardInterrupt:  # Ctrl-C: what a run wrote is uncommitted, and the next run clears it
        print(f"grepq {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a user's mistake is one line; a bug keeps its traceback
        user = _user_error(e)
        if user is None:
            raise
        message = str(user) if isinstance(user, GrepqError) else f"{user.strerror or user}: {user.filename or ''}"
        message = message.rstrip(": ")
        message = re.sub(r"\s*\[while running '[^']*'\]$", "", message.splitlines()[0])
        print(f"grepq {name}: error: {flag_message(message, module.arg_parser())}", file=sys.stderr)
        return getattr(user, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
