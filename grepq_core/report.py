"""One self-contained HTML page that shows what a scoring run did.

Not part of docs/method.md: a way to look at grepq's outputs (scores, the
keep / reject split, the zero-shot scores of both pathways, dead letters,
and the parameters behind them) without writing any code. Everything the
page shows is inlined: plots as PNG and thumbnails as JPEG data URIs, CSS in
a <style> element, no scripts, so the file can be mailed or archived.

This module is pure: tables and parameters in, an HTML string out. Reading
the tables and the images is pipelines/report.py's job.
"""
from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from grepq_core.model import registry

__all__ = ["SECTIONS", "ReportInputs", "decile_rows", "keep_threshold", "thumbnail_jpeg", "render_report"]

# section id -> heading, in page order
SECTIONS = {
    "histogram": "Score histogram",
    "deciles": "Images at each decile of score",
    "scatter": "Zero-shot scores: low level vs high level",
    "dead-letters": "Dead letters",
    "parameters": "Parameters",
}
_KEEP_COLOUR, _REJECT_COLOUR = "#2f7d4f", "#b5483b"
_MAX_SCATTER_POINTS = 20_000
_MAX_DEAD_LETTER_ROWS = 1_000
_NO_FEATURES = "the extract run's output was not found (grepq report --features)"
# the page may load nothing from outside itself
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass
class ReportInputs:
    """Everything the page shows.

    `scores` has the score columns and `dead_letters` the dead-letter
    columns (transforms/store.py); `identities` maps a pathway to the
    encoder identities found in the feature rows, and ``"profile"`` to the
    profiles they were made with (None: the extract run's output was not
    found, so encoders and dead letters are unknown); `model` is the fitted
    ridge's fields (alpha, n_train, cv, ...) when the scorer was a ridge;
    `thumbnails` maps a path of `decile_rows` to JPEG bytes (missing paths
    are shown as unreadable); `threshold` overrides the run's own.
    """

    scores: pd.DataFrame
    dead_letters: pd.DataFrame
    identities: dict[str, list[str]] | None = field(default_factory=dict)
    model: dict | None = None
    thumbnails: dict[str, bytes] = field(default_factory=dict)
    threshold: float | None = None
    source: str = ""
    run: dict = field(default_factory=dict)  # what the extract runs say: date, input, grepq version


def decision_values(scores: pd.DataFrame) -> pd.Series:
    """What each image was kept or rejected by (`fitting.scoring.decision_value`): `calibrated`, else `score`."""
    return scores["calibrated"].where(scores["calibrated"].notna(), scores["score"])


def _value_label(scores: pd.DataFrame) -> str:
    return "calibrated score" if scores["calibrated"].notna().any() else "score"


def keep_threshold(scores: pd.DataFrame, threshold: float | None = None) -> float | None:
    """The given threshold, else the run's own: the lowest kept score.

    None when nothing was kept, or when every scored image was (a run
    without --keep-above or --keep-top-fraction has no threshold to draw).
    """
    if threshold is not None:
        return float(threshold)
    kept = _kept(scores)
    values = decision_values(scores)
    scored = values.notna().to_numpy()
    if not kept.any() or kept[scored].all():
        return None
    return float(values[kept].dropna().min())


def decile_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The scored rows nearest each decile (0%, 10%, ..., 100%) of `decision_values`, lowest first.

    Columns: decile (0..100), path, score (the decision value). A collection
    of fewer than 11 images shows each image once.
    """
    ranked = (scores.assign(score=decision_values(scores)).dropna(subset=["score"])
              .sort_values(["score", "path"], kind="stable"))
    if ranked.empty:
        return pd.DataFrame({"decile": [], "path": [], "score": []})
    positions = {}
    for decile in range(0, 101, 10):
        positions.setdefault(round(decile / 100 * (len(ranked) - 1)), decile)
    picked = ranked.iloc[list(positions)]
    return pd.DataFrame({"decile": list(positions.values()), "path": picked["path"].to_numpy(),
                         "score": picked["score"].to_numpy()})


def thumbnail_jpeg(image: np.ndarray, size: int = 160, quality: int = 85) -> bytes:
    """An HxWx3 uint8 image shrunk to fit `size` x `size`, as JPEG bytes."""
    thumb = Image.fromarray(image)
    thumb.thumbnail((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _png(figure: Figure) -> str:
    """An <img> holding the figure as an embedded PNG."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer, metadata={"Software": None})
    return f'<img class="plot" alt="" src="{_data_uri(buffer.getvalue(), "image/png")}">'


def _kept(scores: pd.DataFrame) -> np.ndarray:
    return scores["keep"].fillna(False).astype(bool).to_numpy()


