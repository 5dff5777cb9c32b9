"""The benchmark harness on tiny subsets: paired draws, resumable feature cache, honesty guard, outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.bench import report
from dim_featurizer.bench.cli import main
from dim_featurizer.bench.protocol import run_fits
from dim_featurizer.bench.representations import cached_features, check_pretraining
from dim_featurizer.bench.tasks import load_task
from dim_featurizer.sampling import draw_subsets


def test_draws_are_seeded_and_shared():
    a = draw_subsets(500, [50, 100], 4, seed=1)
    b = draw_subsets(500, [50, 100], 4, seed=1)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert all(len(v) == k[0] and len(np.unique(v)) == k[0] for k, v in a.items())
    assert not np.array_equal(a[50, 0], a[50, 1])


def test_phonons_uses_matbench_fold_zero(full_data_dir):
    task = load_task("phonons", full_data_dir)
    assert len(task.pool) + len(task.test) == 1265 and len(task.test) == 253
    assert not set(task.pool.index) & set(task.test.index)


def test_feature_cache_is_resumable(tmp_path, real_structures, monkeypatch):
    structures = pd.Series(real_structures[:12], index=[f"s{i}" for i in range(12)])
    first = cached_features("magpie", structures.iloc[:5], tmp_path, chunk=2, pbar=False)
    assert len(list(tmp_path.rglob("part-*.npz"))) == 3
    calls = []
    from dim_featurizer.bench.representations import MagpieFromStructure

    original = MagpieFromStructure.featurize_many
    monkeypatch.setattr(
        MagpieFromStructure, "featurize_many", lambda self, s, **k: calls.append(len(s)) or original(self, s, **k)
    )
    both = cached_features("magpie", structures, tmp_path, chunk=4, pbar=False)
    assert calls == [4, 3]  # only the 7 missing structures
    np.testing.assert_array_equal(both.loc[first.index].to_numpy(), first.to_numpy())


@pytest.mark.slow
def test_parallel_cache_equals_serial(tmp_path, real_structures):
    structures = pd.Series(real_structures[:6], index=[f"s{i}" for i in range(6)])
    parallel = cached_features("magpie", structures, tmp_path / "a", chunk=2, pbar=False, n_jobs=2)
    serial = cached_features("magpie", structures, tmp_path / "b", chunk=3, pbar=False)
    assert len(list((tmp_path / "a").rglob("part-*.npz"))) == 3
    np.testing.assert_array_equal(parallel.to_numpy(), serial.to_numpy())
    assert parallel.index.tolist() == structures.index.tolist()


def test_pretraining_guard_reads_the_weights_record(tmp_path):
    from dataclasses import replace

    from dim_featurizer.model import untrained_encoder
    from dim_featurizer.weights import save_pretrained

    def guard(record, card=None):
        encoder = untrained_encoder()
        encoder.config = replace(encoder.config, pretraining=record)
        save_pretrained(encoder, tmp_path)
        if card is not None:
            (tmp_path / "README.md").write_text(card)
        check_pretraining(DeepInfoMaxFeaturizer(weights=str(tmp_path), pbar=False), ["mp-1"])

    with pytest.raises(ValueError, match="record no pretraining facts"):
        guard(None)
    with pytest.raises(ValueError, match="labels read in pretraining: \\['e_form'\\]"):
        guard({"labels_read": ["e_form"], "test_ids_read": 0})
    with pytest.raises(ValueError, match="test ids read in pretraining: 3"):
        guard({"labels_read": [], "test_ids_read": 3})
    with pytest.raises(ValueError, match="test ids read in pretraining: None"):
        guard({"labels_read": []})  # no split file: unknown is not good enough
    with pytest.raises(ValueError, match="names test ids"):
        guard({"labels_read": [], "test_ids_read": 0}, card="Trained on everything but `mp-1`.\n")
    guard({"labels_read": [], "test_ids_read": 0}, card="Labels read: none.\n")
    check_pretraining(DeepInfoMaxFeaturizer(weights="untrained"), ["mp-1"])


def test_representation_names_come_from_the_manifest(monkeypatch, tmp_path):
    from dataclasses import replace

    from dim_featurizer.bench import representations as R
    from dim_featurizer.config import ModelConfig

    # dim-c: dim-a's shape, other input standardisation (trained on other crystals).
    mean = (1.0,) * ModelConfig().n_site_features
    shapes = {"dim-a": {}, "dim-a-ablation": {}, "dim-b": {"hidden": 128}, "dim-b-ablation": {"hidden": 128}}
    shapes["dim-c"] = {"feature_mean": mean}
    for name, fields in shapes.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(replace(ModelConfig(), **fields).to_json())
    monkeypatch.setattr(R, "bundled_root", lambda: tmp_path)
    monkeypatch.setattr(R, "default_weights", lambda: "dim-a")
    monkeypatch.setattr(R, "bundled_names", lambda: list(shapes))
    pooled = {"readout": "pooled"}
    monkeypatch.setattr(R, "read_manifest", lambda: {n: pooled if n.startswith("dim-a") else {} for n in shapes})
    assert R.make_featurizer("dim-untrained").readout == "pooled"  # the control reads what the default reads
    assert R.make_featurizer("dim-untrained").weights == "untrained:dim-a"  # its shape and standardisation
    names = list(R.representations())
    # Each bundled model brings its own control unless one of its shape, standardisation and readout ran:
    # dim-a-ablation shares the default's, dim-b-ablation dim-b's.
    mine = ["dim-a-ablation", "dim-b", "dim-b-untrained", "dim-b-ablation", "dim-c", "dim-c-untrained"]
    assert names[:11] == ["dim", "dim-untrained", *mine, "ofm", "xrd", "magpie"]
    pairs = ["dim+magpie", "dim-untrained+magpie"]
    assert names[11:] in (pairs, [*pairs, "chgnet"])  # chgnet: the optional peer, when installed
    controls = R.control_columns()
    assert controls["dim-a-ablation"] == "dim-untrained" and controls["dim-b-ablation"] == "dim-b-untrained"
    assert controls["dim+magpie"] == "dim-untrained+magpie" and set(controls.values()) <= set(names)
    assert list(R.dim_members("dim+magpie")) == ["dim"] and R.dim_members("magpie") == {}
    assert R.make_featurizer("dim-b").weights == "dim-b" and R.make_featurizer("dim").weights == "dim-a"
    assert R.make_featurizer("dim-b-untrained").weights == "untrained:dim-b"
    monkeypatch.setattr(R, "default_weights", lambda: "dim-b")
    assert R.make_featurizer("dim-untrained").weights == "untrained:dim-b"  # the wide default's own control
    assert "dim-b-untrained" not in R.representations() and "dim-b-ablation-untrained" not in R.representations()
    assert {"dim-a-untrained", "dim-c-untrained"} <= set(R.representations())  # dim-a-ablation shares dim-a's
    monkeypatch.setattr(R, "default_weights", lambda: "untrained")
    reps = R.representations()
    assert "dim" not in reps and "dim+magpie" not in reps and R.make_featurizer("dim-untrained").weights == "untrained"
    assert "dim-a-untrained" in reps and "dim-c-untrained" in reps  # neither is the package's network
    assert list(R.dim_members("dim-untrained+magpie")) == ["dim-untrained"]


def test_concatenation_reads_its_parts_caches(tmp_path, real_structures):
    """``dim+magpie`` is the two cached blocks side by side, and featurising it directly gives the same."""
    from dim_featurizer.bench.representations import make_featurizer

    structures = pd.Series(real_structures[:6], index=[f"s{i}" for i in range(6)])
    both = cached_features("dim+magpie", structures, tmp_path, chunk=4, pbar=False)
    dim = cached_features("dim", structures, tmp_path, pbar=False)
    magpie = cached_features("magpie", structures, tmp_path, pbar=False)
    assert both.shape == (6, dim.shape[1] + magpie.shape[1]) and list(both.columns) == list(range(both.shape[1]))
    np.testing.assert_array_equal(both.to_numpy(), np.hstack([dim.to_numpy(), magpie.to_numpy()]))
    assert not (tmp_path / "dim+magpie").exists()  # no third copy of the features
    direct = np.asarray(make_featurizer("dim+magpie").featurize_many(list(structures)))
    np.testing.assert_allclose(direct, both.to_numpy(), rtol=1e-5, atol=1e-6)
    assert len(make_featurizer("dim+magpie").feature_labels()) == both.shape[1]


def test_pool_limit_is_a_seeded_sample_of_the_pool(sample_dir):
    whole = load_task("phonons", sample_dir)
    a, b = (load_task("phonons", sample_dir, pool_limit=50, seed=3) for _ in range(2))
    assert len(a.pool) == 50 and a.pool.index.equals(b.pool.index) and set(a.pool.index) <= set(whole.pool.index)
    assert not a.pool.index.equals(load_task("phonons", sample_dir, pool_limit=50, seed=4).pool.index)
    assert a.pool.index.equals(whole.pool.index[whole.pool.index.isin(a.pool.index)])  # pool order kept
    assert a.test.index.equals(whole.test.index)


def test_fits_are_paired_and_reported(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"x{i}" for i in range(80)]
    pool = pd.DataFrame({"y": rng.random(60)}, index=ids[:60])
    test = pd.DataFrame({"y": rng.random(20)}, index=ids[60:])
    good = pd.DataFrame(np.c_[np.r_[pool.y, test.y], rng.random(80)], index=ids)  # feature 0 is the label
    noise = pd.DataFrame(rng.random((80, 2)), index=ids)
    subsets = draw_subsets(60, [10, 30], 3)
    fits = run_fits("toy", {"dim": good, "noise": noise}, pool, test, "y", subsets, ("linear",), pbar=False)
    assert len(fits) == 2 * 2 * 3
    assert (fits.groupby(["representation"]).size() == 6).all()
    wins = report.win_rates(fits)
    assert set(wins["baseline"]) == {"noise"} and (wins["win_rate"] == 1.0).all()
    table = report.summary(fits)
    assert set(table.columns) >= {"median", "q25", "q75", "iqr", "fits"}
    assert report.box_plots(fits, tmp_path, {"toy": "eV"})[0].stat().st_size > 1000
    text = report.results_markdown(fits, {"toy": "eV"})
    rows = [line for line in text.splitlines() if line.startswith("| linear |")]
    assert len(rows) == 4  # 2 budgets x (MAE table + win-rate table)
    assert all(row.split(" | ")[2].startswith("**") and "**" not in row.split(" | ")[3] for row in rows[:2])
    assert rows[2].endswith("| 1.00 |")


@pytest.mark.slow
def test_dim_bench_quick_run(tmp_path, sample_dir):
    args = [
        "--data-dir",
        str(sample_dir),
        "--tasks",
        "phonons",
        "--representations",
        "dim-untrained",
        "magpie",
        "--draws",
        "2",
    ]
    args += [
        "--budgets",
        "50",
        "--test-limit",
        "40",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(args + ["--n-jobs", "1", "--no-progress", "--featurize-only"]) == 0
    assert not (tmp_path / "out" / "fits.csv").exists() and len(list((tmp_path / "c").rglob("part-*.npz"))) >= 2
    assert main(args + ["--n-jobs", "1", "--no-progress", "--no-tsne"]) == 0
    fits = pd.read_csv(tmp_path / "out" / "fits.csv")
    assert len(fits) == 2 * 2 * 3 and (fits["n_test"] == 40).all() and np.isfinite(fits["mae"]).all()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["settings"]["draws"] == 2
    assert (tmp_path / "out" / "box_phonons.png").is_file()
    assert "| model | budget | dim-untrained | magpie |" in (tmp_path / "out" / "tables.md").read_text()
    parts = sorted((tmp_path / "c" / "fits").glob("phonons-*.csv"))
    assert len(parts) == 2  # one stored part per representation
    parts[0].write_text(parts[0].read_text().replace("phonons,", "stored,"))  # a rerun must reuse the parts
    assert main(args + ["--n-jobs", "1", "--no-progress", "--no-tsne"]) == 0
    assert "stored" in set(pd.read_csv(tmp_path / "out" / "fits.csv")["task"])
    # Report-only: outputs from stored fits; a representation never fitted is listed, not computed.
    at = args.index("magpie") + 1
    report_args = [*args[:at], "xrd", *args[at:]]
    assert main(report_args + ["--report-only", "--no-progress", "--no-tsne"]) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["missing"] == ["phonons/xrd"] and not list((tmp_path / "c").rglob("xrd"))


def test_metal_halide_labels(examples):
    labels = report.metal_halide(pd.Series([examples["NaCl"], examples["Si"], examples["CsCl"], examples["GaAs"]]))
    assert labels.tolist() == [True, False, True, False]


def test_protocol_v2_scales_on_the_unlabelled_pool(tmp_path, sample_dir):
    from dim_featurizer.bench import run_benchmark
    from dim_featurizer.bench.protocol import fit_one, standardise

    rng = np.random.default_rng(0)
    ids = [f"x{i}" for i in range(80)]
    pool = pd.DataFrame({"y": rng.random(60)}, index=ids[:60])
    test = pd.DataFrame({"y": rng.random(20)}, index=ids[60:])
    features = pd.DataFrame(np.c_[np.r_[pool.y, test.y], rng.random(80) * 50 + 7], index=ids)
    subsets = {(10, 0): np.arange(10)}
    x = standardise(features.to_numpy(), features.loc[pool.index].to_numpy())
    np.testing.assert_allclose(x[:60].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(x[:60].std(0), 1, atol=1e-12)
    v2 = run_fits("toy", {"f": features}, pool, test, "y", subsets, ("linear",), pbar=False)
    by_hand = fit_one(x[:10], pool.y.to_numpy()[:10], x[60:], test.y.to_numpy(), "linear", 0, scale=False)
    assert v2["mae"].iloc[0] == pytest.approx(by_hand)
    subset_only = x.copy()
    subset_only[:, 0] = (features[0] - features[0][:10].mean()) / features[0][:10].std(ddof=0)
    assert not np.allclose(subset_only[60:, 0], x[60:, 0])  # the two scalers really differ
    result = run_benchmark(
        out=None,
        tasks=["phonons"],
        representations=["magpie"],
        budgets=[20],
        draws=2,
        test_limit=20,
        data_dir=sample_dir,
        cache_dir=tmp_path,
        n_jobs=1,
        pbar=False,
        log=None,
    )
    assert sorted(result.fits["model"].unique()) == ["linear", "mlp", "ridge"] and len(result.fits) == 6
    stored = sum(len(np.load(p)["ids"]) for p in tmp_path.rglob("part-*.npz"))
    assert stored == 240 + 20  # v2 featurises the whole pool, not only the drawn crystals


def test_chgnet_peer_gives_a_row_per_structure(examples):
    """The optional peer ([peers]): CHGNet's crystal features, NaN rows for what it cannot read."""
    pytest.importorskip("chgnet")
    from dim_featurizer.bench.representations import CHGNetFeatures, representations

    assert "chgnet" in representations()
    peer = CHGNetFeatures(batch_size=4)
    structures = [examples["NaCl"], examples["Si"], "not a structure", examples["GaAs"]]
    rows = np.asarray(peer.featurize_many(structures), dtype=float)
    assert rows.shape == (4, len(peer.feature_labels())) and np.isnan(rows[2]).all()
    assert np.isfinite(np.delete(rows, 2, axis=0)).all()
    again = np.asarray(peer.featurize_many([examples["NaCl"]]), dtype=float)
    np.testing.assert_allclose(again[0], rows[0], atol=1e-5)  # the same crystal alone or in a batch


