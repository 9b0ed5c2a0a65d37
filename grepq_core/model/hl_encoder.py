"""The high-level (HL) encoder: CLIP's image tower and two frozen prompt embeddings.

docs/method.md, "Two pathways" and "Zero-shot": the HL feature is the CLIP image
embedding (RN50 with OpenAI weights in the paper); the zero-shot HL score
compares it with the text embeddings of "A good photo." and "A bad photo.".
The prompts are embedded once when the encoder is built and kept as a frozen
buffer; the text tower is then dropped.

Deviation from the reference code: to accept whole images of any size, the
reference drops the attention pool's positional embedding; here it is
interpolated (bicubic, antialiased, class token kept) to the input's token
grid, which docs/method.md names as the cleaner equivalent
(``positional="omit"`` leaves it out, as the reference does). At the native size
the output equals open_clip's own. The interpolated embedding is computed
per call and never written back, so one encoder can serve many threads.
The forward passes below re-run open_clip 3.3's `ModifiedResNet` and
`VisionTransformer` pieces with that embedding (including the private
`VisionTransformer._pool`, which is why setup.py pins open_clip to 3.3.x);
other towers (timm, Hugging Face) are refused.

Weights come from an open_clip pretrained tag, a checkpoint file or URL
(a full open_clip CLIP state dict, or what `save_hl_checkpoint` writes), or
nowhere (random init, for tests and benchmarks). A grepq HL checkpoint is a
plain dict::

    {"format": "grepq-hl/1", "model": name, "visual_state_dict": {...},
     "text_features": Tensor[2, D], "prompts": [good, bad],
     "input": {"mean": [...], "std": [...]}, "meta": {...}}

The input normalisation travels with the weights: open_clip's preprocess
config of the pretrained tag, OpenAI's mean/std for a plain CLIP state dict
(open_clip's default), and what a grepq HL checkpoint records.
"""

import math
import os
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn

from grepq_core.errors import GrepqError, WeightsUnavailable, did_you_mean
from grepq_core.model.views import OPENAI_CLIP, Normalization
from grepq_core.model.weights import load_checkpoint, parameters_digest, save_checkpoint

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_PROMPTS",
    "HLEncoder",
    "build_hl_encoder",
    "save_hl_checkpoint",
]

CHECKPOINT_FORMAT = "grepq-hl/1"
DEFAULT_PROMPTS = ("A good photo.", "A bad photo.")


class HLEncoder(nn.Module):
    """CLIP image tower + L2-normalised (good, bad) prompt embeddings; normalised input of any size."""

    def __init__(self, visual: nn.Module, text_features: torch.Tensor, prompts: tuple[str, str],
                 normalization: Normalization = OPENAI_CLIP, positional: str = "interpolate"):
        super().__init__()
        if not isinstance(visual, (ModifiedResNet, VisionTransformer)):
            raise GrepqError(
                f"the HL encoder supports open_clip ModifiedResNet and VisionTransformer image towers, "
                f"not {type(visual).__name__}"
            )
        norms = text_features.detach().float().norm(dim=-1)
        if text_features.shape[0] != 2 or not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            raise ValueError(f"text_features must be two L2-normalised rows, got norms {norms.tolist()}")
        self.visual = visual
        self.prompts = tuple(prompts)
        self.normalization = normalization  # what the weights expect of uint8 pixels
        self.positional = _checked_positional(positional)
        self.register_buffer("text_features", text_features.detach().float().clone())

    @property
    def image_size(self) -> tuple[int, int]:
        """The tower's native input size (height, width)."""
        size = self.visual.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, D]`` raw (unnormalised) image embedding, any H, W."""
        omit = self.positional == "omit"
        if isinstance(self.visual, ModifiedResNet):
            return _resnet_embedding(self.visual, x, omit)
        return _vit_embedding(self.visual, x, omit)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding ``[B, D]``, cosine similarity with (good, bad) ``[B, 2]``)."""
        embedding = self.encode_image(x)
        cosine = F.normalize(embedding, dim=-1) @ self.text_features.to(embedding.dtype).T
        return embedding, cosine


def _checked_positional(positional: str) -> str:
    if positional not in ("interpolate", "omit"):
        raise GrepqError(f"`hl_positional` must be interpolate or omit, got {positional!r}")
    return positional


