"""Resumable parts: a folder of files, each written whole or not at all, that a rerun skips.

The streaming featuriser (parquet parts, one per input chunk) and the benchmark's feature cache
(``.npz`` parts, one per chunk of ids) both keep their finished work here, so a killed job loses
nothing it finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dim_featurizer.files import write_atomically


class PartStore:
    """Parts named ``<prefix><key><suffix>`` in one folder.

    Args:
        folder: where the parts live (created on the first write).
        suffix: the parts' file extension, e.g. ``".parquet"``.
        prefix: what every part's name starts with.
    """

    def __init__(self, folder: str | os.PathLike, suffix: str, prefix: str = "part-") -> None:
        self.folder, self.suffix, self.prefix = Path(folder), suffix, prefix

    def path(self, key: str) -> Path:
        """Where part ``key`` lives."""
        return self.folder / f"{self.prefix}{key}{self.suffix}"

    def done(self, key: str) -> bool:
        """Whether part ``key`` was finished."""
        return self.path(key).is_file()

    def write(self, key: str, write: Callable[[Path], Any]) -> Path:
        """Write part ``key`` with ``write(temporary path)``, atomically; returns its path."""
        path = self.path(key)
        write_atomically(path, write)
        return path

    def paths(self) -> list[Path]:
        """Every finished part, sorted by name (hidden temporary files are not parts)."""
        return sorted(self.folder.glob(f"{self.prefix}*{self.suffix}"))