def test_earlier_fits_are_kept_extended_and_carried(tmp_path, sample_dir, monkeypatch):
    """More draws fit only the new ones; other columns are carried; a changed seed or weights keeps nothing."""
    from dim_featurizer.bench import run as R

    fitted = []
    original = R.run_fits
    monkeypatch.setattr(R, "run_fits", lambda *a, **k: fitted.append(sorted(a[5])) or original(*a, **k))
    out = tmp_path / "out"

    def bench(reps, draws, cache, seed=0):
        fitted.clear()
        options = dict(tasks=["phonons"], budgets=[20], test_limit=20, data_dir=sample_dir, n_jobs=1, pbar=False)
        return R.run_benchmark(out, representations=reps, draws=draws, cache_dir=tmp_path / cache, seed=seed,
                               log=None, tsne=False, **options)  # fmt: skip

    first = bench(["magpie"], 2, "a").fits
    assert fitted == [[(20, 0), (20, 1)]]
    second = bench(["magpie"], 3, "b").fits  # a fresh cache: only the earlier outputs are reused
    assert fitted == [[(20, 2)]]
    pd.testing.assert_frame_equal(second[second["draw"] < 2].reset_index(drop=True), first)
    third = bench(["dim-untrained"], 3, "c").fits
    assert fitted == [[(20, 0), (20, 1), (20, 2)]] and set(third["representation"]) == {"magpie", "dim-untrained"}
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["carried"] == ["phonons/magpie"] and "dim-untrained" in run["weights"]
    run["weights"]["dim-untrained"]["seed"] = 7  # other weights: its fits are not this column's any more
    (out / "run.json").write_text(json.dumps(run))
    bench(["dim-untrained"], 3, "d")
    assert fitted == [[(20, 0), (20, 1), (20, 2)]]
    bench(["magpie"], 3, "e", seed=1)  # other draws
    assert fitted == [[(20, 0), (20, 1), (20, 2)]]