def _resize_grid_embedding(pos: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Positional embedding ``[1 + gh*gw, C]`` resampled to `new_grid`; row 0 (class token) kept."""
    new_grid = tuple(new_grid)
    if tuple(grid) == new_grid:
        return pos
    cls_token, cells = pos[:1], pos[1:]
    cells = cells.reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
    cells = F.interpolate(cells.float(), size=new_grid, mode="bicubic", antialias=True, align_corners=False)
    cells = cells.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(pos.dtype)
    return torch.cat([cls_token, cells])


def _resnet_embedding(visual: ModifiedResNet, x: torch.Tensor, omit_positional: bool = False) -> torch.Tensor:
    """ModifiedResNet.forward with the attention pool's embedding fitted to the feature map."""
    x = visual.stem(x)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pool = visual.attnpool
    side = math.isqrt(pool.positional_embedding.shape[0] - 1)
    pos = _resize_grid_embedding(pool.positional_embedding, (side, side), x.shape[-2:])
    tokens = x.flatten(2).permute(2, 0, 1)  # NCHW -> (HW)NC
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens], dim=0)
    if not omit_positional:
        tokens = tokens + pos[:, None, :].to(tokens.dtype)
    out, _ = F.multi_head_attention_forward(
        query=tokens, key=tokens, value=tokens,
        embed_dim_to_check=tokens.shape[-1],
        num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        training=pool.training,
        need_weights=False,
    )
    return out[0]


def _vit_embedding(visual: VisionTransformer, x: torch.Tensor, omit_positional: bool = False) -> torch.Tensor:
    """VisionTransformer.forward with the positional embedding fitted to the patch grid."""
    x = visual.conv1(x)
    pos = _resize_grid_embedding(visual.positional_embedding, visual.grid_size, x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)  # [B, grid cells, width]
    cls_token = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
    x = torch.cat([cls_token, x], dim=1)
    if not omit_positional:
        x = x + pos.to(x.dtype)
    x = visual.ln_pre(visual.patch_dropout(x))
    x = visual.transformer(x)
    pooled, _ = visual._pool(x)
    return pooled @ visual.proj if visual.proj is not None else pooled


def _model_name(model: str) -> str:
    """open_clip name of `model`: itself, or the stem of a model-config JSON path."""
    return Path(model).stem if model.endswith(".json") else model


