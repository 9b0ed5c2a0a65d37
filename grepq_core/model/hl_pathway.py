"""The high-level pathway: CLIP image embeddings, and the prompt-preference zero-shot score.

docs/method.md, "Two pathways" and "Zero-shot": the HL encoder sees the CLIP
view; its embedding is the HL feature, and its cosine similarity with
"A good photo." against "A bad photo." gives score_HL.
"""
from __future__ import annotations

from grepq_core.model.pathway import Encoded, Encoder, Pathway
from grepq_core.model.settings import Setting, none_or_str

__all__ = ["HLPathway"]


class HLPathway(Pathway):
    name = "hl"
    title = "HL"
    combined = True
    settings = (
        Setting("hl_model", "RN50", "open_clip architecture name or model-config JSON path"),
        Setting("hl_weights", "openai", "open_clip pretrained tag, a checkpoint path/URL, or 'none' (random)",
                parse=none_or_str),
        Setting("hl_visual_weights", None, "state dict of the image tower alone (e.g. the authors' "
                "high_level_model_weights.pth), replacing that of --hl-weights, which still embeds the prompts"),
        Setting("hl_positional", "interpolate", "CLIP's attention-pool positional embedding at other input sizes: "
                "interpolated, or left out as the authors' code does", choices=("interpolate", "omit"),
                fixed={"reference": "omit"}),
    )

    def load(self, spec) -> Encoder:
        from grepq_core.model.hl_encoder import build_hl_encoder

        module, identity = build_hl_encoder(spec.setting("hl_model"), spec.setting("hl_weights"),
                                            visual_weights=spec.setting("hl_visual_weights"),
                                            positional=spec.setting("hl_positional"))
        return Encoder(self, module, identity, module.normalization, fixed_shape=spec.views.hl_size is not None)

    def views(self, image, spec) -> dict:
        from grepq_core.model import views as V

        return {"hl": V.clip_view(image, size=spec.views.hl_size)}

    def encode(self, encoder: Encoder, run, views: list[dict]) -> Encoded:
        from grepq_core.model.zero_shot import hl_score

        outputs = run(encoder.module, [v["hl"] for v in views], encoder.normalization, encoder.fixed_shape)
        return Encoded([emb for emb, _ in outputs], [float(hl_score(cos[0], cos[1])) for _, cos in outputs])
