"""``dim-featurize``: structure files in, a table of DIM vectors out."""

from __future__ import annotations

import argparse
import sys

from dim_featurizer.console import Parser, report_errors


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = Parser(
        prog="dim-featurize",
        description="Featurise crystal structures with Site-Net Deep InfoMax. "
        "With no input, featurises the example structures shipped with the package. "
        "With --out-dir, streams any input size into resumable parquet parts. "
        "The table has one row per structure: its id (the input's own: file name, frame index or id column), "
        "formula, any --keep-columns, the features DIM_0 ... and error (empty for good rows).",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        help="CIF/POSCAR/extended-XYZ files, folders or zip/tar archives of them, JSON frames, parquet, "
        "CSV with a CIF column",
    )
    p.add_argument("-o", "--output", default="-", help="output .csv, .csv.gz or .parquet ('-': CSV on stdout)")
    p.add_argument("--column", default="structure", help="structure column of JSON frames, parquet and CSV files")
    p.add_argument(
        "--id-column", default=None, help="id column of parquet and CSV files (default: the stored index, else rows)"
    )
    p.add_argument(
        "--keep-columns", nargs="+", default=[], metavar="COLUMN", help="input columns to copy into the table, as text"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="bundled name, folder, Hub repo id, 'untrained', or 'untrained:<weights>' (a random network shaped like "
        "those weights) (None: default)",
    )
    p.add_argument("--revision", default=None, help="Hub commit hash (required with a Hub repo id)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--batch-sites", type=int, default=1200, help="unique sites per forward pass")
    p.add_argument("--n-jobs", type=int, default=1, help="encoding processes (-1: all cores)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network: faster after a 10-30 s start")
    p.add_argument("--ignore-errors", action="store_true", help="NaN rows, with the reason in 'error', for bad inputs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    stream = p.add_argument_group("streaming (large inputs)")
    stream.add_argument("--out-dir", help="write one parquet part per chunk here, with a manifest; resumable")
    stream.add_argument("--chunk-size", type=int, default=5000, help="structures per part (bounds memory)")
    stream.add_argument("--shard", default="0/1", help="i/n: do only chunks k with k %% n == i")
    stream.add_argument("--merge", metavar="OUT_DIR", help="merge a finished --out-dir into -o (.parquet or .csv)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (one line on stderr for any error a user can cause)."""
    args = build_parser().parse_args(argv)
    return report_errors("dim-featurize", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    """The command's work, given its parsed arguments."""
    from dim_featurizer.examples import example_files
    from dim_featurizer.featurizer import DeepInfoMaxFeaturizer
    from dim_featurizer.readers import iter_entries
    from dim_featurizer.stream import (
        check_output,
        featurize_entries,
        featurize_to_parts,
        merge_parts,
        parse_shard,
        write_output,
    )

    if args.output != "-":
        check_output(args.output)
    if args.merge:
        if args.output == "-":
            raise ValueError("--merge needs -o FILE.parquet or FILE.csv")
        rows = merge_parts(args.merge, args.output)
        print(f"dim-featurize: merged {rows} rows from {args.merge} into {args.output}", file=sys.stderr)
        return 0
    options = {name: getattr(args, name) for name in ("weights", "revision", "device", "batch_sites", "n_jobs")}
    featurizer = DeepInfoMaxFeaturizer(**options, compile_network=args.compile)
    inputs, keep, pbar = args.inputs or example_files(), args.keep_columns, not args.no_progress
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
            pbar=pbar,
            keep=keep,
        )
    else:
        entries = list(iter_entries(inputs, args.column, args.id_column, keep))
        table = featurize_entries(featurizer, entries, args.ignore_errors, keep, pbar=pbar)
    runner = featurizer.runner()
    source = f"weights {runner.info} on {runner.device}"
    if args.out_dir:
        redone = f", {len(report.redone)} damaged parts redone" if report.redone else ""
        print(
            f"dim-featurize: shard {report.shard}/{report.n_shards}: {len(report.written)} parts written{redone}, "
            f"{len(report.skipped)} already done; the shard holds {report.rows} structures ({report.failed} failed); "
            f"{report.seconds:.1f} s; input has {report.n_entries} structures in {report.n_chunks} chunks; {source}",
            file=sys.stderr,
        )
        return 0
    print(
        f"dim-featurize: {len(table)} structures, {int(table['error'].notna().sum())} failed, {source}", file=sys.stderr
    )
    if args.output == "-":
        table.to_csv(sys.stdout)
    else:
        write_output(table, args.output, keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