def _histogram(scores: pd.DataFrame, threshold: float | None) -> str:
    values = decision_values(scores).to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return "<p>No image has a score, so there is no histogram.</p>"
    kept = _kept(scores)
    figure = Figure(figsize=(9, 3.2), dpi=110, layout="constrained")
    ax = figure.add_subplot()
    bins = np.histogram_bin_edges(values[finite], bins=int(np.clip(np.sqrt(finite.sum()) * 2, 10, 60)))
    ax.hist([values[finite & kept], values[finite & ~kept]], bins=bins, stacked=True,
            color=[_KEEP_COLOUR, _REJECT_COLOUR], label=["kept", "rejected"])
    if threshold is not None:
        ax.axvline(threshold, color="#222", linestyle="--", linewidth=1.5, label=f"threshold {threshold:.4g}")
    ax.set_xlabel(f"{_value_label(scores)} (higher is better)")
    ax.set_ylabel("images")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False)
    note = "" if finite.all() else f"<p>{int((~finite).sum())} image(s) have no score and are rejected.</p>"
    return _png(figure) + note


def _deciles(scores: pd.DataFrame, thumbnails: dict[str, bytes]) -> str:
    rows = decile_rows(scores)
    if rows.empty:
        return "<p>No image has a score.</p>"
    cells = []
    for decile, path, score in rows.itertuples(index=False):
        data = thumbnails.get(path)
        picture = (f'<img alt="{_e(path)}" src="{_data_uri(data, "image/jpeg")}">' if data
                   else '<div class="missing">unreadable</div>')
        cells.append(f'<figure title="{_e(path)}">{picture}<figcaption><b>{_number(float(score))}</b>'
                     f'<span>{decile}%</span><span class="path">{_e(path.rsplit("/", 1)[-1])}</span>'
                     "</figcaption></figure>")
    return f'<div class="strip">{"".join(cells)}</div>'


def _scatter(scores: pd.DataFrame) -> str:
    ll = scores["zs_ll"].to_numpy(dtype=np.float64)
    hl = scores["zs_hl"].to_numpy(dtype=np.float64)
    has_ll, has_hl = np.isfinite(ll).any(), np.isfinite(hl).any()
    if not (has_ll and has_hl):
        missing = [name for name, has in (("low-level (LL)", has_ll), ("high-level (HL)", has_hl)) if not has]
        return (f"<p>No scatter: no image has a zero-shot {' or '.join(missing)} score "
                f"(the {' and '.join(missing)} pathway did not run, or ran without its zero-shot score).</p>")
    both = np.flatnonzero(np.isfinite(ll) & np.isfinite(hl))
    shown = both
    if len(both) > _MAX_SCATTER_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(both, _MAX_SCATTER_POINTS, replace=False))
    kept = _kept(scores)[shown]
    figure = Figure(figsize=(6, 4.5), dpi=110, layout="constrained")
    ax = figure.add_subplot()
    size = 24 if len(shown) < 1000 else 6
    for mask, colour, label in ((kept, _KEEP_COLOUR, "kept"), (~kept, _REJECT_COLOUR, "rejected")):
        ax.scatter(ll[shown][mask], hl[shown][mask], s=size, alpha=0.7, color=colour, label=label, linewidths=0)
    ax.set_xlabel("zero-shot LL score")
    ax.set_ylabel("zero-shot HL score")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False)
    note = f"{len(shown)} of {len(both)} images with both scores" if len(shown) < len(both) else \
        f"{len(both)} images with both scores"
    return _png(figure) + f"<p>{note}.</p>"


def _table(header: list[str], rows) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _dead_letters(dead: pd.DataFrame, features_found: bool) -> str:
    if not features_found:
        return f"<p>Dead letters unknown: {_e(_NO_FEATURES)}.</p>"
    if dead.empty:
        return "<p>No dead letters: every input image was decoded and scored.</p>"
    counts = dead.groupby(["stage", "reason"], dropna=False).size().reset_index(name="images")
    counts = counts.sort_values(["images", "stage", "reason"], ascending=[False, True, True])
    listed = dead.sort_values(["reason", "path"]).head(_MAX_DEAD_LETTER_ROWS)
    more = "" if len(dead) <= len(listed) else f"<p>First {len(listed)} of {len(dead)} shown.</p>"
    return ("<h3>Counts per reason</h3>" + _table(["stage", "reason", "images"], counts.itertuples(index=False))
            + "<h3>Images</h3>" + more
            + _table(["path", "stage", "reason", "detail"],
                     listed[["path", "stage", "reason", "detail"]].fillna("").itertuples(index=False)))


