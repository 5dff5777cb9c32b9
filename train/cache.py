"""An on-disk cache of encoded crystals, keyed by the encoding config and the ids.

Format: one folder of plain ``.npy`` arrays (flat, concatenated over
crystals) plus JSON for ids and exclusions. ``.npy`` needs no extra
dependency, is read without pickle (``allow_pickle=False``) and is
memory-mapped, so later epochs and runs touch no pymatgen and load in
milliseconds. The folder is written under a temporary name and renamed, so
a killed build leaves no half cache behind, and builds of one key hold a
file lock: a second process waits for the first and then uses its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dim_featurizer.encoding import ENCODING_VERSION, EncodedCrystal, EncodingConfig
from dim_featurizer.pool import encode_many

_ARRAYS = ("site_features", "distances", "image_of", "n_sites", "n_atoms")


@dataclass
class EncodedDataset:
    """Encoded crystals as flat arrays.

    Attributes:
        ids: crystal ids, in order.
        site_features: (S, 9) float32, all crystals' unique sites.
        distances: (P,) float32, each crystal's (n, m) distances flattened.
        image_of: (A,) int64, each crystal's (m,) image map.
        n_sites, n_atoms: (C,) rows and columns of each crystal.
        excluded: ``{id: reason}`` for structures left out.
    """

    ids: list[str]
    site_features: np.ndarray
    distances: np.ndarray
    image_of: np.ndarray
    n_sites: np.ndarray
    n_atoms: np.ndarray
    excluded: dict[str, str]

    def __post_init__(self) -> None:
        self._site_start = np.concatenate([[0], np.cumsum(self.n_sites)])
        self._pair_start = np.concatenate([[0], np.cumsum(self.n_sites * self.n_atoms)])
        self._atom_start = np.concatenate([[0], np.cumsum(self.n_atoms)])

    def __len__(self) -> int:
        return len(self.ids)

    def crystal(self, i: int) -> EncodedCrystal:
        """Return crystal ``i`` as an :class:`EncodedCrystal` (views, no copy)."""
        n, m = int(self.n_sites[i]), int(self.n_atoms[i])
        return EncodedCrystal(
            site_features=np.asarray(self.site_features[self._site_start[i] : self._site_start[i + 1]]),
            distances=np.asarray(self.distances[self._pair_start[i] : self._pair_start[i + 1]]).reshape(n, m),
            image_of=np.asarray(self.image_of[self._atom_start[i] : self._atom_start[i + 1]]),
            repeats=(0, 0, 0),
        )

    def subset(self, indices: np.ndarray) -> list[EncodedCrystal]:
        """Return the crystals at ``indices``."""
        return [self.crystal(int(i)) for i in indices]

    def save(self, directory: Path) -> None:
        """Write the arrays and JSON into ``directory`` (created)."""
        directory.mkdir(parents=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
        (directory / "ids.json").write_text(json.dumps(self.ids))
        (directory / "excluded.json").write_text(json.dumps(self.excluded, indent=1))

    @classmethod
    def load(cls, directory: Path) -> EncodedDataset:
        """Memory-map a saved dataset."""
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS}
        ids = json.loads((directory / "ids.json").read_text())
        excluded = json.loads((directory / "excluded.json").read_text())
        return cls(ids=ids, excluded=excluded, **arrays)


def cache_key(config: EncodingConfig, ids: list[str]) -> str:
    """sha256 over the encoding config, the encoding version and the ids."""
    payload = json.dumps({"encoding": config.as_dict(), "version": ENCODING_VERSION, "ids": list(ids)})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def encode_dataset(structures: pd.Series, config: EncodingConfig, n_jobs: int = 1, pbar: bool = True) -> EncodedDataset:
    """Encode every structure; exclude (with the reason) failures and primitive cells over ``max_atoms``."""
    kept: list[tuple[str, EncodedCrystal]] = []
    excluded: dict[str, str] = {}
    entries = [None if isinstance(s, Exception) else s for s in structures.values]
    results = encode_many(entries, config, n_jobs)
    for key, value, (crystal, error) in tqdm(
        zip(structures.index, structures.values, results), total=len(structures), desc="encode", disable=not pbar
    ):
        if isinstance(value, Exception):
            excluded[str(key)] = f"unreadable: {value}"
        elif error is not None:
            excluded[str(key)] = f"{type(error).__name__}: {error}"
        elif crystal.n_sites > config.max_atoms:
            excluded[str(key)] = f"primitive cell has {crystal.n_sites} sites, over max_atoms={config.max_atoms}"
        else:
            kept.append((str(key), crystal))
    if not kept:
        raise ValueError(f"no structure survived encoding ({len(excluded)} excluded)")
    return EncodedDataset(
        ids=[k for k, _ in kept],
        site_features=np.concatenate([c.site_features for _, c in kept]),
        distances=np.concatenate([c.distances.ravel() for _, c in kept]),
        image_of=np.concatenate([c.image_of for _, c in kept]),
        n_sites=np.array([c.n_sites for _, c in kept], dtype=np.int64),
        n_atoms=np.array([c.n_atoms for _, c in kept], dtype=np.int64),
        excluded=excluded,
    )


def cached_dataset(
    structures: pd.Series, config: EncodingConfig, cache_root: str | Path, n_jobs: int = 1, pbar: bool = True
) -> tuple[EncodedDataset, Path]:
    """Load the encoding of ``structures`` from ``cache_root``, building it on a miss.

    Returns:
        (dataset, its cache folder).
    """
    directory = Path(cache_root) / cache_key(config, [str(i) for i in structures.index])
    if not (directory / "ids.json").is_file():
        directory.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(directory.with_name(directory.name + ".lock")):
            if not (directory / "ids.json").is_file():  # another process may have built it while we waited
                dataset = encode_dataset(structures, config, n_jobs=n_jobs, pbar=pbar)
                partial = directory.with_name(directory.name + f".partial-{os.getpid()}")
                shutil.rmtree(partial, ignore_errors=True)
                dataset.save(partial)
                meta = {"encoding": config.as_dict(), "version": ENCODING_VERSION}
                (partial / "meta.json").write_text(json.dumps(meta))
                os.replace(partial, directory)
    return EncodedDataset.load(directory), directory


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created) for the block; other processes wait for it."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): builds may then race, and the rename decides
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
