"""Which torch device a `--device` flag means."""
import torch

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else the CPU; anything else is a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
