"""The one place encoder weights are read, written and fingerprinted.

docs/method.md, "Two pathways": both encoders are networks whose weights come from
somewhere (a shipped file, a training run, open_clip's pretrained tags).
Every weight file goes through `load_checkpoint`, which only ever calls
``torch.load(weights_only=True)`` (or reads safetensors), so a crafted pickle
is refused instead of run. `parameters_digest` fingerprints a module's
weights, so every feature row can name exactly what produced it.
"""

import hashlib
import io
import pickle

import fsspec
import torch
from torch import nn

from grepq_core.errors import WeightsUnavailable
from grepq_core.files import write_file

__all__ = ["load_checkpoint", "open_uri", "parameters_digest", "save_checkpoint"]


def open_uri(uri: str, mode: str = "rb"):
    """Open a local path or any fsspec URL (gs://, s3://, https://, memory://)."""
    return fsspec.open(uri, mode)


def load_checkpoint(uri: str) -> dict:
    """Read a checkpoint dict of tensors and plain values; never unpickle objects.

    Missing, unreachable or unreadable files, and pickles that would build
    arbitrary objects, all raise `WeightsUnavailable` naming `uri`.
    """
    try:
        with open_uri(uri) as f:
            data = f.read()
    except FileNotFoundError as e:
        raise WeightsUnavailable(f"weights file not found: {uri}") from e
    except Exception as e:  # fsspec backends raise their own types (network, auth, unknown protocol)
        raise WeightsUnavailable(f"cannot read weights file {uri}: {e}") from e
    try:
        if uri.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            checkpoint = load_safetensors(data)
        else:
            checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsUnavailable(
            f"refused to load {uri}: it holds Python objects beyond tensors and plain values, "
            f"and grepq only loads weights_only checkpoints ({_unpickler_reason(e)})"
        ) from e
    except Exception as e:
        raise WeightsUnavailable(f"{uri} is not a readable PyTorch checkpoint: {e}") from e
    if not isinstance(checkpoint, dict):
        raise WeightsUnavailable(f"{uri} holds a {type(checkpoint).__name__}, expected a dict checkpoint")
    return checkpoint


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's weights_only refusal that names what was refused, without its advice."""
    lines = [line.strip() for line in str(error).split("WeightsUnpickler error:")[-1].splitlines()]
    return next((line.split(". ")[0] for line in lines if line), "unsupported content")


def save_checkpoint(checkpoint: dict, uri: str) -> None:
    """Write `checkpoint` (tensors and plain values) to a path or fsspec URL."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_file(uri, buffer.getvalue())


def parameters_digest(module: nn.Module) -> str:
    """12 hex digits of sha256 over the state dict (names, dtypes, shapes, bytes), by name."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]
