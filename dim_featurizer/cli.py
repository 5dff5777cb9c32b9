"""``dim-featurize``: structure files in, a table of DIM vectors out."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="dim-featurize",
        description="Featurise crystal structures with Site-Net Deep InfoMax. "
        "With no input, featurises the example structures shipped with the package. "
        "With --out-dir, streams any input size into resumable parquet parts.",
    )
    p.add_argument(
        "inputs", nargs="*", help="CIF/POSCAR files, folders or zip/tar archives of them, JSON frames, parquet"
    )
    p.add_argument("-o", "--output", default="-", help="output .csv or .parquet ('-' = CSV on stdout)")
    p.add_argument("--column", default="structure", help="structure column of JSON frames and parquet files")
    p.add_argument("--id-column", default=None, help="id column of parquet files (default: their stored index)")
    p.add_argument("--weights", default=None, help="bundled name, folder, Hub repo id, or 'untrained'")
    p.add_argument("--revision", default=None, help="Hub commit hash (required with a Hub repo id)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--batch-sites", type=int, default=1200, help="unique sites per forward pass")
    p.add_argument("--n-jobs", type=int, default=1, help="encoding processes (-1: all cores)")
    p.add_argument("--ignore-errors", action="store_true", help="NaN rows plus an 'error' column for bad inputs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    stream = p.add_argument_group("streaming (large inputs)")
    stream.add_argument("--out-dir", help="write one parquet part per chunk here, with a manifest; resumable")
    stream.add_argument("--chunk-size", type=int, default=5000, help="structures per part (bounds memory)")
    stream.add_argument("--shard", default="0/1", help="i/n: do only chunks k with k %% n == i")
    stream.add_argument("--merge", metavar="OUT_DIR", help="merge a finished --out-dir into -o (.parquet or .csv)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    from dim_featurizer.errors import FeaturizationError, WeightsError
    from dim_featurizer.examples import example_files
    from dim_featurizer.featurizer import DeepInfoMaxFeaturizer
    from dim_featurizer.readers import iter_entries
    from dim_featurizer.stream import featurize_entries, featurize_to_parts, merge_parts, parse_shard

    if args.merge:
        if args.output == "-":
            raise SystemExit("dim-featurize: --merge needs -o FILE.parquet or FILE.csv")
        try:
            rows = merge_parts(args.merge, args.output)
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"dim-featurize: {e}") from e
        print(f"dim-featurize: merged {rows} rows from {args.merge} into {args.output}", file=sys.stderr)
        return 0
    featurizer = DeepInfoMaxFeaturizer(
        weights=args.weights,
        revision=args.revision,
        device=args.device,
        batch_sites=args.batch_sites,
        n_jobs=args.n_jobs,
    )
    inputs = args.inputs or example_files()
    try:
        if args.out_dir:
            report = featurize_to_parts(
                inputs,
                args.out_dir,
                featurizer,
                column=args.column,
                id_column=args.id_column,
                chunk_size=args.chunk_size,
                shard=parse_shard(args.shard),
                ignore_errors=args.ignore_errors,
                pbar=not args.no_progress,
            )
        else:
            table = featurize_entries(
                featurizer, list(iter_entries(inputs, args.column, args.id_column)), args.ignore_errors
            )
    except (FileNotFoundError, KeyError) as e:
        raise SystemExit(f"dim-featurize: {e.args[0] if e.args else e}") from e
    except (FeaturizationError, WeightsError, ValueError) as e:
        print(f"dim-featurize: {e}", file=sys.stderr)
        return 1
    info = featurizer.weights_info_
    source = f"weights {info.name!r} ({info.source}) on {featurizer.device_}"
    if args.out_dir:
        print(
            f"dim-featurize: shard {report.shard}/{report.n_shards}: {len(report.written)} parts written, "
            f"{len(report.skipped)} already done, {report.rows} structures ({report.failed} failed) "
            f"in {report.seconds:.1f} s; input has {report.n_entries} structures in {report.n_chunks} chunks; {source}",
            file=sys.stderr,
        )
        return 0
    print(
        f"dim-featurize: {len(table)} structures, {int(table['error'].notna().sum())} failed, {source}", file=sys.stderr
    )
    if not args.ignore_errors:
        table = table.drop(columns="error")
    if args.output == "-":
        table.to_csv(sys.stdout)
    elif args.output.endswith(".parquet"):
        table.to_parquet(args.output)
    else:
        table.to_csv(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
