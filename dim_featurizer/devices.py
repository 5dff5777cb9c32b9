"""Turn a device request (``"auto"``, ``"cpu"``, ``"cuda:1"``...) into a torch device: one rule for the package."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto", rank: int = 0) -> torch.device:
    """Return the torch device for ``device``.

    Args:
        device: ``"auto"`` for CUDA when present and usable (else CPU: also in a process forked after CUDA
            started), or any torch device string.
        rank: the process's rank under torchrun; with ``"auto"``, process r
            takes GPU ``r mod (number of GPUs)``.

    Returns:
        The device.
    """
    if str(device) == "auto":
        # A process forked after CUDA started cannot use it (torch refuses): such a child runs on the CPU.
        usable = torch.cuda.is_available() and not torch.cuda._is_in_bad_fork()
        return torch.device(f"cuda:{rank % torch.cuda.device_count()}" if usable else "cpu")
    return torch.device(device)
