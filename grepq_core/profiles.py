"""Two ways to run the method: `fast` (batched, grepq's default) and `reference` (the authors' code).

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
term; MODEL_CARD.md and docs/method.md give the measured difference.
"""
from __future__ import annotations

import dataclasses

from grepq_core.errors import GrepqError
from grepq_core.extractor import EncoderSpec, ViewConfig

__all__ = ["PROFILES", "spec_for"]

PROFILES = {
    "fast": {},
    "reference": {"views": ViewConfig(ll_view="full", hl_size=None, max_patches=None),
                  "hl_positional": "omit", "ll_shrinkage": 0.0, "ll_isotropic": 0.0},
}


def spec_for(profile: str, **settings) -> EncoderSpec:
    """An EncoderSpec for `profile`; `settings` may not change what the profile fixes."""
    if profile not in PROFILES:
        raise GrepqError(f"`profile` must be one of {', '.join(PROFILES)}, got {profile!r}")
    fixed = PROFILES[profile]
    clash = [k for k in settings if k in fixed and settings[k] != fixed[k]]
    if clash:
        raise GrepqError(f"`profile` {profile} fixes {', '.join(f'`{k}`' for k in clash)}: leave them out")
    return dataclasses.replace(EncoderSpec(), profile=profile, **{**settings, **fixed})
