"""The low-level (LL) encoder: a ResNet-18 trunk and a small MLP head.

docs/method.md, "Two pathways": ResNet-18 from random initialisation (no
ImageNet weights), global average pool (512 values), then an MLP head
512 -> 512 -> ReLU -> 128; the 128-d head output is the LL feature. The trunk
keeps torchvision's layer names and initialisation, so at width 64 it is
torchvision's ``resnet18`` without ``fc``. Narrower trunks (width 32, 16, 8)
are registered in ``configs/ll_encoders.json`` for cheap experiments and
tests; their head's hidden size follows the pooled size as in the paper.

Checkpoints are plain dicts, readable with ``torch.load(weights_only=True)``::

    {"format": "grepq-ll/1", "arch": name, "config": {...},
     "state_dict": {...}, "input": {"mean": [...], "std": [...]}, "meta": {...}}

`input` is the normalisation the weights were trained with; checkpoints
without it (grepq's earlier ones) were trained on ImageNet-normalised input.

The authors' released checkpoint (``low_level_model_weights.tar``) is read
too, by its content: ``{"model": {"state_dict": ...}, "optimizer": ...}``
holding torchvision's ResNet-18 as ``encoder.base_model.*`` (with its unused
``fc``) and again as ``encoder.resnet18.*`` (an ``nn.Sequential`` of its
children, the same tensors), and the head as ``head.0.*``, ``head.2.*``. Its
input is plain [0, 1] RGB (``ToTensor``, no normalisation).
"""

import json
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from grepq_core.errors import GrepqError, WeightsUnavailable, did_you_mean
from grepq_core.model import shipped
from grepq_core.model.views import IMAGENET, UNIT, Normalization
from grepq_core.model.weights import load_checkpoint, parameters_digest, save_checkpoint

__all__ = [
    "CHECKPOINT_FORMAT",
    "LLEncoder",
    "create_ll_encoder",
    "list_ll_architectures",
    "load_ll_encoder",
    "save_ll_checkpoint",
]

CHECKPOINT_FORMAT = "grepq-ll/1"
_ARCHITECTURES_FILE = Path(__file__).resolve().parent / "configs" / "ll_encoders.json"


class LLEncoder(nn.Module):
    """ResNet-18 trunk (BasicBlock x [2, 2, 2, 2]) + MLP head; normalised input of any size."""

    def __init__(self, width: int = 64, hidden: int = 512, feature_dim: int = 128,
                 normalization: Normalization = IMAGENET):
        super().__init__()
        self.config = {"width": width, "hidden": hidden, "feature_dim": feature_dim}
        self.normalization = normalization  # what the weights expect of uint8 pixels
        self.trunk = _resnet18_trunk(width)
        self.head = nn.Sequential(
            nn.Linear(8 * width, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, feature_dim),
        )

    def features_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled trunk output, ``[B, 8 * width]``."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` float -> ``[B, feature_dim]`` LL features."""
        return self.head(self.trunk(x))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: the same layers, names and order, so its state dicts load as they are.

    Written here because importing torchvision costs seconds (it pulls in
    torch._dynamo), which a process that only runs the LL encoder should
    not pay.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def _resnet18_trunk(width: int) -> nn.Sequential:
    """torchvision's resnet18 up to the global pool, with channels ``width * [1, 2, 4, 8]``."""
    layers = OrderedDict(
        conv1=nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False),
        bn1=nn.BatchNorm2d(width),
        relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    inplanes = width
    for index, (planes, stride) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), (1, 2, 2, 2)), 1):
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers[f"layer{index}"] = nn.Sequential(
            BasicBlock(inplanes, planes, stride, downsample),
            BasicBlock(planes, planes),
        )
        inplanes = planes
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten(1)
    trunk = nn.Sequential(layers)
    for module in trunk.modules():  # torchvision's ResNet initialisation
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return trunk


def _architectures() -> dict:
    with open(_ARCHITECTURES_FILE) as f:
        return json.load(f)


def _architecture_config(arch: str) -> dict:
    architectures = _architectures()
    if arch not in architectures:
        raise GrepqError(f"unknown LL architecture {arch!r}.{did_you_mean(arch, architectures)} "
                         f"Valid: {', '.join(architectures)}")
    return architectures[arch]


