"""``dim-train``: pretrain (fit), export a run into weights/, plot, publish to the Hub."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from dim_featurizer.encoding import EncodingConfig

from .config import TrainConfig


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """The data, run-folder and hyper-parameter arguments shared by ``fit`` and ``diagnose``."""
    p.add_argument("data", help="JSON frame, or folder/zip/tar of <id>.cif files (with --ids-csv)")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--split", help="split file; only --subset ids are read")
    p.add_argument("--subset", default="train")
    p.add_argument("--ids-csv", help="CSV whose first column lists the CIF ids")
    p.add_argument("--cache-dir", default=".cache/dim-encodings")
    p.add_argument("--limit", type=int, help="use only the first N ids")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--max-steps", type=int, help="stop after N steps (checkpointed, resumable)")
    p.add_argument("--n-jobs", type=int, default=1, help="encoding processes")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-atoms", type=int, default=EncodingConfig.max_atoms)
    p.add_argument("--only-other", action="store_true", help="ablation: only 'other' false samples (Fig. 11)")
    p.add_argument("--no-progress", action="store_true")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("model", "only_other", "amp"):
            continue
        flag, default = f"--{f.name.replace('_', '-')}", getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true")
        else:
            p.add_argument(flag, type=type(default), default=default)
    p.add_argument("--global-dim", type=int, help="D, the feature vector's length (default 128)")
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")


def build_parser() -> argparse.ArgumentParser:
    """The command's parser."""
    p = argparse.ArgumentParser(prog="dim-train", description="Deep InfoMax pretraining for dim_featurizer.")
    sub = p.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="pretrain an encoder (resumable)")
    diagnose = sub.add_parser(
        "diagnose", help="JS terms per false-sample kind on a run's validation set (same arguments as fit)"
    )
    probe = sub.add_parser(
        "probe", help="development probe: labels of training-split ids only, MAE on crystals the run never saw"
    )
    for parser in (fit, diagnose, probe):
        _run_arguments(parser)
    probe.add_argument("--budgets", type=int, nargs="+", default=[100, 1000])
    probe.add_argument("--draws", type=int, default=5)
    probe.add_argument("--models", nargs="+", default=["ridge", "mlp"])
    probe.add_argument("--n-score", type=int, default=2000, help="crystals to score on (training split, unseen)")
    probe.add_argument(
        "--encoders", nargs="+", default=["kept", "start", "untrained"], choices=["kept", "start", "untrained"]
    )

    export = sub.add_parser("export", help="write a run's best encoder into a weights folder, with a model card")
    export.add_argument("run_dir")
    export.add_argument("--name", required=True)
    export.add_argument("--out", default="weights")
    export.add_argument("--default", action="store_true", help="make it the package default")
    export.add_argument("--readout", choices=["global_mu", "pooled"], help="the feature vector (default: the run's)")

    plot = sub.add_parser("plot", help="draw a run's loss curves")
    plot.add_argument("run_dir")

    publish = sub.add_parser("publish", help="upload an exported folder to the Hugging Face Hub")
    publish.add_argument("folder")
    publish.add_argument("--repo-id", required=True)
    publish.add_argument("--private", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command in ("fit", "diagnose", "probe"):
        from .run import prepare_setup, pretrain

        values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in ("model", "amp")}
        model = {"global_dim": args.global_dim} if args.global_dim else {}
        common = dict(
            config=TrainConfig(**values, amp=not args.no_amp, model=model),
            encoding=EncodingConfig(max_atoms=args.max_atoms),
            split=args.split,
            subset=args.subset,
            ids_csv=args.ids_csv,
            cache_dir=args.cache_dir,
            limit=args.limit,
            n_jobs=args.n_jobs,
            device=args.device,
            pbar=not args.no_progress,
        )
    if args.command == "diagnose":
        from .diagnose import CHANCE, false_sample_terms, permutation_copies
        from .probes import compare_encoders, probe_encoders, probes_markdown

        setup, _ = prepare_setup(args.data, **common)
        run_dir = Path(args.run_dir)
        state = setup.load_model_state(run_dir / "checkpoint.pt")
        table, spread = false_sample_terms(setup)
        copies = permutation_copies(setup)
        probes = compare_encoders(setup, probe_encoders(setup, run_dir))
        table.to_csv(run_dir / "diagnosis.csv", index=False)
        summary = {
            "after_epoch": state["epoch"],
            "participation_ratio": spread,
            "permutations": copies,
            "probes": probes,
        }
        (run_dir / "diagnosis.json").write_text(json.dumps(summary, indent=2))
        print(f"after epoch {state['epoch']}: JS terms per sample kind (log 2 = {CHANCE:.3f} is chance)")
        print(table.to_string(index=False, float_format="%.4f"))
        print(f"false permutations of the validation crystals: {copies}")
        print(
            "participation ratio of validation feature vectors: " + ", ".join(f"{k} {v:.1f}" for k, v in spread.items())
        )
        print("label-free probes on the validation crystals (kept encoder, its initialisation, untrained control):")
        print(probes_markdown(probes))
    elif args.command == "probe":
        from .devprobe import dev_probe, dev_summary
        from .probes import probe_encoders

        if args.split is None:
            raise SystemExit("dim-train probe: --split is required (labels are read for its training ids only)")
        setup, _ = prepare_setup(args.data, **common)
        run_dir = Path(args.run_dir)
        encoders = {k: v for k, v in probe_encoders(setup, run_dir).items() if k in args.encoders}
        fits = dev_probe(
            encoders,
            setup,
            args.data,
            args.split,
            args.cache_dir,
            budgets=args.budgets,
            draws=args.draws,
            models=args.models,
            n_score=args.n_score,
            n_jobs=args.n_jobs,
        )
        fits.to_csv(run_dir / "devprobe.csv", index=False)
        table = dev_summary(fits)
        record = {
            "labels_read": sorted(fits["target"].unique()),
            "label_ids": "training split only: subsets of the run's training ids, scored on unseen training-split ids",
            "test_ids_read": 0,
            "n_score": int(fits["n_score"].iloc[0]),
            "draws": args.draws,
            "budgets": args.budgets,
            "medians": table.to_dict(orient="records"),
        }
        (run_dir / "devprobe.json").write_text(json.dumps(record, indent=2))
        print(f"development probe: median MAE on {record['n_score']} unseen training-split crystals")
        print(table.to_string(index=False, float_format="%.4f"))
    elif args.command == "fit":
        trainer = pretrain(args.data, args.run_dir, resume=args.resume, max_steps=args.max_steps, **common)
        state = trainer.state
        print(
            f"dim-train: {state['epoch']} epochs done; best validation loss {state['best_val']:.4f} "
            f"at epoch {state['best_epoch'] + 1}; run folder {args.run_dir}"
        )
    elif args.command == "export":
        from .export import export_run

        folder = export_run(args.run_dir, args.out, args.name, default=args.default, readout=args.readout)
        print(f"dim-train: exported {folder}")
    elif args.command == "plot":
        from .plot import plot_curves

        print(f"dim-train: wrote {plot_curves(Path(args.run_dir) / 'log.csv', Path(args.run_dir) / 'loss_curves.png')}")
    elif args.command == "publish":
        from .export import publish

        try:
            commit = publish(args.folder, args.repo_id, private=args.private)
        except RuntimeError as e:
            print(f"dim-train: {e}", file=sys.stderr)
            return 1
        print(f"dim-train: uploaded; pin it with revision={commit!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
