"""grepq's flags, as one Beam `PipelineOptions` subclass.

All grepq flags live in `GrepqOptions`, so they travel with the pipeline's
options to Dataflow workers and show in the job's UI; every other flag
(--runner, --project, --region, --temp_location, --sdk_container_image,
--dataflow_service_options, --experiments, ...) is Beam's. The flags are
grouped so that each subcommand's --help shows only its own groups.

Beam already owns `--labels` (Dataflow job labels), so the label file is
`--label-csv` here; the `grepq` command accepts `--labels` for it.
"""
from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from grepq_core.errors import GrepqError
from grepq_core.extractor import EncoderSpec, ViewConfig, parse_pathways

__all__ = ["GrepqOptions", "FLAG_GROUPS", "help_parser", "encoder_spec", "require"]


def _none_or_int(text: str) -> int | None:
    return None if text.lower() in ("none", "native", "all") else int(text)


def _none_or_str(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _io_flags(parser):
    g = parser.add_argument_group("input and output")
    g.add_argument("--input", action="append", help="glob of images (local or gs://); repeatable")
    g.add_argument("--output", help="output directory (local or gs://)")
    g.add_argument("--features", help="an extract run's output directory")
    g.add_argument("--model", help="regressor JSON written by `grepq fit`")
    g.add_argument("--incremental", action="store_true",
                   help="extract only images whose path and content are new under --output")


def _encoder_flags(parser):
    g = parser.add_argument_group("encoders")
    g.add_argument("--pathways", default="ll,hl", help="comma-separated subset of ll,hl (default both)")
    g.add_argument("--ll-weights", default="shipped",
                   help="LL encoder checkpoint: 'shipped' (default), a path or an fsspec URL")
    g.add_argument("--pristine", default="shipped", type=_none_or_str,
                   help="pristine model .npz for the zero-shot LL score: 'shipped', a path/URL, or 'none'")
    g.add_argument("--hl-model", default="RN50", help="open_clip architecture name or model-config JSON path")
    g.add_argument("--hl-weights", default="openai", type=_none_or_str,
                   help="open_clip pretrained tag (default openai), a checkpoint path/URL, or 'none' (random)")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    g.add_argument("--decode", default="auto", choices=("auto", "gpu", "cpu"),
                   help="gpu: JPEGs decoded in batches where the model runs (nvJPEG on CUDA); "
                   "cpu: Pillow in the read stage; auto (default): gpu when CUDA is present")
    g.add_argument("--batch-size", type=int, default=32, help="images per model batch")
    g.add_argument("--large-model", action="store_true",
                   help="one model per worker machine shared by its processes (GPU workers)")


def _view_flags(parser):
    g = parser.add_argument_group("views")
    g.add_argument("--ll-view", default="fragments", choices=("fragments", "full"),
                   help="fragments: 7x7 grid of 32x32 crops (batched); full: whole image (reference)")
    g.add_argument("--hl-size", type=_none_or_int, default=224, help="CLIP view size, or 'native'")
    g.add_argument("--max-patches", type=_none_or_int, default=32,
                   help="cap on 96x96 zero-shot LL patches per image, or 'all' (reference)")
    g.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot LL patches")


def _fit_flags(parser):
    g = parser.add_argument_group("fitting")
    g.add_argument("--label-csv", help="CSV with columns path (or file name) and score; "
                   "the grepq command also takes it as --labels")
    g.add_argument("--lower-is-better", action="store_true", help="scores are DMOS (lower is better)")
    g.add_argument("--alphas", default="0.1,1,10,100", help="ridge alphas to choose from by CV")
    g.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    g.add_argument("--model-output", help="where `grepq run` writes the fitted model (default OUTPUT/model.json)")


def _score_flags(parser):
    g = parser.add_argument_group("scoring")
    g.add_argument("--keep-above", type=float, help="keep images scoring above this")
    g.add_argument("--keep-top-fraction", type=float, help="keep this fraction of best-scoring images")
    g.add_argument("--scale", help="LOW,HIGH: also write a `calibrated` score on this scale (needs --model), "
                   "the training labels' range mapped onto it, e.g. 1,5 or 0,100")


FLAG_GROUPS = {"io": _io_flags, "encoders": _encoder_flags, "views": _view_flags,
               "fit": _fit_flags, "score": _score_flags}


class GrepqOptions(PipelineOptions):
    """Every grepq flag; see FLAG_GROUPS for which subcommand uses which."""

    @classmethod
    def _add_argparse_args(cls, parser):
        for add in FLAG_GROUPS.values():
            add(parser)


def help_parser(command: str, description: str, groups: tuple[str, ...]) -> argparse.ArgumentParser:
    """What `grepq COMMAND --help` shows: that command's flag groups only."""
    parser = argparse.ArgumentParser(prog=f"grepq {command}", description=description, epilog=(
        "Any other flag goes to Beam, e.g. --runner DataflowRunner --project P --region R "
        "--temp_location gs://... (docs/dataflow.md)."))
    for group in groups:
        FLAG_GROUPS[group](parser)
    return parser


def require(opts: GrepqOptions, *names: str):
    """Stop with a clear message when a subcommand's required flag is missing."""
    missing = [n for n in names if not getattr(opts, n)]
    if missing:
        raise GrepqError("missing " + ", ".join("--" + n.replace("_", "-") for n in missing))


def encoder_spec(opts: GrepqOptions) -> EncoderSpec:
    """The models and views the flags select."""
    views = ViewConfig(ll_view=opts.ll_view, hl_size=opts.hl_size, max_patches=opts.max_patches,
                       zero_shot=not opts.no_zero_shot)
    return EncoderSpec(pathways=parse_pathways(opts.pathways), ll_weights=opts.ll_weights,
                       pristine=opts.pristine, hl_model=opts.hl_model, hl_weights=opts.hl_weights,
                       device=opts.device, decode=opts.decode, batch_size=opts.batch_size, views=views)
