"""``dim-train``: pretrain (fit), export a run into weights/, plot, publish to the Hub."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from dim_featurizer.config import ModelConfig
from dim_featurizer.console import Parser, report_errors
from dim_featurizer.encoding import EncodingConfig
from dim_featurizer.files import write_csv, write_json

from .config import TrainConfig

#: One help line per TrainConfig option, with the section of docs/method.md that explains it.
OPTION_HELP = {
    "epochs": "most epochs (a run also stops at a validation plateau)",
    "lr": "AdamW learning rate (method §3.7)",
    "weight_decay": "AdamW weight decay (method §3.7)",
    "batch_sites": "unique sites per batch (method §1.7)",
    "val_fraction": "share of the training crystals held out for the validation loss (method §3.7)",
    "seed": "seeds the split, batch order, every false sample and the noise",
    "alpha": "weight of the Jensen-Shannon terms (method §3.3)",
    "beta": "weight of the KL terms (method §3.3)",
    "patience": "stop after this many epochs without a validation gain of --min-delta",
    "min_delta": "the smallest validation-loss fall that counts as a gain",
    "checkpoint_every": "steps between checkpoints within an epoch",
    "grad_clip": "gradient-norm clip, 0 for none (method §3.7)",
    "local_weighting": "local JS terms: 'distance' weights pairs by (d+1)^-2 per site, 'uniform' averages them "
    "(method §3.2)",
    "permutation": "global false permutation: over the 'supercell' atoms or among the primitive 'sites' (method §3.5)",
    "reconstruction": "weight of the label-free reconstruction term, 0 for off (method §3.8)",
    "local_sample": "a local sample is the 'neighbour' and a distance, or the 'pair' of atoms and a distance "
    "(method §3.4)",
    "amsgrad": "AdamW's amsgrad variant (method §3.7)",
    "eps": "AdamW's eps (method §3.7)",
    "masked_sites": "weight of masked-site prediction: hide 15%% of the sites' species, predict them from their "
    "environment; 0 for off (method §3.8)",
    "jitter": "augmented true samples: largest per-crystal displacement scale in Å of a jittered, strained view "
    "that must pair with its own crystal; 0 for off (method §3.8)",
    "shell_reconstruction": "weight of first-shell reconstruction: predict each site's first-shell composition, "
    "coordination number and nearest-neighbour distance from μ_i; 0 for off (method §3.8)",
    "element_reconstruction": "weight of Magpie element-table reconstruction: predict each site's 22 Magpie "
    "element properties from μ_i and the crystal's Magpie statistics of them from μ_G; 0 for off (method §3.8)",
    "vacancies": "add a global false crystal: the crystal with one supercell atom removed (method §3.8)",
    "anchor": "weight of an L2-SP penalty pulling the encoder's weights toward their seeded initialisation "
    "(λ/2 · Σ(θ − θ₀)²); 0 for off (method §3.9)",
    "substitutions": "hypothetical crystals added per training crystal, its elements swapped within their "
    "periodic-table groups; 0 for none (method §3.9)",
    "compile": "compile the encoder's per-pair work, forward and backward, with torch.compile: ~1.7x the crystals/s "
    "on CPU after a ~30 s start; the same objective and the same probes",
}


def run_arguments(p: argparse.ArgumentParser) -> None:
    """The data, run-folder and hyper-parameter arguments shared by ``fit`` and ``diagnose`` (and ``dim-bench
    probe``); every TrainConfig field but ``model`` and ``amp`` is an option, defaulting to the shipped recipe."""
    p.add_argument("data", help="JSON frame, or folder/zip/tar of <id>.cif files (with --ids-csv)")
    p.add_argument("--run-dir", required=True, help="the run folder (checkpoint, log, best/, run.json)")
    p.add_argument("--split", help="split file; only --subset ids are read")
    p.add_argument("--subset", default="train", help="which ids of the split file are read")
    p.add_argument("--ids-csv", help="CSV whose first column lists the CIF ids")
    p.add_argument("--cache-dir", default=".cache/dim-encodings", help="encoded-crystal cache")
    p.add_argument(
        "--exclude-ids", help="CSV whose first column lists ids to leave out (the leave-family-out families)"
    )
    p.add_argument("--limit", type=int, help="use only the first N ids (proxy runs), after --exclude-ids")
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--max-steps", type=int, help="stop after N steps (checkpointed, resumable)")
    p.add_argument("--n-jobs", type=int, default=1, help="encoding processes")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--max-atoms", type=int, default=EncodingConfig.max_atoms, help="supercell size (method §1.2)")
    p.add_argument("--only-other", action="store_true", help="ablation: only 'other' false samples (Fig. 11)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("model", "only_other", "amp"):
            continue
        flag, default = f"--{f.name.replace('_', '-')}", getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=OPTION_HELP[f.name])
        else:
            p.add_argument(flag, type=type(default), default=default, help=OPTION_HELP[f.name])
    shape = {
        "global_dim": "D, the length of μ_G",
        "hidden": "width of the site, distance and attention embeddings",
        "attention_layers": "attention blocks over each environment; each further one reads one more shell",
    }
    model = ModelConfig(**defaults.model)
    for name, text in shape.items():
        p.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(model, name), help=f"{text} (method §2)"
        )
    p.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")


def build_parser() -> argparse.ArgumentParser:
    """The command's parser."""
    p = Parser(prog="dim-train", description="Deep InfoMax pretraining for dim_featurizer.")
    sub = p.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="pretrain an encoder (resumable)")
    diagnose = sub.add_parser(
        "diagnose", help="JS terms per false-sample kind on a run's validation set (same arguments as fit)"
    )
    for parser in (fit, diagnose):
        run_arguments(parser)
    fit.add_argument("--overwrite", action="store_true", help="replace a run already in --run-dir (else refused)")

    export = sub.add_parser("export", help="write a run's best encoder into a weights folder, with a model card")
    export.add_argument("run_dir", help="the run folder (log.csv, run.json, best/)")
    export.add_argument("--name", required=True, help="the weights' name (their folder under --out)")
    export.add_argument("--out", default="weights", help="the weights root, with manifest.json")
    export.add_argument("--default", action="store_true", help="make it the package default")
    export.add_argument("--readout", choices=["global_mu", "pooled"], help="the feature vector (default: the run's)")
    export.add_argument(
        "--reexport", action="store_true", help="refresh config and card of weights exported before (not best/)"
    )

    plot = sub.add_parser("plot", help="draw a run's loss curves")
    plot.add_argument("run_dir", help="the run folder (reads log.csv, writes loss_curves.png)")

    publish = sub.add_parser("publish", help="upload an exported folder to the Hugging Face Hub")
    publish.add_argument("folder", help="an exported weights folder (config.json, model.safetensors, README.md)")
    publish.add_argument("--repo-id", required=True, help="the Hub repository, owner/name")
    publish.add_argument("--private", action="store_true", help="create the repository as private")
    return p


