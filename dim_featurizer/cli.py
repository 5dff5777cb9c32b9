"""``dim-featurize``: structure files in, a table of DIM vectors out."""

from __future__ import annotations

import argparse
import sys

import pandas as pd


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
    from dim_featurizer.errors import FeaturizationError, WeightsError, one_line
    from dim_featurizer.examples import example_files
    from dim_featurizer.featurizer import DeepInfoMaxFeaturizer
    from dim_featurizer.readers import read_paths

    try:
        structures = read_paths(args.inputs or example_files(), args.column)
    except (FileNotFoundError, KeyError) as e:
        raise SystemExit(f"dim-featurize: {e.args[0] if e.args else e}") from e
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
        print(f"dim-featurize: cannot read {name}: {one_line(structures[name])}", file=sys.stderr)
        return 1
    try:
        rows = featurizer.featurize_many(
            structures,
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
        read_errors = structures[unreadable].map(lambda e: f"cannot read: {one_line(e)}")
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