def list_ll_architectures() -> list[str]:
    """Names of the registered LL architectures (configs/ll_encoders.json)."""
    return list(_architectures())


def create_ll_encoder(arch: str) -> LLEncoder:
    """A randomly initialised LL encoder of a registered architecture."""
    return LLEncoder(**_architecture_config(arch))


def save_ll_checkpoint(encoder: LLEncoder, path: str, arch: str, meta: dict | None = None) -> None:
    """Write `encoder` to a path or fsspec URL; `arch` must name its registered config."""
    if _architecture_config(arch) != encoder.config:
        raise GrepqError(f"encoder config {encoder.config} is not architecture {arch!r} ({_architecture_config(arch)})")
    save_checkpoint(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "config": dict(encoder.config),
            "state_dict": encoder.state_dict(),
            "input": encoder.normalization.as_dict(),
            "meta": meta or {},
        },
        path,
    )


_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


def _is_reference_checkpoint(checkpoint: dict) -> bool:
    state = checkpoint.get("model", {}).get("state_dict") if isinstance(checkpoint.get("model"), dict) else None
    return isinstance(state, dict) and "encoder.base_model.conv1.weight" in state and "head.0.weight" in state


def _from_reference(state: dict, source: str) -> LLEncoder:
    """An LLEncoder with the authors' weights; their duplicate Sequential copy must agree with the base model."""
    ours = {}
    for key, tensor in state.items():
        if key.startswith("encoder.base_model.fc."):
            continue
        if key.startswith("encoder.base_model."):
            ours["trunk." + key[len("encoder.base_model."):]] = tensor
        elif key.startswith("head."):
            ours[key] = tensor
        elif key.startswith("encoder.resnet18."):
            index, _, rest = key[len("encoder.resnet18."):].partition(".")
            twin = state.get(f"encoder.base_model.{_RESNET_CHILDREN[int(index)]}.{rest}")
            if twin is None or not torch.equal(twin, tensor):
                raise WeightsUnavailable(f"{source}: {key} differs from its encoder.base_model copy")
        else:
            raise WeightsUnavailable(f"{source}: unexpected key {key} in a reference LL checkpoint")
    encoder = LLEncoder(**_architecture_config("resnet18"), normalization=UNIT)
    try:
        encoder.load_state_dict(ours)
    except RuntimeError as e:
        raise WeightsUnavailable(f"{source} does not hold a ResNet-18 with a 512-512-128 head: {e}") from e
    return encoder


def load_ll_encoder(source: str) -> tuple[LLEncoder, str]:
    """(encoder in eval mode, identity ``ll:{arch}@{digest}``) from "shipped", a path or a URL."""
    if source == "shipped":
        if not shipped.SHIPPED_LL.exists():
            raise WeightsUnavailable(
                f"no LL encoder ships with this install ({shipped.SHIPPED_LL} is missing): "
                "pass `ll_weights` PATH_OR_URL or train one with `grepq train-ll`"
            )
        source = str(shipped.SHIPPED_LL)
    checkpoint = load_checkpoint(source)
    if _is_reference_checkpoint(checkpoint):
        encoder = _from_reference(checkpoint["model"]["state_dict"], source).eval()
        return encoder, f"ll:resnet18@{parameters_digest(encoder)}"
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise WeightsUnavailable(f"{source} is neither a grepq LL checkpoint nor the authors' "
                                 f"(format {checkpoint.get('format')!r})")
    missing = [k for k in ("arch", "config", "state_dict") if k not in checkpoint]
    if missing:
        raise WeightsUnavailable(f"{source} is a grepq LL checkpoint without {', '.join(missing)}")
    try:
        normalization = Normalization.from_dict(checkpoint["input"]) if "input" in checkpoint else IMAGENET
        encoder = LLEncoder(**checkpoint["config"], normalization=normalization)
        encoder.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise WeightsUnavailable(f"{source} is a malformed grepq LL checkpoint: {e}") from e
    encoder.eval()
    return encoder, f"ll:{checkpoint['arch']}@{parameters_digest(encoder)}"
