"""`grepq evaluate`: SRCC, PLCC and KRCC against MOS on an IQA dataset, as the field reports them.

    load dataset -> feature and baseline rows (pipelines/evaluate_data.py, cached)
      -> zero-shot and few-shot rows for every pathway, alone and together, and the baselines
      -> table on the terminal, OUTPUT/evaluation.json and evaluation.md

Plain Python, not Beam: a benchmark dataset fits one process, and the
progress bar shows images per second. The protocols are grepq_core.evaluation.

A pathway whose weights cannot be loaded (WeightsUnavailable, e.g. CLIP's
OpenAI weights offline) is left out, not fatal: its rows are reported as not
run, with the reason and the flag to change. Images that cannot be read or
decoded are left out and listed in the JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
from typing import TYPE_CHECKING

from pipelines.options import COMMAND_FLAGS, HelpFormatter, encoder_spec, flag_message

if TYPE_CHECKING:  # numpy, torch, pandas and the rest are imported where they are used: --help stays fast
    import numpy as np

    from grepq_core.evaluation import protocols as E
    from grepq_core.model.settings import EncoderSpec

__all__ = ["run", "arg_parser"]

log = logging.getLogger(__name__)

# grepq_core.datasets.DATASETS' names and grepq_core.metrics.MAPPINGS, here so that --help imports neither
# pandas nor scipy (tests/test_cli.py checks that they agree).
DATASET_NAMES = ("live", "csiq", "tid2013", "kadid10k", "clive", "koniq10k", "spaq", "flive", "pipal", "agiqa1k",
                 "agiqa3k", "csv")
PLCC_MAPPINGS = ("logistic", "cubic")


def _zero_shot_methods() -> list[tuple[str, str, tuple[str, ...]]]:
    """(method, feature-row column, pathways it needs): each pathway's score, then the combined one."""
    from grepq_core.model import registry

    ps = list(registry.PATHWAYS.values())
    combined = [p for p in ps if p.combined]
    return ([(f"grepq {p.title} ({p.zero_shot_column})", p.zero_shot_column, (p.name,)) for p in ps]
            + [(f"grepq {'+'.join(p.title for p in combined)} ({registry.COMBINED})", registry.COMBINED,
                tuple(p.name for p in combined))])


def _few_shot_methods() -> list[tuple[str, tuple[str, ...]]]:
    """(method, pathways whose features it uses): all of them together, then each alone."""
    from grepq_core.model import registry

    ps = list(registry.PATHWAYS.values())
    return ([(f"grepq {'+'.join(p.title for p in ps)} ridge", tuple(p.name for p in ps))]
            + [(f"grepq {p.title} ridge", (p.name,)) for p in ps])


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grepq evaluate", description=__doc__.strip().splitlines()[0],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    g = parser.add_argument_group("dataset and protocol")
    g.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASET_NAMES)} (csv: ROOT/labels.csv "
                   "with columns path, score, optional group)")
    g.add_argument("--root", required=True, help="the dataset's folder (local or fsspec URL)")
    g.add_argument("--labels", help="label file replacing the dataset's own (see each loader)")
    g.add_argument("--lower-is-better", action="store_true", help="csv dataset: scores are DMOS")
    g.add_argument("--protocol", default="both", choices=("zero-shot", "few-shot", "both"),
                   help="zero-shot scores, few-shot ridge on --n-train labelled images, or both")
    g.add_argument("--n-train", type=int, default=50, help="few-shot: labelled training images per split")
    g.add_argument("--splits", type=int, default=10, help="few-shot: random splits (seeds SEED, SEED+1, ...)")
    g.add_argument("--test-fraction", type=float, default=0.2,
                   help="few-shot: share of the contents held out for testing in each split")
    g.add_argument("--plcc-mapping", choices=PLCC_MAPPINGS,
                   help="map predictions onto the MOS before PLCC: logistic or cubic (the reference's); not "
                   "given: logistic under the fast profile, cubic under the reference one")
    g.add_argument("--seed", type=int, default=0, help="few-shot: seed of the first split")
    g.add_argument("--features-cache", help="folder of feature and baseline rows reused across runs")
    g.add_argument("--output", default="evaluation",
                   help="folder (local or fsspec URL) for evaluation.json and evaluation.md")
    for add in COMMAND_FLAGS["extract"][2:]:  # the encoder and view flags
        add(parser)
    return parser


