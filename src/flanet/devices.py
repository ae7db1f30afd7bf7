"""The torch device a command runs on, checked before any work starts."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device asked for (``--device``), or CUDA when available, else CPU.

    Raises:
        ValueError: an unknown device name, or a CUDA device on a machine without one (or with
            fewer GPUs than its index), named with what is available.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"--device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1): {error}") from error
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device} asked for a CUDA GPU, but none is available here; use --device cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif resolved.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"--device {device}: use cpu or cuda[:N]")
    return resolved
