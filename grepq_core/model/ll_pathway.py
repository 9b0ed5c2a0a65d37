"""The low-level pathway: LL features of fragments, and the NIQE-style zero-shot score.

docs/method.md, "Two pathways" and "Zero-shot": the LL encoder sees the
image's fragments (or the whole image) and every zero-shot patch; the
patch features' Gaussian is compared with the pristine model's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from grepq_core.errors import GrepqError
from grepq_core.model.pathway import Encoded, Encoder, Pathway
from grepq_core.model.settings import Setting, none_or_str
from grepq_core.model.zero_shot import LL_ISOTROPIC, LL_SHRINKAGE

if TYPE_CHECKING:
    from grepq_core.model.anchors import Anchors
    from grepq_core.model.pristine import PristineModel

__all__ = ["LLPathway", "LLZeroShot"]


@dataclass(frozen=True)
class LLZeroShot:
    """The zero-shot LL rule a loaded encoder scores with: the pristine model, the distance, the 0-100 anchors."""

    pristine: "PristineModel"
    shrinkage: float
    isotropic: float
    anchors: "Anchors | None"


class LLPathway(Pathway):
    name = "ll"
    title = "LL"
    combined = True
    zero_shot_rule = True  # zs_ll also depends on the pristine model and the distance settings
    calibrated = True  # zs_ll_100: the distance on the pristine model's 0-100 scale, where it has one
    settings = (
        Setting("ll_weights", "shipped", "LL encoder checkpoint: 'shipped', a path or an fsspec URL"),
        Setting("pristine", "shipped", "pristine model .npz for the zero-shot LL score: 'shipped', a path/URL, "
                "or 'none'", parse=none_or_str),
        Setting("ll_shrinkage", LL_SHRINKAGE, "zero-shot LL distance: shrinkage of the pooled covariance "
                "towards the identity (0: the paper's formula)", parse=float, fixed={"reference": 0.0}),
        Setting("ll_isotropic", LL_ISOTROPIC, "zero-shot LL distance: weight of its isotropic term (0: the "
                "paper's formula)", parse=float, fixed={"reference": 0.0}),
    )

    def load(self, spec) -> Encoder:
        from grepq_core.model.anchors import setting_key
        from grepq_core.model.ll_encoder import load_ll_encoder
        from grepq_core.model.pristine import load_pristine
        from grepq_core.model.shipped import SHIPPED_PRISTINE
        from grepq_core.model.zero_shot import ll_score_identity

        module, identity = load_ll_encoder(spec.setting("ll_weights"))
        source = spec.setting("pristine")
        if not (spec.views.zero_shot and source):
            return Encoder(self, module, identity, module.normalization, fixed_shape=spec.views.ll_view == "fragments")
        pristine = load_pristine(str(SHIPPED_PRISTINE) if source == "shipped" else source, module, identity)
        if pristine.encoder_identity != identity:
            raise GrepqError(
                f"pristine model {source} was built with {pristine.encoder_identity}, "
                f"but the LL encoder is {identity}: pass the matching `pristine` "
                "(grepq build-pristine makes one), or `pristine` none")
        rule = LLZeroShot(pristine, spec.setting("ll_shrinkage"), spec.setting("ll_isotropic"),
                          pristine.calibration.get(setting_key(spec)))
        return Encoder(self, module, identity, module.normalization,
                       zero_shot_identity=ll_score_identity(pristine, rule.shrinkage, rule.anchors, rule.isotropic),
                       fixed_shape=spec.views.ll_view == "fragments", state=rule)

    def views(self, image, spec) -> dict:
        from grepq_core.model import views as V

        config = spec.views
        out = {"ll": V.fragments(image, grid=config.grid, size=config.fragment)
               if config.ll_view == "fragments" else image}
        if config.zero_shot:
            out["ll_patches"] = V.patches(image, size=config.patch_size, stride=config.patch_stride,
                                          max_patches=config.max_patches)
        return out

    def encode(self, encoder: Encoder, run, views: list[dict]) -> Encoded:
        import numpy as np

        from grepq_core.model.zero_shot import ll_distance, ll_score_of_distance

        features = [out[0] for out in run(encoder.module, [v["ll"] for v in views], encoder.normalization,
                                          encoder.fixed_shape)]
        rule: LLZeroShot | None = encoder.state
        if rule is None:
            return Encoded(features, [float("nan")] * len(views), [float("nan")] * len(views))
        counts = [len(v["ll_patches"]) for v in views]
        patch_out = run(encoder.module, [p for v in views for p in v["ll_patches"]], encoder.normalization, True)
        flat = np.stack([out[0] for out in patch_out]).astype(np.float64)
        bounds = np.cumsum([0] + counts)
        distances = [ll_distance(rule.pristine, flat[a:b], shrinkage=rule.shrinkage, isotropic=rule.isotropic)
                     for a, b in zip(bounds[:-1], bounds[1:])]
        calibrated = [rule.anchors.score(d) if rule.anchors else float("nan") for d in distances]
        return Encoded(features, [ll_score_of_distance(d) for d in distances], calibrated)