def run_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`run.prepare_setup` (and :func:`run.pretrain`) from parsed
    :func:`run_arguments`."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in ("model", "amp")}
    recipe = TrainConfig().model
    chosen = {k: getattr(args, k) for k in ("global_dim", "hidden", "attention_layers")}
    # Only what differs from the recipe is recorded (0 reaches ModelConfig and is refused, not dropped).
    model = recipe | {k: v for k, v in chosen.items() if v != getattr(ModelConfig(**recipe), k)}
    return dict(
        config=TrainConfig(**values, amp=not args.no_amp, model=model),
        encoding=EncodingConfig(max_atoms=args.max_atoms),
        split=args.split,
        subset=args.subset,
        ids_csv=args.ids_csv,
        exclude_ids=args.exclude_ids,
        cache_dir=args.cache_dir,
        limit=args.limit,
        n_jobs=args.n_jobs,
        device=args.device,
        pbar=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (one line on stderr for any error a user can cause)."""
    args = build_parser().parse_args(argv)
    return report_errors("dim-train", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    """The command's work, given its parsed arguments."""
    if args.command in ("fit", "diagnose"):
        from .run import prepare_setup, pretrain

        common = run_options(args)
    if args.command == "diagnose":
        from .diagnose import CHANCE, false_sample_terms, permutation_copies
        from .probes import compare_encoders, probe_encoders, probes_markdown

        setup, _ = prepare_setup(args.data, **common)
        run_dir = Path(args.run_dir)
        state = setup.load_model_state(run_dir / "checkpoint.pt")
        table, spread = false_sample_terms(setup)
        copies = permutation_copies(setup)
        probes = compare_encoders(setup, probe_encoders(setup, run_dir))
        write_csv(run_dir / "diagnosis.csv", table)
        summary = {
            "after_epoch": state["epoch"],
            "participation_ratio": spread,
            "permutations": copies,
            "probes": probes,
        }
        write_json(run_dir / "diagnosis.json", summary)
        print(f"after epoch {state['epoch']}: JS terms per sample kind (log 2 = {CHANCE:.3f} is chance)")
        print(table.to_string(index=False, float_format="%.4f"))
        print(f"false permutations of the validation crystals: {copies}")
        print(
            "participation ratio of validation feature vectors: " + ", ".join(f"{k} {v:.1f}" for k, v in spread.items())
        )
        print("label-free probes on the validation crystals (kept encoder, its initialisation, untrained control):")
        print(probes_markdown(probes))
    elif args.command == "fit":
        trainer = pretrain(
            args.data, args.run_dir, resume=args.resume, overwrite=args.overwrite, max_steps=args.max_steps, **common
        )
        state = trainer.state
        print(
            f"dim-train: {state['epoch']} epochs done; best validation loss {state['best_val']:.4f} "
            f"at epoch {state['best_epoch'] + 1}; run folder {args.run_dir}"
        )
    elif args.command == "export":
        from .export import export_run

        folder = export_run(
            args.run_dir, args.out, args.name, default=args.default, readout=args.readout, reexport=args.reexport
        )
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