def test_headline_adds_the_peers_that_ran_and_the_ratio():
    rows = [("e_form", "ridge", 100, r, m) for r, m in [("dim", 0.4), ("dim-untrained", 0.5), ("magpie", 0.3)]]
    rows += [("phonons", "ridge", 100, r, m) for r, m in [("dim", 90), ("dim-untrained", 100), ("magpie", 95)]]
    rows.append(("phonons", "ridge", 100, "chgnet", 80))
    table = pd.DataFrame(rows, columns=["task", "model", "budget", "representation", "median"])
    text = report.headline_markdown(table, {"e_form": "eV/atom", "phonons": "cm^-1"})
    lines = text.splitlines()
    assert lines[0] == "| task | model | labels | dim | dim-untrained | magpie | chgnet | dim / dim-untrained |"
    assert lines[2] == "| e_form (eV/atom) | ridge | 100 | 0.4 | 0.5 | **0.3** | – | 0.800 |"
    assert lines[3] == "| phonons (cm^-1) | ridge | 100 | 90 | 100 | 95 | **80** | 0.900 |"


def test_controls_table_divides_each_pretrained_column_by_its_own_control():
    rows = [("e_form", "mlp", 1000, r, m) for r, m in [("dim", 0.2), ("dim-untrained", 0.25), ("old", 0.3)]]
    rows += [("e_form", "mlp", 1000, "old-untrained", 0.2), ("phonons", "mlp", 1000, "dim", 90)]
    rows += [("phonons", "mlp", 1000, "dim-untrained", 100), ("e_form", "mlp", 250, "dim", 1.0)]
    table = pd.DataFrame(rows, columns=["task", "model", "budget", "representation", "median"])
    controls = {"dim": "dim-untrained", "old": "old-untrained", "never-ran": "dim-untrained"}
    lines = report.controls_markdown(table, controls, {"e_form": "eV/atom", "phonons": "cm^-1"}).splitlines()
    assert lines[0] == "| task | model | labels | dim / dim-untrained | old / old-untrained |"
    assert lines[2:] == [
        "| e_form (eV/atom) | mlp | 1000 | 0.800 | 1.500 |",
        "| phonons (cm^-1) | mlp | 1000 | 0.900 | – |",
    ]
    assert report.controls_markdown(table, {"never-ran": "dim"}, {}) == ""


