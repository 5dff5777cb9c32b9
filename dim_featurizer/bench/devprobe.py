"""The development probe: do a run's features predict properties of training-split crystals it never saw?

Beside the benchmark harness, the only other code that reads property labels (docs/method.md §3.7),
and only labels of the split's training ids: labelled subsets are drawn
from the run's training crystals, and the error is measured on crystals of
the training split that the encoder never trained on (the run's validation
crystals, plus training-split crystals left out of a proxy run). A test id
is never read: asking for one is an error.

``dim-bench probe`` is the command. It rebuilds the run's crystals and encoders with
:mod:`dim_featurizer.train` (imported here, lazily; ``train`` never imports the harness).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.config import READOUTS
from dim_featurizer.console import Parser, report_errors
from dim_featurizer.files import write_csv, write_json
from dim_featurizer.model import SiteNetEncoder
from dim_featurizer.readers import read_frame, read_split
from dim_featurizer.sampling import draw_subsets

from .protocol import fit_one

TARGETS = ("e_form", "gap")


def probe_ids(setup, split: str | Path, n_score: int = 2000, seed: int = 0) -> tuple[list[str], list[str]]:
    """(ids to draw labelled subsets from, ids to score on), both from the split's training ids.

    The first are the run's training crystals; the second its validation
    crystals plus, up to ``n_score`` in all, training-split crystals the run
    was never given, drawn with ``seed``.
    """
    ids = np.asarray(setup.dataset.ids)
    pool, score = list(ids[setup.train_idx]), list(ids[setup.val_idx])
    offered = set(ids) | set(setup.dataset.excluded)
    unseen = [i for i in read_split(split)["train"] if i not in offered]
    extra = max(0, n_score - len(score))
    if extra and unseen:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        score += list(rng.choice(unseen, size=min(extra, len(unseen)), replace=False))
    return pool, score


def dev_probe(
    encoders: dict[str, SiteNetEncoder],
    setup,
    source: str | Path,
    split: str | Path,
    cache_dir: str | Path,
    budgets: Sequence[int] = (100, 1000),
    draws: int = 5,
    models: Sequence[str] = ("ridge", "mlp"),
    targets: Sequence[str] = TARGETS,
    readouts: Sequence[str] = READOUTS,
    n_score: int = 2000,
    seed: int = 0,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Fit every (encoder, readout, target, budget, draw, model) on training-split labels; MAE on unseen crystals.

    Args:
        encoders: name → encoder (e.g. kept, start, untrained); all see the same crystals and draws.
        setup: the run's :class:`~dim_featurizer.train.build.RunSetup`.
        source: the run's JSON frame (structures and label columns).
        split: the split file; only its ``train`` ids are read.
        cache_dir: the encoding cache.
        budgets, draws: labelled-subset sizes and seeded draws per size.
        models: kinds of :func:`dim_featurizer.bench.protocol.make_model`.
        targets: label columns.
        readouts: ``global_mu`` (μ_G) and/or ``pooled``.
        n_score: how many crystals to score on.
        seed: seeds the scoring crystals and the draws.
        n_jobs: parallel fits (joblib).

    Returns:
        One row per fit: encoder, readout, target, model, budget, draw, mae, n_score.
    """
    from joblib import Parallel, delayed

    from dim_featurizer.train.cache import cached_dataset
    from dim_featurizer.train.probes import collect

    pool_ids, score_ids = probe_ids(setup, split, n_score, seed)
    subsets = draw_subsets(len(pool_ids), budgets, draws, seed)
    labelled = sorted({pool_ids[i] for rows in subsets.values() for i in rows})
    wanted = labelled + score_ids
    train_ids = set(read_split(split)["train"])
    if not set(wanted) <= train_ids:
        raise ValueError("the development probe reads labels of the split's training ids only")
    frame = read_frame(source, wanted)
    encoding = next(iter(encoders.values())).config.encoding
    dataset, _ = cached_dataset(frame["structure"], encoding, cache_dir, pbar=False)
    position = {key: i for i, key in enumerate(dataset.ids)}
    labelled = [i for i in labelled if i in position]
    score_ids = [i for i in score_ids if i in position]
    rows = np.array([position[i] for i in labelled + score_ids])
    n_lab = len(labelled)
    jobs, keys = [], []
    for name, encoder in encoders.items():
        data = collect(encoder.to(setup.device), dataset, rows, setup.config.batch_sites)
        for readout in readouts:
            x = data[readout]
            x = (x - x.mean(0)) / np.where(x.std(0) > 1e-9, x.std(0), 1.0)  # over every probe crystal: no label
            x_lab = pd.DataFrame(x[:n_lab], index=labelled)
            for target in targets:
                y_lab = frame.loc[labelled, target].to_numpy(float)
                y_score = frame.loc[score_ids, target].to_numpy(float)
                for (budget, draw), chosen in subsets.items():
                    members = [pool_ids[i] for i in chosen if pool_ids[i] in position]
                    at = x_lab.index.get_indexer(members)
                    for kind in models:
                        keys.append((name, readout, target, kind, budget, draw))
                        jobs.append(delayed(fit_one)(x[:n_lab][at], y_lab[at], x[n_lab:], y_score, kind, draw, False))
    maes = Parallel(n_jobs=n_jobs)(jobs)
    out = pd.DataFrame(keys, columns=["encoder", "readout", "target", "model", "budget", "draw"])
    out["mae"] = maes
    out["n_score"] = len(score_ids)
    return out


