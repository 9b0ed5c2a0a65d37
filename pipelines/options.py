"""Each command's own flags, and Beam's options for everything else.

A command's parser holds only the flags that command reads, so `grepq CMD
--help` lists exactly those, with their defaults. Whatever the parser does
not know goes to Beam (--runner, --project, --region, --temp_location,
--sdk_container_image, ...), after a check that it is one of Beam's own
options: a mistyped grepq flag stops the command ("unknown flag --ouput,
did you mean --output?") instead of being dropped with a warning.

grepq_core's errors name settings by field (`ll_weights`); `flag_message`
turns those into this command's flags (--ll-weights), so a flag is renamed
here and nowhere else. Each pathway's flags come from the settings it
declares (grepq_core/model/registry.py), with the defaults it declares.
This module imports neither Beam nor torch, so --help stays fast.
"""
from __future__ import annotations

import argparse
import contextlib
import re

from grepq_core.errors import GrepqError, did_you_mean, found_in

__all__ = ["HelpFormatter", "DEFAULT_RUNNER", "COMMAND_FLAGS", "command_parser", "parse", "beam_options",
           "encoder_spec", "flag_message", "writing_under"]

# The runner a command uses when --runner is not given: Beam's in-process
# FnApiRunner, which every grepq pipeline runs on. (Beam's DirectRunner would
# first try to download and start Prism, a runner grepq is not tested on.)
DEFAULT_RUNNER = "FnApiRunner"
_EPILOG = ("Any other flag must be one of Beam's, e.g. --runner DataflowRunner --project P --region R "
           f"--temp_location gs://... (docs/dataflow.md). Without --runner: {DEFAULT_RUNNER}, in this process.")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except where there is none to show (None, or an off switch)."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _none_or_int(text: str) -> int | None:
    return None if text.lower() in ("none", "native", "all") else int(text)


def _seconds(text: str) -> float | None:
    if text.lower() == "none":
        return None
    seconds = float(text)
    if not seconds > 0:
        raise ValueError(f"a time budget must be positive, got {text!r}")
    return seconds


def _byte_size(text: str) -> int | None:
    from grepq_core.model.settings import byte_size

    return byte_size(text)


def _input(p):
    g = p.add_argument_group("inputs (README, \"Inputs\")")
    g.add_argument("--input", action="append",
                   help="glob or brace pattern of images, WebDataset .tar shards or Parquet files (local or "
                   "gs://); repeatable")
    g.add_argument("--input-list", action="append",
                   help="a file listing inputs: one URI per line, or a CSV / Parquet with a path or url column "
                   "(or bucket and name, as a Cloud Storage inventory report); local or gs://; repeatable")
    g.add_argument("--image-column",
                   help="the column of Parquet inputs that holds the images (default: the one binary column, or "
                   "the one struct with a bytes field)")


def _extract_output(p):
    p.add_argument("--output", required=True, help="output folder (local or gs://) for features and dead letters")
    p.add_argument("--incremental", action="store_true",
                   help="add only what is new under --output: inputs whose stamp (size and modification time or "
                   "generation) is unchanged are skipped unread; of the others, images whose key and content "
                   "already have a row or a dead letter are skipped, and content that has a row under another "
                   "key is copied, not extracted")
    p.add_argument("--compact-above", type=int, default=64,
                   help="more committed shards than this: extract says to run `grepq compact`, and `grepq run "
                   "--incremental` compacts by itself")
    p.add_argument("--verify", action="store_true",
                   help="with --incremental, read and hash every input instead of trusting unchanged stamps")
    p.add_argument("--retry-dead-letters", action="store_true",
                   help="with --incremental, try again the images that earlier runs dead-lettered")
    p.add_argument("--max-dead-letter-fraction", type=float,
                   help="exit with status 3 when more than this fraction of the images read is dead-lettered "
                   "(the run's outputs are kept); off by default")
    _break_lock(p)
    p.add_argument("--progress-every", type=float, default=10.0,
                   help="seconds between progress lines when not on a terminal (local runs)")


def _break_lock(p):
    p.add_argument("--break-lock", action="store_true",
                   help="take over --output from a run that died holding its lock")


