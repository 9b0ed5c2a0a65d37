"""The pathways as data: one registry entry each, and everything else loops over it.

docs/method.md, "Two pathways": GRepQ describes an image with a low-level
(LL) and a high-level (HL) encoder. Each `Pathway` here says how its encoder
is built and loaded, which views it cuts from a decoded image, and how its
outputs become a feature vector and a zero-shot score. A loaded `Encoder`
carries its input normalisation, which comes with the weights (an LL
checkpoint says it, open_clip's preprocess config of the chosen HL weights
says it), never from the pathway's name.

The feature rows' columns follow from the names: ``{name}_features``,
``zs_{name}``, ``{name}_identity`` and, for a pathway whose zero-shot rule
depends on more than its encoder (LL: the pristine model),
``zs_{name}_identity``. Adding a pathway is one `register` call.
"""
from __future__ import annotations

from grepq_core.errors import GrepqError, did_you_mean
from grepq_core.hl_pathway import HLPathway
from grepq_core.ll_pathway import LLPathway
from grepq_core.pathway import Encoder, Pathway

__all__ = ["Encoder", "Pathway", "PATHWAYS", "register", "unregister", "get", "names",
           "parse_pathways", "columns"]


PATHWAYS: dict[str, Pathway] = {}


def register(pathway: Pathway) -> Pathway:
    """Add a pathway; its name becomes a value of --pathways and a column prefix."""
    if not pathway.name.isidentifier() or pathway.name in PATHWAYS:
        raise ValueError(f"pathway name {pathway.name!r} is taken or not an identifier")
    PATHWAYS[pathway.name] = pathway
    return pathway


def unregister(name: str) -> None:
    PATHWAYS.pop(name, None)


def get(name: str) -> Pathway:
    if name not in PATHWAYS:
        raise GrepqError(f"unknown pathway {name!r}.{did_you_mean(name, PATHWAYS)} Known: {', '.join(PATHWAYS)}")
    return PATHWAYS[name]


def names() -> tuple[str, ...]:
    """Registered pathway names, in registration order (the order of feature blocks)."""
    return tuple(PATHWAYS)


def parse_pathways(text: str) -> tuple[str, ...]:
    """'ll,hl' -> ('ll', 'hl'), in registry order; unknown names are an error."""
    chosen = {p.strip().lower() for p in text.split(",") if p.strip()}
    if not chosen:
        raise GrepqError(f"`pathways` takes a comma-separated subset of {','.join(PATHWAYS)}; got {text!r}")
    for name in chosen:
        get(name)
    return tuple(p for p in PATHWAYS if p in chosen)


def columns() -> dict[str, list[str]]:
    """Feature-row column names by kind, in schema order, for every registered pathway."""
    ps = list(PATHWAYS.values())
    return {
        "features": [p.features_column for p in ps],
        "zero_shot": [p.zero_shot_column for p in ps],
        "calibrated": [p.calibrated_column for p in ps if p.calibrated_column],
        "identity": [p.identity_column for p in ps] + [p.zero_shot_identity_column for p in ps
                                                      if p.zero_shot_identity_column],
    }



register(LLPathway())
register(HLPathway())
