"""The pathways as data: one registry entry each, and everything else loops over it.

docs/method.md, "Two pathways": GRepQ describes an image with a low-level
(LL) and a high-level (HL) encoder. Each `Pathway` says which settings it
takes, how its encoder is built and loaded, which views it cuts from a
decoded image, and how its outputs become a feature vector and a zero-shot
score (grepq_core/model/pathway.py).

The feature rows' columns follow from the names: ``{name}_features``,
``zs_{name}``, ``{name}_identity``, ``zs_{name}_100`` for a pathway with a
calibrated scale and, for a pathway whose zero-shot rule depends on more
than its encoder (LL: the pristine model), ``zs_{name}_identity``; plus
`COMBINED`, the sum of the combined pathways' scores. Adding a pathway is
one module and one `register` call. A spec names every registered
pathway's module (`sources`), and `ensure` imports and registers those a
worker process lacks, so a pathway registered in the launcher runs on
remote workers too.

Importing this module imports no encoder code (no torch, no open_clip).
"""
from __future__ import annotations

import importlib

from grepq_core.errors import GrepqError, did_you_mean
from grepq_core.model.hl_pathway import HLPathway
from grepq_core.model.ll_pathway import LLPathway
from grepq_core.model.pathway import Pathway
from grepq_core.model.settings import EncoderSpec, Setting

__all__ = ["COMBINED", "PATHWAYS", "register", "unregister", "get", "names", "parse_pathways", "columns",
           "settings", "sources", "ensure"]

COMBINED = "zs_combined"  # the combined zero-shot score's column (METHOD: score_LL + score_HL)

PATHWAYS: dict[str, Pathway] = {}


def register(pathway: Pathway) -> Pathway:
    """Add a pathway; its name becomes a value of `pathways` and a column prefix, its settings flags."""
    if not pathway.name.isidentifier() or pathway.name in PATHWAYS:
        raise ValueError(f"pathway name {pathway.name!r} is taken or not an identifier")
    taken = {s.name for s in settings()}
    clash = [s.name for s in pathway.settings if s.name in taken or s.name in EncoderSpec.__dataclass_fields__]
    if clash:
        raise ValueError(f"pathway {pathway.name!r} declares settings that exist already: {', '.join(clash)}")
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


def parse_pathways(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """'ll,hl' (or a sequence of names) -> ('ll', 'hl'), in registry order; unknown names are an error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = {p.strip().lower() for p in items if p.strip()}
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


def settings() -> list[Setting]:
    """Every registered pathway's declared settings, in registry order."""
    return [s for p in PATHWAYS.values() for s in p.settings]


def sources() -> tuple[tuple[str, str], ...]:
    """(name, "module:Class") of every registered pathway: what a worker imports to register it too."""
    return tuple((p.name, f"{type(p).__module__}:{type(p).__qualname__}") for p in PATHWAYS.values())


def ensure(spec: EncoderSpec) -> None:
    """Register, in this process, every pathway `spec` names that is not registered here yet."""
    for name, source in spec.sources:
        if name in PATHWAYS:
            continue
        module, _, qualname = source.partition(":")
        try:
            cls = importlib.import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as e:
            raise GrepqError(f"pathway {name!r} comes from {source}, which this process cannot import ({e}): "
                             "install it on the workers too") from e
        register(cls())


register(LLPathway())
register(HLPathway())