def _encoders(p):
    """The general encoder flags, then each registered pathway's own settings (grepq_core/model/registry.py)."""
    from grepq_core.model import registry

    g = p.add_argument_group("encoders")
    g.add_argument("--profile", default="fast", choices=("fast", "reference"),
                   help="fast: batched fixed-size views; reference: exactly what the authors' code computes "
                   "(whole images, every patch; docs/method.md, Profiles)")
    g.add_argument("--pathways", default=",".join(registry.names()),
                   help=f"comma-separated subset of the pathways ({', '.join(registry.names())})")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    g.add_argument("--decode", default="auto", choices=("auto", "gpu", "cpu"),
                   help="gpu: JPEGs decoded in batches where the model runs (nvJPEG on CUDA); "
                   "cpu: Pillow in the read stage; auto: gpu when CUDA is present")
    g.add_argument("--batch-size", type=int, default=32, help="images per model batch")
    g.add_argument("--large-model", action="store_true",
                   help="one model per worker machine shared by its processes (GPU workers)")
    _limits(p)
    for name in registry.names():
        pathway = registry.get(name)
        if not pathway.settings:
            continue
        group = p.add_argument_group(f"{pathway.title or name} pathway")
        for s in pathway.settings:
            # Absent unless given (SUPPRESS), so that a profile's fixed values are not overridden by defaults.
            fixed = "".join(f"; the {prof} profile fixes {v}" for prof, v in s.fixed.items())
            group.add_argument(s.flag, dest=s.name, type=s.parse, choices=s.choices or None,
                               default=argparse.SUPPRESS, help=f"{s.help} (default: {s.default}{fixed})")


def _limits(p):
    """What one image may cost; an image over a limit is dead-lettered (too_slow, too_large)."""
    from grepq_core.images.limits import DEFAULT_MAX_MEMORY, DEFAULT_MAX_SECONDS
    from grepq_core.model.settings import DEFAULT_MAX_BATCH_BYTES

    g = p.add_argument_group("limits per image")
    g.add_argument("--max-image-seconds", type=_seconds, default=DEFAULT_MAX_SECONDS,
                   help="seconds one image may take to decode, in a worker process that is stopped after them "
                   "(too_slow); none: no limit, decoded in the reading process")
    g.add_argument("--max-image-memory", type=_byte_size, default=f"{DEFAULT_MAX_MEMORY >> 20}MiB",
                   help="memory one image may take to decode and cut, estimated from its header before any pixel "
                   "is allocated (too_large); e.g. 512MiB, 2GiB, none")
    g.add_argument("--max-batch-bytes", type=_byte_size, default=f"{DEFAULT_MAX_BATCH_BYTES >> 20}MiB",
                   help="bytes of images (JPEG bytes for the device decoder, or views) one model batch may hold "
                   "besides --batch-size images")


_PROFILE_VIEWS = "; the reference profile fixes it"


def _views(p):
    g = p.add_argument_group("views (fast profile)")
    g.add_argument("--ll-view", choices=("fragments", "full"), default=argparse.SUPPRESS,
                   help="fragments: 7x7 grid of 32x32 crops (batched); full: whole image (default: fragments"
                   + _PROFILE_VIEWS + ")")
    g.add_argument("--hl-size", type=_none_or_int, default=argparse.SUPPRESS,
                   help="CLIP view size, or 'native' (default: 224" + _PROFILE_VIEWS + ")")
    g.add_argument("--max-patches", type=_none_or_int, default=argparse.SUPPRESS,
                   help="cap on 96x96 zero-shot LL patches per image, or 'all' (default: 32" + _PROFILE_VIEWS + ")")
    g.add_argument("--no-zero-shot", dest="zero_shot", action="store_false", default=argparse.SUPPRESS,
                   help="skip the zero-shot LL patches")


def _features(p):
    p.add_argument("--features", required=True, help="an extract run's output folder")


def _labels(p, required: bool = True):
    g = p.add_argument_group("fitting")
    g.add_argument("--labels", required=required, help="CSV with columns path (or file name) and score"
                   + ("" if required else "; given, a ridge regressor is fitted on it (not given: zero-shot scores)"))
    g.add_argument("--lower-is-better", action="store_true", help="scores are DMOS (lower is better)")
    g.add_argument("--alphas", default="0.1,1,10,100", help="ridge alphas to choose from by CV (the correction "
                   "of features+zero-shot: 1e3, 1e4, 1e5)")
    g.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    g.add_argument("--candidates", default="zero-shot,features,features+zero-shot",
                   help="fits to choose from by CV (docs/method.md, \"Data-efficient prediction\"); "
                   "`features` alone is the paper's ridge")


def _scoring(p):
    g = p.add_argument_group("scoring")
    g.add_argument("--keep-above", type=float,
                   help="keep images whose calibrated score reaches this (zero-shot: 0-100; with a model: "
                   "--scale's), or their score where there is no calibrated one")
    g.add_argument("--keep-top-fraction", type=float, help="keep this fraction of best-scoring images")
    g.add_argument("--csv", help="also write path,score,calibrated,keep as a CSV file (path or gs:// URL)")
    g.add_argument("--scale", help="LOW,HIGH: also write a `calibrated` score on this scale (needs a model), "
                   "the training labels' range mapped onto it, e.g. 1,5 or 0,100")


def _fit_output(p):
    p.add_argument("--output", required=True, help="the model file to write (JSON; path or fsspec URL)")


