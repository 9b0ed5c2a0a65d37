"""Feature rows -> the matrix the regressor sees, and what it was made of.

A row carries one feature block per pathway that ran (``ll_features``,
``hl_features``, ...: grepq_core/model/registry.py) and the identities of the
encoders that produced them. The layout (which blocks, in which order, how
wide) plus the identities are stored with a fitted regressor, so a model is
never applied to features from other encoders.

One more block can join them: ``zero_shot`` (width 1), the row's zero-shot
score (`zero_shot_score`), whose identity names the rule and every model
behind it (`zero_shot_identity`), so that a fit can use what zero-shot knows.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

from grepq_core.errors import GrepqError
from grepq_core.model import registry

__all__ = ["ZERO_SHOT_BLOCK", "zero_shot_score", "zero_shot_identity", "block_identity", "feature_layout",
           "feature_matrix", "row_vector"]

ZERO_SHOT_BLOCK = "zero_shot"


def zero_shot_score(row: Mapping) -> tuple[float | None, str]:
    """(score, scorer name): the combined zero-shot score when every combined pathway ran, else the first
    pathway's that did; (None, "zero-shot:none") when no pathway scored."""
    for column in (registry.COMBINED, *registry.columns()["zero_shot"]):
        value = row.get(column)
        if value is not None and math.isfinite(value):
            return value, f"zero-shot:{column[3:]}"
    return None, "zero-shot:none"


def zero_shot_identity(row: Mapping) -> str:
    """What a row's zero-shot score depends on: the rule that picked it and every identity column."""
    columns = ("profile", *registry.columns()["identity"])
    return "|".join([zero_shot_score(row)[1], *(f"{c}={row.get(c)}" for c in columns)])


def block_identity(row: Mapping, block: str) -> str | None:
    """The identity of one feature block of a row (a pathway's encoder, or the zero-shot rule)."""
    if block == ZERO_SHOT_BLOCK:
        return zero_shot_identity(row)
    return row.get(registry.get(block).identity_column)


def feature_layout(rows: Iterable[Mapping]) -> tuple[list[list], dict[str, str]]:
    """([[block, width], ...], {block: identity}) shared by all rows, or an error."""
    layout, identities = None, None
    for row in rows:
        present = [p for p in registry.PATHWAYS.values() if row.get(p.features_column) is not None]
        this_layout = [[p.name, len(row[p.features_column])] for p in present]
        this_ids = {p.name: row[p.identity_column] for p in present}
        if layout is None:
            layout, identities = this_layout, this_ids
        elif (this_layout, this_ids) != (layout, identities):
            raise GrepqError(f"feature rows disagree: {row['path']} has {this_layout} {this_ids}, "
                             f"others {layout} {identities}; extract them again with one set of encoders")
    if not layout:
        raise GrepqError("no feature rows with features")
    return layout, identities


def row_vector(row: Mapping, layout: list[list]) -> np.ndarray:
    """One row's blocks concatenated in layout order (float64)."""
    parts = []
    for block, width in layout:
        if block == ZERO_SHOT_BLOCK:
            score = zero_shot_score(row)[0]
            values = None if score is None else [score]
        else:
            values = row.get(registry.get(block).features_column)
        if values is None or len(values) != width:
            raise GrepqError(f"{row.get('path')}: missing or wrong-width {block} features for layout {layout}")
        parts.append(np.asarray(values, dtype=np.float64))
    return np.concatenate(parts)


def feature_matrix(rows: list[Mapping], layout: list[list]) -> np.ndarray:
    return np.stack([row_vector(r, layout) for r in rows]) if rows else np.empty((0, sum(w for _, w in layout)))
