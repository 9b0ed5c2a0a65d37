"""`grepq evaluate`: SRCC, PLCC and KRCC against MOS on an IQA dataset, as the field reports them.

    load dataset -> read, hash, decode -> features (Extractor, batched) + NIQE, BRISQUE, NSS
      (rows already in --features-cache are reused) -> zero-shot and few-shot rows
      -> table on the terminal, OUTPUT_DIR/evaluation.json and evaluation.md

Plain Python, not Beam: a benchmark dataset fits one process, and the
progress bar shows images per second. The protocols are grepq_core.evaluation.
Images are decoded on the CPU, whatever --decode says: the baselines need
the pixels there.

A pathway whose weights cannot be loaded (WeightsUnavailable, e.g. CLIP's
OpenAI weights offline) is left out, not fatal: its rows are reported as not
run, with the reason and the flag to change. Images that cannot be read or
decoded are left out and listed in the JSON.

The cache holds Parquet shards: feature rows (the extract schema) under
CACHE/views-<digest of the view settings>/features/, baseline rows under
CACHE/baselines/. A row is reused when its path and content hash match and,
for features, when the encoder and zero-shot LL identities are those loaded now.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import time

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from grepq_core import evaluation as E
from grepq_core.baselines import brisque, niqe, nss_features
from grepq_core.datasets import DATASETS, load_dataset
from grepq_core.errors import GrepqError, ImageError, WeightsUnavailable
from grepq_core.extractor import PATHWAYS, EncoderSpec, Extractor, prepare_image
from grepq_core.features import feature_layout, feature_matrix
from grepq_core.imageio import decode_image, read_bytes
from pipelines.extract import run_id
from pipelines.options import FLAG_GROUPS, encoder_spec
from transforms.schema import BASELINES, BASELINES_DIR, FEATURES, FEATURES_DIR
from transforms.write import output_path, read_table

__all__ = ["run", "arg_parser", "load_encoders"]

log = logging.getLogger(__name__)

_NSS_WIDTH = 36
_FLUSH_EVERY = 512  # images between cache shards, so an interrupted run keeps most of its work

# (method, feature-row column, pathways it needs)
_ZERO_SHOT = (("grepq LL (zs_ll)", "zs_ll", ("ll",)), ("grepq HL (zs_hl)", "zs_hl", ("hl",)),
              ("grepq LL+HL (zs_combined)", "zs_combined", ("ll", "hl")))
_FEW_SHOT = (("grepq LL+HL ridge", ("ll", "hl")), ("grepq LL ridge", ("ll",)), ("grepq HL ridge", ("hl",)))


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq evaluate", description=__doc__.strip().splitlines()[0])
    g = parser.add_argument_group("dataset and protocol")
    g.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)} (csv: ROOT/labels.csv "
                   "with columns path, score, optional group)")
    g.add_argument("--root", required=True, help="the dataset's folder (local or fsspec URL)")
    g.add_argument("--labels", help="label file replacing the dataset's own (see each loader)")
    g.add_argument("--lower-is-better", action="store_true", help="csv dataset: scores are DMOS")
    g.add_argument("--protocol", default="both", choices=("zero-shot", "few-shot", "both"))
    g.add_argument("--n-train", type=int, default=50, help="few-shot: labelled training images per split")
    g.add_argument("--splits", type=int, default=10, help="few-shot: random splits (seeds SEED, SEED+1, ...)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--features-cache", help="folder of feature and baseline rows reused across runs")
    g.add_argument("--output-dir", default="evaluation", help="where evaluation.json and evaluation.md go")
    FLAG_GROUPS["encoders"](parser)
    FLAG_GROUPS["views"](parser)
    return parser


def load_encoders(spec: EncoderSpec) -> tuple[Extractor, dict[str, str]]:
    """An Extractor for the pathways whose weights load, and {pathway: why not} for the others.

    Each pathway is loaded on its own so that one missing set of weights
    does not hide the other; with none loaded this is an error.
    """
    loaded, missing = {}, {}
    for pathway in spec.pathways:
        try:
            loaded[pathway] = Extractor.load(dataclasses.replace(spec, pathways=(pathway,)))
        except WeightsUnavailable as e:
            missing[pathway] = str(e)
            log.warning("%s pathway not run: %s", pathway.upper(), e)
    if not loaded:
        raise GrepqError("no pathway could be loaded: " + "; ".join(f"{p}: {m}" for p, m in missing.items()))
    ll, hl = loaded.get("ll"), loaded.get("hl")
    extractor = Extractor(dataclasses.replace(spec, pathways=tuple(loaded)),
                          ll and ll.ll, ll and ll.ll_identity, hl and hl.hl, hl and hl.hl_identity,
                          ll and ll.pristine)
    return extractor, missing


def _unavailable_reason(pathway: str, spec: EncoderSpec, error: str) -> str:
    """A one-line reason naming the flag: '--hl-weights openai unavailable (could not fetch ...)'."""
    flag = f"--{pathway}-weights"
    value = spec.ll_weights if pathway == "ll" else spec.hl_weights
    return f"{flag} {value} unavailable ({error.split(': ')[0]}); pass {flag} PATH"


def _pathway_reasons(spec: EncoderSpec, missing: dict[str, str]) -> dict[str, str]:
    """pathway -> why its features are absent, for each absent pathway."""
    reasons = {p: f"--pathways {','.join(spec.pathways)}" for p in PATHWAYS if p not in spec.pathways}
    reasons.update({p: _unavailable_reason(p, spec, m) for p, m in missing.items()})
    return reasons


def _views_key(spec: EncoderSpec) -> str:
    text = json.dumps(dataclasses.asdict(spec.views), sort_keys=True)
    return "views-" + hashlib.sha256(text.encode()).hexdigest()[:12]


class _Cache:
    """Feature and baseline rows of earlier runs, and new ones written as shards."""

    def __init__(self, root: str | None, views_key: str, identities: dict):
        self.root = root
        self._features_at = root and f"{root.rstrip('/')}/{views_key}"
        self.features = {}
        self.baselines = {}
        if root:
            for row in read_table(self._features_at, FEATURES_DIR, schema=FEATURES).to_pylist():
                if all(row[k] == v for k, v in identities.items()):
                    self.features[row["path"]] = row
            for row in read_table(root, BASELINES_DIR, schema=BASELINES).to_pylist():
                self.baselines[row["path"]] = row

    def get(self, kind: str, path: str, sha256: str) -> dict | None:
        row = getattr(self, kind).get(path)
        return row if row is not None and row["sha256"] == sha256 else None

    def write(self, features: list[dict], baselines: list[dict]) -> None:
        """New rows as one shard per kind, renamed into place once complete."""
        if not self.root:
            return
        for at, kind, schema, rows in ((self._features_at, FEATURES_DIR, FEATURES, features),
                                       (self.root, BASELINES_DIR, BASELINES, baselines)):
            if rows:
                fs, folder = fsspec.core.url_to_fs(output_path(at, kind))
                fs.makedirs(folder, exist_ok=True)
                final = f"{folder}/{run_id()}.parquet"
                pq.write_table(pa.Table.from_pylist(rows, schema=schema), final + ".tmp", filesystem=fs)
                fs.mv(final + ".tmp", final)


def _or_nan(fn, pixels) -> float:
    try:
        return float(fn(pixels))
    except ImageError:
        return math.nan


def _baseline_row(path: str, sha256: str, pixels: np.ndarray) -> dict:
    try:
        nss = nss_features(pixels).tolist()
    except ImageError:
        nss = [math.nan] * _NSS_WIDTH
    return {"path": path, "sha256": sha256, "niqe": _or_nan(niqe, pixels),
            "brisque": _or_nan(brisque, pixels), "nss": nss}


def _gather(paths: list[str], extractor: Extractor, cache: _Cache):
    """(feature rows, baseline rows, dropped) aligned with `paths`; None where an image failed.

    One pass: each image is read and hashed; only what the cache lacks is
    decoded and computed, the features in batches of the spec's batch size.
    """
    spec = extractor.spec
    features, baselines = [None] * len(paths), [None] * len(paths)
    dropped, batch, new_features, new_baselines = [], [], [], []
    computed, start = 0, time.perf_counter()

    def run_batch():
        for (i, _), row in zip(batch, extractor.extract([item for _, item in batch])):
            features[i] = row
            new_features.append(row)
        batch.clear()

    with tqdm(total=len(paths), unit="img", desc="features + baselines") as bar:
        for i, path in enumerate(paths):
            try:
                data = read_bytes(path)
                sha256 = hashlib.sha256(data).hexdigest()
                features[i] = cache.get("features", path, sha256)
                baselines[i] = cache.get("baselines", path, sha256)
                if features[i] is None or baselines[i] is None:
                    pixels = decode_image(data)
                    computed += 1
            except ImageError as e:
                dropped.append({"path": path, "reason": e.reason, "detail": e.detail})
                bar.update()
                continue
            if baselines[i] is None:
                baselines[i] = _baseline_row(path, sha256, pixels)
                new_baselines.append(baselines[i])
            if features[i] is None:
                batch.append((i, prepare_image(pixels, spec, path, sha256)))
                if len(batch) == spec.batch_size:
                    run_batch()
            if max(len(new_features), len(new_baselines)) >= _FLUSH_EVERY and not batch:
                cache.write(new_features, new_baselines)
                new_features, new_baselines = [], []
            bar.update()
        if batch:
            run_batch()
    cache.write(new_features, new_baselines)
    elapsed = time.perf_counter() - start
    log.info("%d of %d images computed, %d from the cache, %d dropped; %.1f images/s", computed, len(paths),
             len(paths) - computed - len(dropped), len(dropped), computed / elapsed if computed else math.inf)
    return features, baselines, dropped


def _column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([math.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)


def _missing_reason(needs: tuple[str, ...], reasons: dict[str, str]) -> str | None:
    absent = [p for p in needs if p in reasons]
    return "; ".join(f"{p.upper()}: {reasons[p]}" for p in absent) or None


def _zero_shot_rows(rows, base, mos, reasons: dict[str, str], zs_ll_reason: str | None) -> list[E.Result]:
    results = []
    for method, column, needs in _ZERO_SHOT:
        own = dict(reasons)
        if zs_ll_reason and "ll" not in own:
            own["ll"] = zs_ll_reason
        why = _missing_reason(needs, own)
        results.append(E.not_run("zero-shot", method, why) if why else E.zero_shot(method, _column(rows, column), mos))
    for method, column in (("NIQE", "niqe"), ("BRISQUE", "brisque")):
        results.append(E.zero_shot(method, -_column(base, column), mos, note="negated: lower raw score is better"))
    return results


def _few_shot_rows(rows, base, mos, splits, reasons: dict[str, str]) -> list[E.Result]:
    layout, identities = feature_layout(rows)
    results = []
    for method, needs in _FEW_SHOT:
        why = _missing_reason(needs, reasons)
        if why:
            results.append(E.not_run("few-shot", method, why))
            continue
        sub = [[b, w] for b, w in layout if b in needs]
        results.append(E.few_shot(method, feature_matrix(rows, sub), mos, splits, sub,
                                  {b: identities[b] for b in needs}))
    nss = np.array([r["nss"] for r in base], dtype=np.float64)
    results.append(E.few_shot("NSS ridge (BRISQUE's 36 features)", nss, mos, splits, [["nss", _NSS_WIDTH]],
                              {"nss": "brisque-nss"}))
    return results


def _zs_ll_reason(spec: EncoderSpec) -> str | None:
    if not spec.views.zero_shot:
        return "--no-zero-shot"
    if not spec.pristine:
        return "--pristine none"
    return None


def _header(args, report: dict) -> str:
    enc = report["encoders"]
    lines = [f"# grepq evaluate: {args.dataset}, {report['images']} images in {report['groups']} groups", "",
             f"- root: {args.root}",
             f"- encoders: LL {enc['ll'] or '-'}, HL {enc['hl'] or '-'}; views {_views_text(report['views'])}",
             "- all scores higher-is-better: NIQE and BRISQUE are negated",
             "- PLCC after a 4-parameter logistic map of the predictions onto the MOS"]
    if args.protocol != "zero-shot":
        lines.append(f"- few-shot: ridge (alpha by 5-fold CV on the training images) on {args.n_train} "
                     f"training images, contents never on both sides; {args.splits} splits (seeds "
                     f"{args.seed}..{args.seed + args.splits - 1}); cells are median [25th, 75th percentile]")
    if report["dropped"]:
        lines.append(f"- left out: {len(report['dropped'])} images that could not be read (listed in the JSON)")
    return "\n".join(lines)


def _views_text(views: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in views.items())


def _json_safe(value):
    """NaN -> null, recursively, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run(argv=None) -> dict:
    """Evaluate, print the table, write JSON and Markdown; returns the JSON record."""
    args = arg_parser().parse_args(argv)
    spec = encoder_spec(args)
    df = load_dataset(args.dataset, args.root, labels=args.labels, lower_is_better=args.lower_is_better)
    extractor, missing = load_encoders(spec)
    cache = _Cache(args.features_cache, _views_key(spec), extractor.identities)
    rows, base, dropped = _gather(df["path"].tolist(), extractor, cache)

    keep = [i for i, r in enumerate(rows) if r is not None]
    df = df.iloc[keep].reset_index(drop=True)
    rows, base = [rows[i] for i in keep], [base[i] for i in keep]
    mos = df["score"].to_numpy(dtype=np.float64)
    reasons = _pathway_reasons(spec, missing)

    results = []
    if args.protocol in ("zero-shot", "both"):
        results += _zero_shot_rows(rows, base, mos, reasons, _zs_ll_reason(spec))
    if args.protocol in ("few-shot", "both"):
        splits = E.group_splits(df, args.n_train, args.splits, args.seed)
        results += _few_shot_rows(rows, base, mos, splits, reasons)

    report = {
        "dataset": args.dataset, "root": args.root, "labels": args.labels, "images": len(df),
        "groups": int(df["group"].nunique()), "dropped": dropped,
        "encoders": {"ll": extractor.ll_identity, "hl": extractor.hl_identity},
        "not_loaded": missing, "views": dataclasses.asdict(spec.views),
        "protocol": {"name": args.protocol, "n_train": args.n_train, "splits": args.splits, "seed": args.seed},
        "results": [dataclasses.asdict(r) for r in results],
    }
    text = _header(args, report) + "\n\n" + E.markdown_table(results) + "\n"
    print("\n" + text)
    fs, folder = fsspec.core.url_to_fs(args.output_dir)
    fs.makedirs(folder, exist_ok=True)
    with fs.open(f"{folder}/evaluation.md", "w") as f:
        f.write(text)
    with fs.open(f"{folder}/evaluation.json", "w") as f:
        json.dump(_json_safe(report), f, indent=1)
    log.info("wrote %s/evaluation.json and evaluation.md", args.output_dir)
    return report