def test_sweep_scores_a_wider_variant_against_its_own_initialisation(tmp_path):
    """The sweep's summaries: kept / untrained control, kept / own initialisation for a shape-changing variant,
    and for full runs kept / a reference run's kept."""
    from dim_featurizer.bench.sweep import full_run_scores, scores

    targets, models, budgets, readouts = ("e_form", "gap"), ("ridge", "mlp"), (100, 1000), ("global_mu", "pooled")
    cells = [(t, m, b, r) for t in targets for m in models for b in budgets for r in readouts]

    def write(name: str, maes: dict[str, float]) -> None:
        rows = [(e, t, m, b, r, mae) for e, mae in maes.items() for t, m, b, r in cells]
        (tmp_path / name).mkdir()
        pd.DataFrame(rows, columns=["encoder", "target", "model", "budget", "readout", "mae"]).to_csv(
            tmp_path / name / "devprobe.csv", index=False
        )

    write("v0-baseline", {"kept": 1.1, "start": 1.0, "untrained": 1.0})
    write("v17-v5-hidden128", {"kept": 0.8, "start": 0.9})
    lines = {line.split(" | ")[0][2:]: line for line in scores(tmp_path).splitlines()[2:]}
    assert lines["v0-baseline"] == "| v0-baseline | 1.100 (0) | 1.100 (0) | – |"
    assert lines["v17-v5-hidden128"] == "| v17-v5-hidden128 | 0.800 (8) | 0.800 (8) | 0.889 (8) / 0.889 (8) |"
    full = full_run_scores([tmp_path / "v17-v5-hidden128"], tmp_path / "v0-baseline", tmp_path / "v0-baseline")
    ratios = "0.800 (8) / 0.800 (8) | 0.889 (8) / 0.889 (8) | 0.727 (8) / 0.727 (8)"
    assert full.splitlines()[-1] == f"| v17-v5-hidden128 | 0.8000 / 0.8000 | {ratios} |"
