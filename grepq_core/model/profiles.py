"""Two ways to run the method, `fast` (batched, grepq's default) and `reference` (the authors' code),
and `spec_for`, the one place that turns a profile and a run's choices into an `EncoderSpec`.

docs/method.md, "Profiles". `reference` computes what the authors' released
code computes, so that their released weights reproduce their figures:

- LL features of the whole image at native resolution (not fragments),
  input in whatever range the checkpoint says (the authors' LL checkpoint:
  plain [0, 1]);
- HL features of the whole CLIP-normalised image at native resolution, with
  the attention pool's positional embedding left out (as the authors'
  README instructs), not interpolated;
- zero-shot LL on every 96x96 patch at stride 48, no cap, and the distance
  with (S_r + S_t) / 2 + 0.001 I, no covariance shrinkage and no isotropic
  term;
- images are upscaled only when their shorter side is under one patch
  (the reference cannot score those at all).

`fast` cuts fixed-size views that batch on a GPU (fragments, a 224 CLIP
crop, 32 patches), shrinks the pooled covariance and adds the isotropic
term; benchmarks/notes.md and docs/method.md give the measured difference. The
views a profile fixes are here; the pathway settings it fixes are declared
by each pathway (`Setting.fixed`).
"""
from __future__ import annotations

import dataclasses

from grepq_core.errors import GrepqError, did_you_mean
from grepq_core.model import registry
from grepq_core.model.settings import EncoderSpec, ViewConfig

__all__ = ["PROFILES", "GENERAL", "VIEW_FIELDS", "spec_for"]

# profile -> the view fields it fixes
PROFILES = {
    "fast": {},
    "reference": {"ll_view": "full", "hl_size": None, "max_patches": None},
}
# EncoderSpec's own choices besides pathways and profile
GENERAL = ("device", "decode", "batch_size", "max_image_seconds", "max_image_memory", "max_batch_bytes")
VIEW_FIELDS = tuple(f.name for f in dataclasses.fields(ViewConfig))


def spec_for(profile: str = "fast", pathways: str | tuple[str, ...] = ("ll", "hl"), **choices) -> EncoderSpec:
    """The spec of a run: `profile`, `pathways`, and `choices` by name, each one of `GENERAL`, a view field
    (`VIEW_FIELDS`) or a registered pathway's setting; what is not given takes its default.

    A choice that differs from what the profile fixes, and an unknown name,
    are errors naming the setting.
    """
    if profile not in PROFILES:
        raise GrepqError(f"`profile` must be one of {', '.join(PROFILES)}, got {profile!r}")
    declared = {s.name: s for s in registry.settings()}
    known = {*GENERAL, *VIEW_FIELDS, *declared}
    for name in choices:
        if name not in known:
            raise GrepqError(f"unknown setting `{name}`.{did_you_mean(name, known)}")
    fixed = {**PROFILES[profile], **{n: s.fixed[profile] for n, s in declared.items() if profile in s.fixed}}
    clash = [n for n, v in choices.items() if n in fixed and v != fixed[n]]
    if clash:
        raise GrepqError(f"`profile` {profile} fixes {', '.join(f'`{n}`' for n in clash)}: leave them out")
    chosen = {**choices, **fixed}
    for name, setting in declared.items():
        if setting.choices and chosen.get(name, setting.default) not in setting.choices:
            raise GrepqError(f"`{name}` must be one of {', '.join(map(str, setting.choices))}, got {chosen[name]!r}")
    return EncoderSpec(
        pathways=registry.parse_pathways(pathways), profile=profile,
        views=ViewConfig(**{n: v for n, v in chosen.items() if n in VIEW_FIELDS}),
        settings=tuple((n, chosen.get(n, s.default)) for n, s in declared.items()),
        sources=registry.sources(),
        **{n: v for n, v in chosen.items() if n in GENERAL})
