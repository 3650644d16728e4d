"""Where models run: the one rule for a device that is not named (``--device auto``)."""

from __future__ import annotations


def resolve_device(device: str | None = "auto") -> str:
    """``device`` as named, or for ``auto`` (or none) CUDA when torch sees a GPU, else the CPU (also without torch).

    Every engine, tracker and pipeline decides the default here.
    """
    if device and device != "auto":
        return str(device)
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