def dev_summary(fits: pd.DataFrame) -> pd.DataFrame:
    """Median MAE per target, model, budget and readout, one column per encoder."""
    keys = ["target", "model", "budget", "readout"]
    return fits.pivot_table(index=keys, columns="encoder", values="mae", aggfunc="median").reset_index()


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``dim-bench probe``: the run's data options (as ``dim-train fit``) and the probe's own."""
    from dim_featurizer.train.cli import run_arguments

    p = Parser(
        prog="dim-bench probe",
        description="Development probe: labels of training-split ids only, MAE on crystals the run never saw.",
    )
    run_arguments(p)
    p.add_argument("--budgets", type=int, nargs="+", default=[100, 1000], help="labelled crystals per fit")
    p.add_argument("--draws", type=int, default=5, help="seeded draws per budget")
    p.add_argument("--models", nargs="+", default=["ridge", "mlp"], help="regressors fitted on the features")
    p.add_argument("--n-score", type=int, default=2000, help="crystals to score on (training split, unseen)")
    p.add_argument(
        "--encoders",
        nargs="+",
        choices=["kept", "start", "untrained"],
        help="the run's kept encoder, its seeded initialisation, the package's untrained control "
        "(default: all three; with --families, kept and start)",
    )
    family = p.add_argument_group("leave-family-out probe (docs/method.md §3.9)")
    family.add_argument(
        "--families", help="a family table (id, family; dim-bench families): run the family probe instead"
    )
    family.add_argument(
        "--phonons", help="Matbench phonons frame for the second view (default: beside DATA, when there)"
    )
    family.add_argument(
        "--readouts", nargs="+", default=["global_mu"], choices=list(READOUTS), help="readouts of each encoder"
    )
    family.add_argument(
        "--combos", nargs="*", default=["kept+start"], help="feature sets of two encoders' μ_G side by side"
    )
    family.add_argument(
        "--peers", nargs="*", default=[], choices=["magpie", "chgnet"], help="other featurisers scored beside"
    )
    family.add_argument(
        "--diagnose",
        action="store_true",
        help="also write familydiagnosis.csv: per layer, the linear R² of composition and local geometry",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the development probe of a run folder; writes ``devprobe.csv`` and ``devprobe.json`` there."""
    args = build_parser().parse_args(argv)
    return report_errors("dim-bench probe", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    """The probe's work, given its parsed arguments."""
    from dim_featurizer.train.cli import run_options
    from dim_featurizer.train.probes import probe_encoders
    from dim_featurizer.train.run import prepare_setup

    if args.split is None:
        raise ValueError("--split is required (labels are read for its training ids only)")
    setup, _ = prepare_setup(args.data, **run_options(args))
    run_dir = Path(args.run_dir)
    wanted = args.encoders or (["kept", "start"] if args.families else ["kept", "start", "untrained"])
    encoders = {k: v for k, v in probe_encoders(setup, run_dir).items() if k in wanted}
    if args.families:
        return run_family_probe(args, setup, encoders, run_dir)
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
    write_csv(run_dir / "devprobe.csv", fits)
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
    write_json(run_dir / "devprobe.json", record)
    print(f"development probe: median MAE on {record['n_score']} unseen training-split crystals")
    print(table.to_string(index=False, float_format="%.4f"))
    return 0


def run_family_probe(args: argparse.Namespace, setup, encoders: dict, run_dir: Path) -> int:
    """The leave-family-out probe of a run: ``familyprobe.csv`` (resumable) and ``familyprobe.json``."""
    from .families import read_families
    from .familyprobe import CONTROL, family_diagnosis, family_probe, family_sets, family_summary, ratio_table

    if CONTROL not in encoders:
        raise ValueError(f"the family probe scores every feature set against {CONTROL!r}: include it in --encoders")
    families = read_families(args.families)
    trained_on = set(np.asarray(setup.dataset.ids)) & set(families.index[families.fillna("") != ""])
    if trained_on:
        raise ValueError(
            f"{len(trained_on)} family crystals were in this run's pretraining (e.g. {sorted(trained_on)[0]}): "
            "fit it with --exclude-ids on the family table"
        )
    phonons = Path(args.phonons) if args.phonons else Path(args.data).parent / "matbench_phonons.json.gz"
    sets = family_sets(families, args.data, args.split, phonons if phonons.is_file() else None)
    if args.diagnose and not (run_dir / "familydiagnosis.csv").is_file():
        diagnosis = family_diagnosis(encoders, sets, args.cache_dir, setup.config.batch_sites)
        write_csv(run_dir / "familydiagnosis.csv", diagnosis)
        print(diagnosis.pivot_table(index="measure", columns=["family", "encoder"], values="value").round(3))
    out = run_dir / "familyprobe.csv"
    done = pd.read_csv(out) if out.is_file() else None
    fits = family_probe(
        encoders,
        sets,
        args.cache_dir,
        setup.config.batch_sites,
        readouts=args.readouts,
        combos=args.combos,
        peers=args.peers,
        n_jobs=args.n_jobs,
        done=done,
        save=lambda rows: write_csv(out, rows),
    )
    summary = family_summary(fits)
    record = {
        "labels_read": ["e_form (training-split family crystals)"]
        + (["last phdos peak (Matbench phonons, training fold)"] if phonons.is_file() else []),
        "test_ids_read": 0,
        "families": args.families,
        "control": CONTROL,
        "sizes": {
            f: {"pool": int(g["n_pool"].iloc[0]), "score": int(g["n_score"].iloc[0])} for f, g in fits.groupby("family")
        },
        "medians": summary.to_dict(orient="records"),
    }
    write_json(run_dir / "familyprobe.json", record)
    print("leave-family-out probe: median MAE / the run's own control (start), per family")
    print(ratio_table(summary))
    return 0