def _score_io(p):
    p.add_argument("--model", help="regressor JSON written by `grepq fit` (default: zero-shot scores)")
    p.add_argument("--output", required=True, help="output folder for scores/, keep.txt and reject.txt")
    p.add_argument("--replace", action="store_true",
                   help="replace the scores already under --output (without it, such an output is refused)")
    _break_lock(p)


def _shard_size(g):
    g.add_argument("--shard-size", type=int, default=10_000,
                   help="samples per output WebDataset shard (Parquet outputs keep one file per source file)")


def _filter_io(p):
    p.add_argument("--scores", required=True, help="a `grepq score` or `grepq run` output folder (holds scores/)")
    p.add_argument("--features", help="the extract run's folder, for its dead letters; not given: --scores")
    p.add_argument("--output", required=True,
                   help="folder (local or gs://) for the kept samples, in the form they came in")
    p.add_argument("--rejected", help="also write the rejected and dead-lettered samples here, for audit")
    _shard_size(p)
    p.add_argument("--replace", action="store_true", help="replace a filtered collection already in the folders")
    _break_lock(p)


def _run_filter(p):
    g = p.add_argument_group("filtered collection (WebDataset and Parquet inputs)")
    g.add_argument("--filter-output", help="also write the kept samples here, in the form they came in")
    g.add_argument("--rejected-output", help="and the rejected and dead-lettered ones here")
    _shard_size(g)


def _run_io(p):
    _input(p)
    _extract_output(p)
    _labels(p, required=False)
    p.add_argument("--model", help="an existing regressor JSON instead of --labels")
    p.add_argument("--model-output", help="where the fitted model goes (not given: OUTPUT/model.json)")


COMMAND_FLAGS = {
    "extract": (_input, _extract_output, _encoders, _views),
    "fit": (_features, _labels, _fit_output),
    "score": (_features, _score_io, _scoring),
    "run": (_run_io, _encoders, _views, _scoring, _run_filter),
    "filter": (_filter_io,),
}


def command_parser(command: str, description: str) -> argparse.ArgumentParser:
    """The parser of one Beam command: its own flags only, defaults shown."""
    parser = argparse.ArgumentParser(prog=f"grepq {command}", description=description, epilog=_EPILOG,
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    for add in COMMAND_FLAGS[command]:
        add(parser)
    return parser


def _beam_flags() -> set[str]:
    """Every flag of every Beam PipelineOptions class (the ones Beam would parse)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False)
    seen, todo = set(), [PipelineOptions]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                sub._add_argparse_args(parser)
    return {s for action in parser._actions for s in action.option_strings}


def _check_beam_args(rest: list[str], parser: argparse.ArgumentParser) -> None:
    beam = _beam_flags()
    ours = {s for action in parser._actions for s in action.option_strings}
    for arg in rest:
        flag = arg.split("=", 1)[0]
        if flag.startswith("-") and flag not in beam:
            close = did_you_mean(flag, ours) or did_you_mean(flag, beam)
            raise GrepqError(f"unknown flag {flag}.{close}")


def beam_options(rest: list[str]):
    """Beam's PipelineOptions for the flags grepq does not own, with the default runner when none is given."""
    from apache_beam.options.pipeline_options import PipelineOptions

    if not any(a == "--runner" or a.startswith("--runner=") for a in rest):
        rest = [*rest, f"--runner={DEFAULT_RUNNER}"]
    return PipelineOptions(rest)


def parse(parser: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, object]:
    """(this command's flags, Beam's PipelineOptions for the rest); an unknown flag is an error."""
    args, rest = parser.parse_known_args(argv)
    _check_beam_args(rest, parser)
    return args, beam_options(rest)


def encoder_spec(args):
    """The models and views the flags select, under the chosen profile (grepq_core/model/profiles.py decides)."""
    from grepq_core.model import registry
    from grepq_core.model.profiles import GENERAL, VIEW_FIELDS, spec_for

    names = {*GENERAL, *VIEW_FIELDS, *(s.name for s in registry.settings())}
    return spec_for(args.profile, args.pathways, **{k: v for k, v in vars(args).items() if k in names})


def flag_message(text: str, parser: argparse.ArgumentParser | None) -> str:
    """A core message with its `field` names replaced by the parser's flags (--field-name)."""
    flags = {a.dest: a.option_strings[0] for a in (parser._actions if parser else []) if a.option_strings}
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: flags.get(m.group(1), m.group(0)), text)


@contextlib.contextmanager
def writing_under(folder: str):
    """A pipeline that writes under `folder`: an I/O error inside it that names no file (Arrow's writers raise
    such, e.g. on a full disk) becomes a one-line error naming `folder`."""
    try:
        yield
    except Exception as e:
        error = found_in(e, OSError)
        if error is None or error.filename or found_in(e, GrepqError):
            raise
        raise GrepqError(f"cannot write under {folder}: {error.strerror or error}") from e