def _pathway_reasons(spec: EncoderSpec, missing: dict[str, str]) -> dict[str, str]:
    """pathway -> why its features are absent, for each absent pathway, in this command's flags."""
    from grepq_core.model import registry

    reasons = {p: f"`pathways` {','.join(spec.pathways)}" for p in registry.names() if p not in spec.pathways}
    reasons.update({p: f"not loaded: {m.splitlines()[0]}" for p, m in missing.items()})
    return {p: flag_message(r, arg_parser()) for p, r in reasons.items()}


def _column(rows: list[dict], key: str) -> np.ndarray:
    import numpy as np

    return np.array([math.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)


def _missing_reason(needs: tuple[str, ...], reasons: dict[str, str]) -> str | None:
    absent = [p for p in needs if p in reasons]
    return "; ".join(f"{p.upper()}: {reasons[p]}" for p in absent) or None


def _zero_shot_rows(rows, base, mos, reasons: dict[str, str], zs_ll_reason: str | None,
                    mapping: str) -> list[E.Result]:
    from grepq_core.evaluation import protocols as E

    results = []
    for method, column, needs in _zero_shot_methods():
        own = dict(reasons)
        if zs_ll_reason and "ll" not in own:
            own["ll"] = zs_ll_reason
        why = _missing_reason(needs, own)
        results.append(E.not_run("zero-shot", method, why) if why
                       else E.zero_shot(method, _column(rows, column), mos, mapping=mapping))
    for method, column in (("NIQE", "niqe"), ("BRISQUE", "brisque")):
        results.append(E.zero_shot(method, -_column(base, column), mos, note="negated: lower raw score is better",
                                   mapping=mapping))
    return results


def _few_shot_rows(rows, base, mos, splits, reasons: dict[str, str], mapping: str, groups) -> list[E.Result]:
    import numpy as np

    from grepq_core.evaluation import protocols as E
    from grepq_core.fitting.features import feature_layout, feature_matrix, zero_shot_score
    from pipelines.evaluate_data import NSS_WIDTH

    layout, identities = feature_layout(rows)
    results = []
    for method, needs in _few_shot_methods():
        why = _missing_reason(needs, reasons)
        if why:
            results.append(E.not_run("few-shot", method, why))
            continue
        sub = [[b, w] for b, w in layout if b in needs]
        results.append(E.few_shot(method, feature_matrix(rows, sub), mos, splits, sub,
                                  {b: identities[b] for b in needs}, mapping=mapping))
    if rows:
        zs = np.array([zero_shot_score(r)[0] for r in rows], dtype=np.float64)  # None becomes NaN
        results.append(E.zero_shot_on_splits("grepq zero-shot (same splits)", zs, mos, splits, mapping))
        results.append(E.few_shot_choice("grepq fit (kept by CV)", rows, mos, splits, mapping, groups))
    nss = np.array([r["nss"] for r in base], dtype=np.float64)
    results.append(E.few_shot("NSS ridge (BRISQUE's 36 features)", nss, mos, splits, [["nss", NSS_WIDTH]],
                              {"nss": "brisque-nss"}, mapping=mapping))
    return results


def _zs_ll_reason(spec: EncoderSpec) -> str | None:
    if not spec.views.zero_shot:
        return flag_message("`no_zero_shot`", arg_parser())
    if not spec.setting("pristine"):
        return flag_message("`pristine` none", arg_parser())
    return None


def _header(args, report: dict) -> str:
    from grepq_core.model import registry

    enc = report["encoders"]
    lines = [f"# grepq evaluate: {args.dataset}, {report['images']} images in {report['groups']} groups", "",
             f"- root: {args.root}",
             "- encoders: " + ", ".join(f"{registry.get(n).title} {i or '-'}" for n, i in enc.items())
             + f"; views {_views_text(report['views'])}",
             f"- profile: {report['profile']}",
             "- all scores higher-is-better: NIQE and BRISQUE are negated",
             "- PLCC after a " + ("4-parameter logistic" if report["plcc_mapping"] == "logistic"
                                  else "3rd-order polynomial") + " map of the predictions onto the MOS"]
    if args.protocol != "zero-shot":
        p = report["protocol"]
        lines.append(f"- few-shot: each split holds out {p['test_contents']} of {report['groups']} contents "
                     f"({p['test_images']} test images, median), then draws {args.n_train} labelled images from "
                     f"the other contents; ridge (alpha by 5-fold CV on the labelled images); {args.splits} "
                     f"splits (seeds {args.seed}..{args.seed + args.splits - 1}); cells are median "
                     "[25th, 75th percentile]")
    if report["dropped"]:
        lines.append(f"- left out: {len(report['dropped'])} images that could not be read (listed in the JSON)")
    return "\n".join(lines)


def _views_text(views: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in views.items())


def run(argv=None) -> dict:
    """Evaluate, print the table, write JSON and Markdown; returns the JSON record."""
    args = arg_parser().parse_args(argv)  # first, so that a flag error needs no heavy import
    import numpy as np

    from grepq_core.evaluation import protocols as E
    from grepq_core.evaluation.datasets import load_dataset
    from grepq_core.files import strict_json, write_file
    from grepq_core.model import registry
    from grepq_core.model.extractor import load_available
    from pipelines.evaluate_data import Cache, gather

    spec = encoder_spec(args)
    df = load_dataset(args.dataset, args.root, labels=args.labels, lower_is_better=args.lower_is_better)
    extractor, missing = load_available(spec)
    for name, why in missing.items():
        log.warning("%s pathway not run: %s", name.upper(), flag_message(why, arg_parser()))
    cache = Cache(args.features_cache, spec, extractor.identities)
    rows, base, dropped = gather(df["path"].tolist(), extractor, cache)

    keep = [i for i, r in enumerate(rows) if r is not None]
    df = df.iloc[keep].reset_index(drop=True)
    rows, base = [rows[i] for i in keep], [base[i] for i in keep]
    mos = df["score"].to_numpy(dtype=np.float64)
    reasons = _pathway_reasons(spec, missing)

    mapping = args.plcc_mapping or ("cubic" if spec.profile == "reference" else "logistic")
    protocol = {"name": args.protocol, "n_train": args.n_train, "splits": args.splits, "seed": args.seed,
                "test_fraction": args.test_fraction}
    results = []
    if args.protocol in ("zero-shot", "both"):
        results += _zero_shot_rows(rows, base, mos, reasons, _zs_ll_reason(spec), mapping)
    if args.protocol in ("few-shot", "both"):
        splits = E.content_splits(df, args.n_train, args.splits, args.seed, args.test_fraction)
        groups = df["group"].astype(str).to_numpy()
        protocol.update(test_contents=len(set(groups[splits[0][1]])),
                        test_images=int(np.median([len(test) for _, test in splits])))
        results += _few_shot_rows(rows, base, mos, splits, reasons, mapping, groups)

    report = {
        "dataset": args.dataset, "root": args.root, "labels": args.labels, "images": len(df),
        "groups": int(df["group"].nunique()), "dropped": dropped,
        "encoders": {name: (extractor.encoders[name].identity if name in extractor.encoders else None)
                     for name in registry.names()},
        "not_loaded": missing, "views": dataclasses.asdict(spec.views), "profile": spec.profile,
        "plcc_mapping": mapping, "protocol": protocol,
        "results": [dataclasses.asdict(r) for r in results],
    }
    text = _header(args, report) + "\n\n" + E.markdown_table(results) + "\n"
    if spec.profile == "reference":
        text += "\nIn the paper's layout:\n\n" + E.paper_table(results, args.dataset) + "\n"
    print("\n" + text)
    folder = args.output.rstrip("/")
    write_file(f"{folder}/evaluation.md", text)
    write_file(f"{folder}/evaluation.json", json.dumps(strict_json(report), indent=1))
    log.info("wrote %s/evaluation.json and evaluation.md", args.output)
    return report
