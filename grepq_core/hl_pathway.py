"""The high-level pathway: CLIP image embeddings, and the prompt-preference zero-shot score.

docs/method.md, "Two pathways" and "Zero-shot": the HL encoder sees the CLIP
view; its embedding is the HL feature, and its cosine similarity with
"A good photo." against "A bad photo." gives score_HL.
"""
from __future__ import annotations

import numpy as np
import torch

from grepq_core import views as V
from grepq_core.hl_encoder import build_hl_encoder
from grepq_core.pathway import Encoder, Pathway
from grepq_core.zero_shot import hl_score

__all__ = ["HLPathway"]


class HLPathway(Pathway):
    name = "hl"
    title = "HL"
    combined = True

    def load(self, spec) -> Encoder:
        module, identity = build_hl_encoder(spec.hl_model, spec.hl_weights, visual_weights=spec.hl_visual_weights,
                                            positional=spec.hl_positional)
        return Encoder(self, module, identity, module.normalization,
                       state={"fixed_shape": spec.views.hl_size is not None})

    def views(self, image: torch.Tensor, config) -> dict[str, torch.Tensor]:
        return {"hl": V.clip_view(image, size=config.hl_size)}

    def encode(self, encoder: Encoder, run, views: list[dict]) -> tuple[list[np.ndarray], list[float], None]:
        outputs = run(encoder.module, [v["hl"] for v in views], encoder.normalization,
                      encoder.state["fixed_shape"])
        return [emb for emb, _ in outputs], [float(hl_score(cos[0], cos[1])) for _, cos in outputs], None

