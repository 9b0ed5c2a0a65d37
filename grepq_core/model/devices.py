"""Which torch device a `device` setting means, and where JPEGs are decoded."""
import torch

__all__ = ["resolve_device", "decodes_on_device"]


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else the CPU; anything else is a torch device name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def decodes_on_device(decode: str) -> bool:
    """Whether JPEGs travel as bytes and are decoded where the model runs.

    "gpu": always (torchvision's decoder on the model's device, nvJPEG on
    CUDA); "cpu": never (Pillow in the read stage); "auto": when CUDA is here.
    """
    if decode not in ("auto", "gpu", "cpu"):
        raise ValueError(f"`decode` must be auto, gpu or cpu, got {decode!r}")
    return decode == "gpu" or (decode == "auto" and torch.cuda.is_available())
