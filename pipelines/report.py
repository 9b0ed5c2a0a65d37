"""`grepq report`: a scoring run's output -> one self-contained HTML page.

    read scores, dead letters, encoder identities, the ridge model
      -> load the images at each decile of score -> thumbnails -> HTML

Plain Python, not Beam: it reads the scores and two identity columns of the
features, and opens at most eleven images, so it stays cheap on a large run.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import TYPE_CHECKING

from grepq_core.errors import GrepqError, ImageError

if TYPE_CHECKING:  # pyarrow, matplotlib, torch and the rest are imported where they are used: --help stays fast
    from grepq_core.report import ReportInputs

from pipelines.options import HelpFormatter

__all__ = ["run", "arg_parser", "build_inputs"]

log = logging.getLogger(__name__)
_RIDGE_PREFIX = "ridge:"


def _identities(features: str) -> dict[str, list[str]] | None:
    """Encoder identities per pathway in the feature rows; None when there are no feature rows."""
    import pyarrow.compute as pc

    from grepq_core.model import registry
    from transforms import current, store

    columns = {name: registry.get(name).identity_column for name in registry.names()} | {"profile": "profile"}
    table = current.read_table(features, store.FEATURES_DIR, columns=list(columns.values()),
                             schema=store.features_schema())
    if table.num_rows == 0:
        return None
    return {name: sorted(v for v in pc.unique(table[c]).to_pylist() if v) for name, c in columns.items()}


def _model_record(scorers, model: str | None) -> dict | None:
    """The ridge model's fields: from --model, else from the `ridge:URI` scorer of the rows."""
    from grepq_core.fitting.ridge_file import load_ridge

    uris = [model] if model else sorted({s[len(_RIDGE_PREFIX):].rsplit("@", 1)[0]
                                         for s in scorers if s.startswith(_RIDGE_PREFIX)})
    if not uris:
        return None
    try:
        record = dataclasses.asdict(load_ridge(uris[0]))
    except GrepqError as e:
        log.warning("no model summary in the report: %s", e)
        return None
    return {k: v for k, v in record.items() if k not in ("coef", "scaler_mean", "scaler_scale")}


def _thumbnails(paths, size: int) -> dict[str, bytes]:
    """JPEG thumbnails of the images (by key) that can still be read, within extract's default budgets; the
    others are logged and left out."""
    from grepq_core.images import sources
    from grepq_core.images.deadline import decode_in_time
    from grepq_core.images.limits import DEFAULT_MAX_SECONDS, DecodeLimits
    from grepq_core.report import thumbnail_jpeg

    out = {}
    for path in paths:
        try:
            pixels, _ = decode_in_time(sources.read(path), DecodeLimits(max_seconds=DEFAULT_MAX_SECONDS))
            out[path] = thumbnail_jpeg(pixels, size)
        except ImageError as e:
            log.warning("no thumbnail for %s: %s", path, e)
    return out


def _run_record(features: str) -> dict[str, str]:
    """What the extract runs behind the features say of themselves: when, over what, with which grepq."""
    from transforms import runs

    made = [h for m in runs.manifests(features) for h in m.get("history", [m])]  # a compaction keeps its runs
    if not made:
        return {}
    inputs = sorted({a for m in made for a in _flag_values(m.get("argv", []), "--input")})
    return {"extracted": ", ".join(m.get("finished", "?") for m in made[-3:]) + (" ..." if len(made) > 3 else ""),
            "input": ", ".join(inputs) or "?",
            "grepq version": ", ".join(sorted({m.get("grepq_version", "?") for m in made}))}


def _flag_values(argv: list[str], flag: str) -> list[str]:
    values = [b for a, b in zip(argv, argv[1:]) if a == flag]
    return values + [a.split("=", 1)[1] for a in argv if a.startswith(flag + "=")]


def build_inputs(scores_dir: str, features_dir: str | None = None, model: str | None = None,
                 threshold: float | None = None, thumbnail_size: int = 160) -> ReportInputs:
    """Read everything the page shows from a run's output directories."""
    from grepq_core.report import ReportInputs, decile_rows
    from transforms import current, store

    features_dir = features_dir or scores_dir
    scores = store.read_table(scores_dir, store.SCORES_DIR, schema=store.scores_schema()).to_pandas()
    if scores.empty:
        raise GrepqError(f"no scores under {scores_dir}/{store.SCORES_DIR}: run `grepq score` or `grepq run` first, "
                         "or pass the directory it wrote as `scores`")
    return ReportInputs(
        scores=scores,
        dead_letters=current.read_table(features_dir, store.DEAD_LETTERS_DIR, schema=store.DEAD_LETTERS).to_pandas(),
        identities=_identities(features_dir),
        model=_model_record(scores["scorer"].dropna().unique(), model),
        thumbnails=_thumbnails(decile_rows(scores)["path"], thumbnail_size),
        threshold=threshold,
        source=scores_dir,
        run=_run_record(features_dir),
    )


def run(argv=None):
    args = arg_parser().parse_args(argv)  # first, so that a flag error needs no heavy import
    from grepq_core.files import check_writable, write_file
    from grepq_core.report import render_report

    check_writable(args.output)
    html = render_report(build_inputs(args.scores, args.features, args.model, args.threshold, args.thumbnail_size))
    write_file(args.output, html)
    print(f"report: {args.output}")


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq report", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("--scores", required=True,
                        help="directory a `grepq score` or `grepq run` wrote (holds scores/)")
    parser.add_argument("--features", help="the extract run's directory, for dead letters and encoder "
                        "identities; not given: --scores, where `grepq run` writes both")
    parser.add_argument("--model", help="ridge model JSON to summarise; not given: the one the scorer names")
    parser.add_argument("--output", required=True, help="HTML file to write (path or fsspec URL)")
    parser.add_argument("--threshold", type=float,
                        help="keep / reject line on the histogram; not given: the lowest kept score")
    parser.add_argument("--thumbnail-size", type=int, default=160, help="thumbnail side in pixels")
    return parser
