"""Atomic file writes (bytes, text, JSON): a file is whole or absent, never half-written, even when killed."""

from __future__ import annotations

import json
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


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda target: Path(target).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON (values JSON cannot hold are written as text) to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_csv(path: str | os.PathLike, frame: Any, index: bool = False) -> None:
    """Write a pandas ``frame`` as CSV to ``path`` atomically (without its index unless ``index``)."""
    write_atomically(path, lambda target: frame.to_csv(target, index=index))
