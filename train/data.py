"""Read pretraining structures: matminer JSON frames, CIF folders/archives with an id CSV, DataFrames.

Labels are never read: only ids and structures leave this module.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pandas as pd

from dim_featurizer.frames import read_frame, read_split

FRAME_SUFFIXES = (".json", ".json.gz", ".json.bz2", ".json.xz")


def _read_ids_csv(path: Path) -> list[str]:
    # First column only: MT-CGCNN style id_prop.csv files carry labels after it, never read.
    ids = pd.read_csv(path, header=None, usecols=[0], dtype=str)[0].str.strip()
    return [i for i in ids if i and i.lower() != "id"]


def _parse_cif(text: str, name: str):
    from pymatgen.io.cif import CifParser

    try:
        return CifParser(io.StringIO(text)).parse_structures(primitive=False)[0]
    except Exception as e:  # noqa: BLE001 - kept as this id's exclusion reason
        return ValueError(f"{name}: cannot parse CIF ({e})")


def _read_cif_collection(path: Path, ids: list[str]) -> pd.Series:
    """CIFs named ``<id>.cif`` in a folder, zip or tar, for each id."""
    if path.is_dir():
        files = {p.stem: p for p in path.rglob("*.cif")}

        def read(i):
            return files[i].read_text() if i in files else None

    elif zipfile.is_zipfile(path):
        archive = zipfile.ZipFile(path)
        names = {Path(n).stem: n for n in archive.namelist() if n.endswith(".cif")}

        def read(i):
            return archive.read(names[i]).decode() if i in names else None

    elif tarfile.is_tarfile(path):
        archive = tarfile.open(path)
        members = {Path(m.name).stem: m for m in archive.getmembers() if m.name.endswith(".cif")}

        def read(i):
            return archive.extractfile(members[i]).read().decode() if i in members else None

    else:
        raise ValueError(f"{path} is not a folder, zip or tar of CIF files")
    values = []
    for i in ids:
        text = read(i)
        values.append(FileNotFoundError(f"no {i}.cif in {path}") if text is None else _parse_cif(text, f"{i}.cif"))
    return pd.Series(values, index=pd.Index(ids, name="id"), dtype=object)


def load_structures(
    source: str | Path | pd.DataFrame | pd.Series,
    split: str | Path | None = None,
    subset: str = "train",
    ids_csv: str | Path | None = None,
    structure_column: str = "structure",
) -> pd.Series:
    """Return pretraining structures as a Series indexed by id.

    Args:
        source: a matminer/Matbench JSON frame file, a folder/zip/tar of
            ``<id>.cif`` files, or a DataFrame (its ``structure_column``) or Series.
        split: optional split file; only ids in ``split[subset]`` are kept,
            so test structures are never read.
        subset: which list of the split file to use.
        ids_csv: for CIF collections, a CSV whose first column lists the ids.
        structure_column: the structure column of frames.

    Returns:
        Series of ``Structure`` (or the exception met reading one: it is
        counted as excluded later, never silently dropped).
    """
    keep = read_split(split)[subset] if split is not None else None
    if isinstance(source, pd.DataFrame):
        series = source[structure_column]
    elif isinstance(source, pd.Series):
        series = source
    else:
        path = Path(source)
        if path.name.lower().endswith(FRAME_SUFFIXES):
            return read_frame(path, keep, structure_column)[structure_column]
        if ids_csv is None:
            raise ValueError(f"{path}: a CIF collection needs ids_csv (a CSV whose first column lists the ids)")
        ids = _read_ids_csv(Path(ids_csv))
        if keep is not None:
            wanted = set(keep)
            ids = [i for i in ids if i in wanted]
        return _read_cif_collection(path, ids)
    if keep is not None:
        missing = pd.Index(keep).difference(series.index)
        if len(missing):
            raise KeyError(f"{len(missing)} split ids are not in the frame, e.g. {list(missing[:5])}")
        series = series.loc[keep]
    return series
