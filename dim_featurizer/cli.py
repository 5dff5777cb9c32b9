"""``dim-featurize``: structure files in, a table of DIM vectors out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

STRUCTURE_SUFFIXES = {".cif", ".vasp", ".poscar", ".cssr", ".xsf", ".mcif"}
STRUCTURE_NAMES = ("POSCAR", "CONTCAR")
FRAME_SUFFIXES = (".json", ".json.gz", ".json.bz2", ".json.xz")


def _is_structure_file(path: Path) -> bool:
    return path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.startswith(STRUCTURE_NAMES)


def _read_file(path: Path) -> Any:
    from pymatgen.core import Structure

    try:
        return Structure.from_file(path)
    except Exception as e:  # noqa: BLE001 - reported as this row's error
        return e


def read_inputs(inputs: list[str], column: str = "structure") -> pd.Series:
    """Read structures from files, folders and matminer JSON frames.

    Args:
        inputs: paths; none means the package's example structures.
        column: structure column of JSON frames.

    Returns:
        A Series of Structures (or the exception met while reading one),
        indexed by file path or frame index.
    """
    if not inputs:
        from dim_featurizer.examples import example_files

        inputs = [str(p) for p in example_files()]
    names: list[str] = []
    values: list[Any] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_structure_file(p))
            if not files:
                raise SystemExit(f"dim-featurize: no structure files (CIF, POSCAR, .vasp) under {path}")
            names += [str(p) for p in files]
            values += [_read_file(p) for p in files]
        elif path.name.lower().endswith(FRAME_SUFFIXES):
            from matminer.utils.io import load_dataframe_from_json

            frame = load_dataframe_from_json(str(path), pbar=False)
            if column not in frame.columns:
                raise SystemExit(f"dim-featurize: {path} has no column {column!r} (columns: {list(frame.columns)})")
            names += [str(i) for i in frame.index]
            values += list(frame[column])
        elif path.is_file():
            names.append(str(path))
            values.append(_read_file(path))
        else:
            raise SystemExit(f"dim-featurize: {path} does not exist")
    return pd.Series(values, index=pd.Index(names, name="id"), dtype=object)


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="dim-featurize",
        description="Featurise crystal structures with Site-Net Deep InfoMax. "
        "With no input, featurises the example structures shipped with the package.",
    )
    p.add_argument("inputs", nargs="*", help="CIF/POSCAR files, folders of them, or matminer JSON frames")
    p.add_argument("-o", "--output", default="-", help="output .csv or .parquet ('-' = CSV on stdout)")
    p.add_argument("--column", default="structure", help="structure column of JSON frames")
    p.add_argument("--weights", default=None, help="bundled name, folder, Hub repo id, or 'untrained'")
    p.add_argument("--revision", default=None, help="Hub commit hash (required with a Hub repo id)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--batch-sites", type=int, default=1200, help="unique sites per forward pass")
    p.add_argument("--n-jobs", type=int, default=1, help="encoding processes (-1: all cores)")
    p.add_argument("--ignore-errors", action="store_true", help="NaN rows plus an 'error' column for bad inputs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    from dim_featurizer.errors import FeaturizationError, WeightsError
    from dim_featurizer.featurizer import DeepInfoMaxFeaturizer

    structures = read_inputs(args.inputs, args.column)
    featurizer = DeepInfoMaxFeaturizer(
        weights=args.weights,
        revision=args.revision,
        device=args.device,
        batch_sites=args.batch_sites,
        n_jobs=args.n_jobs,
    )
    unreadable = structures.map(lambda x: isinstance(x, Exception))
    if unreadable.any() and not args.ignore_errors:
        name = structures.index[unreadable.argmax()]
        print(f"dim-featurize: cannot read {name}: {structures[name]}", file=sys.stderr)
        return 1
    try:
        rows = featurizer.featurize_many(
            structures.values,
            ignore_errors=args.ignore_errors,
            return_errors=args.ignore_errors,
            pbar=not args.no_progress,
        )
    except (FeaturizationError, WeightsError) as e:
        print(f"dim-featurize: {e}", file=sys.stderr)
        return 1
    columns = featurizer.feature_labels() + (["error"] if args.ignore_errors else [])
    table = pd.DataFrame(rows, index=structures.index, columns=columns)
    if args.ignore_errors:
        read_errors = structures[unreadable].map(lambda e: f"cannot read: {e}")
        table.loc[read_errors.index, "error"] = read_errors
    info = featurizer.weights_info_
    print(
        f"dim-featurize: {len(table)} structures, {int(table.iloc[:, 0].isna().sum())} failed, "
        f"weights {info.name!r} ({info.source}) on {featurizer.device_}",
        file=sys.stderr,
    )
    if args.output == "-":
        table.to_csv(sys.stdout)
    elif args.output.endswith(".parquet"):
        table.to_parquet(args.output)
    else:
        table.to_csv(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
