"""The low-level pathway: LL features of fragments, and the NIQE-style zero-shot score.

docs/method.md, "Two pathways" and "Zero-shot": the LL encoder sees the
image's fragments (or the whole image) and every zero-shot patch; the
patch features' Gaussian is compared with the pristine model's.
"""
from __future__ import annotations

import numpy as np
import torch

from grepq_core import views as V
from grepq_core.calibration import setting_key
from grepq_core.errors import GrepqError
from grepq_core.ll_encoder import load_ll_encoder
from grepq_core.pathway import Encoder, Pathway
from grepq_core.pristine import load_pristine
from grepq_core.shipped import SHIPPED_PRISTINE
from grepq_core.zero_shot import ll_distance, ll_score_identity, ll_score_of_distance

__all__ = ["LLPathway"]


class LLPathway(Pathway):
    name = "ll"
    title = "LL"
    combined = True
    zero_shot_rule = True  # zs_ll also depends on the pristine model and the distance settings
    calibrated = True  # zs_ll_100: the distance on the pristine model's 0-100 scale, where it has one

    def load(self, spec) -> Encoder:
        module, identity = load_ll_encoder(spec.ll_weights)
        pristine = None
        if spec.views.zero_shot and spec.pristine:
            pristine = load_pristine(str(SHIPPED_PRISTINE) if spec.pristine == "shipped" else spec.pristine,
                                     module, identity)
            if pristine.encoder_identity != identity:
                raise GrepqError(
                    f"pristine model {spec.pristine} was built with {pristine.encoder_identity}, "
                    f"but the LL encoder is {identity}: pass the matching `pristine` "
                    "(grepq build-pristine makes one), or `pristine` none")
        anchors = pristine and pristine.calibration.get(setting_key(spec))
        return Encoder(self, module, identity, module.normalization,
                       zero_shot_identity=pristine and ll_score_identity(pristine, spec.ll_shrinkage, anchors,
                                                                         spec.ll_isotropic),
                       state={"pristine": pristine, "shrinkage": spec.ll_shrinkage, "isotropic": spec.ll_isotropic,
                              "anchors": anchors, "fixed_shape": spec.views.ll_view == "fragments"})

    def views(self, image: torch.Tensor, config) -> dict[str, torch.Tensor]:
        out = {"ll": V.fragments(image, grid=config.grid, size=config.fragment)
               if config.ll_view == "fragments" else image}
        if config.zero_shot:
            out["ll_patches"] = V.patches(image, size=config.patch_size, stride=config.patch_stride,
                                          max_patches=config.max_patches)
        return out

    def encode(self, encoder: Encoder, run, views: list[dict]) -> tuple[list[np.ndarray], list[float], list[float]]:
        fixed = encoder.state["fixed_shape"]
        features = [out[0] for out in run(encoder.module, [v["ll"] for v in views], encoder.normalization, fixed)]
        pristine, anchors = encoder.state["pristine"], encoder.state["anchors"]
        if pristine is None:
            return features, [float("nan")] * len(views), [float("nan")] * len(views)
        counts = [len(v["ll_patches"]) for v in views]
        patch_out = run(encoder.module, [p for v in views for p in v["ll_patches"]], encoder.normalization)
        flat = np.stack([out[0] for out in patch_out]).astype(np.float64)
        bounds = np.cumsum([0] + counts)
        distances = [ll_distance(pristine, flat[a:b], shrinkage=encoder.state["shrinkage"],
                                 isotropic=encoder.state["isotropic"])
                     for a, b in zip(bounds[:-1], bounds[1:])]
        calibrated = [anchors.score(d) if anchors else float("nan") for d in distances]
        return features, [ll_score_of_distance(d) for d in distances], calibrated

