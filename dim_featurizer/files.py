"""Atomic file writes: a file is whole or absent, never half-written, even when the process is killed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call ``write(temporary path)``, flush the file to disk, then rename it to ``path``.

    The temporary file is hidden (a leading dot, so dataset readers skip it), named after this process
    (so concurrent writers never mix their bytes) and keeps ``path``'s suffix (for writers such as
    ``np.savez`` that add one otherwise). It is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
