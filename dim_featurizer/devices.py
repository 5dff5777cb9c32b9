"""Turn a device request (``"auto"``, ``"cpu"``, ``"cuda:1"``...) into a torch device: one rule for the package."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto", rank: int = 0) -> torch.device:
    """Return the torch device for ``device``.

    Args:
        device: ``"auto"`` for CUDA when present (else CPU), or any torch device string.
        rank: the process's rank under torchrun; with ``"auto"``, process r
            takes GPU ``r mod (number of GPUs)``.

    Returns:
        The device.
    """
    if str(device) == "auto":
        return torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