def _model_rows(model: dict) -> list[tuple[str, str]]:
    cv = model.get("cv") or {}
    layout = ", ".join(f"{name}:{width}" for name, width in model.get("layout", []))
    return [("ridge alpha", _number(model.get("alpha"))), ("labelled images (n_train)", _number(model.get("n_train"))),
            (f"CV SRCC ({cv.get('folds', '?')}-fold)", _number(cv.get("srcc"), 3)),
            (f"CV PLCC ({cv.get('folds', '?')}-fold)", _number(cv.get("plcc"), 3)),
            ("feature columns", layout), ("label direction", model.get("direction", ""))]


def _scale_text(scores: pd.DataFrame) -> str:
    if not scores["calibrated"].notna().any():
        return "score"
    if scores["scorer"].fillna("").str.startswith("zero-shot").all():
        return ("calibrated score, 0-100: 90 is as far from the pristine model as a typical pristine photo, "
                "10 as a typical heavily distorted one (docs/method.md, \"Calibrated scale\")")
    return "calibrated score: the prediction on the --scale range"


def _threshold_text(threshold: float | None, given: bool, kept: int) -> str:
    if threshold is None:
        return "none: every image was kept" if kept else "none: no image was kept"
    return f"{threshold:.4g} ({'given' if given else 'lowest kept score'})"


def _parameters(inputs: ReportInputs, threshold: float | None) -> str:
    scores = inputs.scores
    kept = int(_kept(scores).sum())
    rows = [("output", inputs.source)] + [(k, v) for k, v in (inputs.run or {}).items()]
    for name in registry.names():
        found = (inputs.identities or {}).get(name) or []
        rows.append((f"{registry.get(name).title or name} encoder", ", ".join(found) if found else
                     "did not run" if inputs.identities is not None else _NO_FEATURES))
    if inputs.identities is not None:
        rows.append(("profile", ", ".join(inputs.identities.get("profile") or []) or "n/a"))
    rows += [("scorer", ", ".join(sorted(scores["scorer"].dropna().unique())) or "n/a"),
             ("kept or rejected by", _scale_text(scores)),
             ("threshold", _threshold_text(threshold, given=inputs.threshold is not None, kept=kept)),
             ("images scored", str(len(scores))), ("kept", str(kept)), ("rejected", str(len(scores) - kept)),
             ("dead-lettered", str(len(inputs.dead_letters)))]
    if inputs.model:
        rows += _model_rows(inputs.model)
    return _table(["parameter", "value"], rows)


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2327;background:#f4f5f7;margin:0}
header{background:#1f2a36;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c8d0d8}
nav{padding:8px 32px;background:#fff;border-bottom:1px solid #dde1e6}
nav a{margin-right:18px;color:#2d5f8b;text-decoration:none}
main{max-width:1120px;margin:0 auto;padding:8px 24px 40px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;margin:18px 0;padding:14px 22px}
h2{font-size:18px;margin:4px 0 12px} h3{font-size:15px;margin:14px 0 6px}
.summary{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0 0}
.summary div{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:8px 16px}
.summary b{display:block;font-size:22px}
img.plot{max-width:100%;height:auto}
.strip{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;flex:0 0 auto;width:164px;text-align:center}
figure img,.missing{width:160px;height:160px;object-fit:contain;background:#eceef1;border-radius:4px}
.missing{display:flex;align-items:center;justify-content:center;color:#777}
figcaption{font-size:13px;display:flex;flex-direction:column}
figcaption .path{color:#666;font-size:11px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
table{border-collapse:collapse;width:100%;font-size:13px;margin-bottom:8px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e8eb;vertical-align:top;word-break:break-all}
th{background:#f0f2f4}
"""


def render_report(inputs: ReportInputs) -> str:
    """The whole page as one HTML string."""
    scores = inputs.scores
    threshold = keep_threshold(scores, inputs.threshold)
    kept = int(_kept(scores).sum())
    bodies = {
        "histogram": _histogram(scores, threshold),
        "deciles": _deciles(scores, inputs.thumbnails),
        "scatter": _scatter(scores),
        "dead-letters": _dead_letters(inputs.dead_letters, inputs.identities is not None),
        "parameters": _parameters(inputs, threshold),
    }
    nav = "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS.items())
    sections = "".join(f'<section id="{key}"><h2>{_e(SECTIONS[key])}</h2>{body}</section>'
                       for key, body in bodies.items())
    summary = "".join(f"<div><b>{value}</b>{_e(label)}</div>" for label, value in (
        ("scored", len(scores)), ("kept", kept), ("rejected", len(scores) - kept),
        ("dead-lettered", len(inputs.dead_letters))))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f"<title>grepq report: {_e(inputs.source)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>grepq report</h1><p>{_e(inputs.source)}</p></header><nav>{nav}</nav>"
            f'<main><div class="summary">{summary}</div>{sections}</main></body></html>\n')