def _register_model(model: str) -> str:
    """Make `model` (an open_clip name or config JSON path) known to open_clip; return its name."""
    if model.endswith(".json"):
        if not os.path.isfile(model):
            raise GrepqError(f"HL model config file not found: {model}")
        open_clip.add_model_config(model)
    name = _model_name(model)
    known = open_clip.list_models()
    if name not in known:
        if model.endswith(".json"):
            raise GrepqError(f"{model} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
        raise GrepqError(f"unknown open_clip model {name!r}.{did_you_mean(name, known, n=5)} "
                         "(or pass an open_clip model-config JSON path)")
    return name


def _is_tag_like(weights: str) -> bool:
    """A bare word such as ``openai``: not a path, URL or file name."""
    return not os.path.exists(weights) and not any(c in weights for c in "/\\.:")


def _encoder_from_clip(clip: nn.Module, name: str, prompts: tuple[str, str]) -> HLEncoder:
    """Embed the prompts with the full CLIP model once, then keep only its image tower.

    The input normalisation is open_clip's preprocess config for these weights.
    """
    clip.eval()
    with torch.no_grad():
        text_features = clip.encode_text(open_clip.get_tokenizer(name)(list(prompts)), normalize=True)
    cfg = open_clip.get_model_preprocess_cfg(clip)
    normalization = Normalization(tuple(cfg.get("mean", OPENAI_CLIP.mean)), tuple(cfg.get("std", OPENAI_CLIP.std)))
    return HLEncoder(clip.visual, text_features, prompts, normalization)


def _load_clip_state(clip: nn.Module, checkpoint: dict, uri: str) -> None:
    """Load a full open_clip CLIP state dict (optionally under "state_dict", "module."-prefixed)."""
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        clip.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsUnavailable(f"{uri} does not fit this open_clip model: {e}") from e


def _encoder_from_hl_checkpoint(checkpoint: dict, name: str, prompts: tuple[str, str], uri: str) -> HLEncoder:
    """Rebuild what `save_hl_checkpoint` wrote; its prompts were embedded before the text tower was dropped."""
    if checkpoint.get("model") != name:
        raise GrepqError(f"{uri} holds HL model {checkpoint.get('model')!r}, not {name!r}")
    if tuple(checkpoint.get("prompts", ())) != tuple(prompts):
        raise GrepqError(f"{uri} embedded the prompts {checkpoint.get('prompts')}, not {list(prompts)}")
    visual = open_clip.create_model(name).visual
    try:
        visual.load_state_dict(checkpoint["visual_state_dict"])
        normalization = Normalization.from_dict(checkpoint["input"]) if "input" in checkpoint else OPENAI_CLIP
        return HLEncoder(visual, checkpoint["text_features"], prompts, normalization)
    except (KeyError, RuntimeError, ValueError) as e:
        raise WeightsUnavailable(f"{uri} is a malformed grepq HL checkpoint: {e}") from e


def _replace_visual(encoder: HLEncoder, uri: str) -> None:
    """Load an image tower's own state dict (keys with or without ``visual.``) into `encoder`.

    The authors' ``high_level_model_weights.pth`` is such a file; the prompts
    stay embedded by the text tower of the weights the encoder was built from.
    """
    state = load_checkpoint(uri)
    state = {k.removeprefix("visual."): v for k, v in state.get("state_dict", state).items()}
    try:
        result = encoder.visual.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise WeightsUnavailable(f"{uri} does not fit this image tower: {e}") from e
    if result.unexpected_keys or len(result.missing_keys) == len(encoder.visual.state_dict()):
        raise WeightsUnavailable(f"{uri} is not a state dict of this image tower "
                                 f"(unexpected keys: {', '.join(result.unexpected_keys[:5]) or 'none'})")
    if result.missing_keys:
        raise WeightsUnavailable(f"{uri} lacks {len(result.missing_keys)} tensors of the image tower, "
                                 f"e.g. {', '.join(result.missing_keys[:5])}")


def build_hl_encoder(
    model: str = "RN50",
    weights: str | None = "openai",
    prompts: tuple[str, str] = DEFAULT_PROMPTS,
    visual_weights: str | None = None,
    positional: str = "interpolate",
) -> tuple[HLEncoder, str]:
    """(encoder in eval mode, identity ``hl:{model}:{tag|checkpoint|random}[+visual][:nopos]@{digest}``).

    `model` is an open_clip model name or a model-config JSON path (its name
    is the file stem). `weights` is an open_clip pretrained tag of that model,
    a checkpoint path or fsspec URL, or ``None`` / ``"none"`` for random init.
    `visual_weights` then replaces the image tower (`_replace_visual`);
    `positional` is ``"interpolate"`` or ``"omit"`` (the reference's).
    """
    if len(prompts) != 2:
        raise GrepqError(f"need exactly two prompts (good, bad), got {list(prompts)}")
    name = _register_model(model)
    tags = open_clip.list_pretrained_tags_by_model(name)
    if weights is None or weights == "none":
        encoder, source = _encoder_from_clip(open_clip.create_model(name), name, prompts), "random"
    elif weights in tags:
        try:
            clip = open_clip.create_model(name, pretrained=weights)
        except Exception as e:  # open_clip wraps network and hub failures in several types
            raise WeightsUnavailable(
                f"could not fetch open_clip weights {name}/{weights}: {e}. Without network access pass "
                "`hl_weights` PATH_OR_URL (a local or fsspec checkpoint), or use `pathways` ll to skip the HL pathway"
            ) from e
        encoder, source = _encoder_from_clip(clip, name, prompts), weights
    elif _is_tag_like(weights):
        raise GrepqError(
            f"{weights!r} is neither a pretrained tag of {name} (tags: {', '.join(tags) or 'none'}) "
            "nor a checkpoint path or URL; 'none' means random weights"
        )
    else:
        checkpoint = load_checkpoint(weights)
        if checkpoint.get("format") == CHECKPOINT_FORMAT:
            encoder = _encoder_from_hl_checkpoint(checkpoint, name, prompts, weights)
        else:
            clip = open_clip.create_model(name)
            _load_clip_state(clip, checkpoint, weights)
            encoder = _encoder_from_clip(clip, name, prompts)
        source = "checkpoint"
    if visual_weights:
        _replace_visual(encoder, visual_weights)
        source += "+visual"
    encoder.positional = _checked_positional(positional)
    if positional == "omit":
        source += ":nopos"
    encoder.eval()
    return encoder, f"hl:{name}:{source}@{parameters_digest(encoder)}"


def save_hl_checkpoint(encoder: HLEncoder, path: str, model: str, meta: dict | None = None) -> None:
    """Write the image tower and prompt embeddings to a path or fsspec URL (``grepq-hl/1``)."""
    save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "model": _model_name(model),
            "visual_state_dict": encoder.visual.state_dict(),
            "text_features": encoder.text_features,
            "prompts": list(encoder.prompts),
            "input": encoder.normalization.as_dict(),
            "meta": meta or {},
        },
        path,
    )
