"""DIMRegressor: fine-tuning on a few labels, the scikit-learn contract, persistence and bad input."""

from __future__ import annotations

import json
import pickle
import pickletools
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Molecule, Structure
from sklearn.base import clone

from dim_featurizer import DIMRegressor
from dim_featurizer.errors import FeaturizationError

# Checks that hand the estimator numeric arrays as X: a DIMRegressor takes pymatgen Structures, so
# they cannot apply. The fit contracts they stand for are tested below with structures instead.
NUMERIC_X_CHECKS = {
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_complex_data",
    "check_dtype_object",
    "check_estimators_empty_data_messages",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_regressors_train",
    "check_regressor_data_not_an_array",
    "check_regressors_no_decision_function",
    "check_supervised_y_2d",
    "check_regressors_int",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
    "check_requires_y_none",
}
API_CHECKS = {
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_estimators_unfitted",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
}
TINY = {"max_epochs": 4, "patience": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def labelled():
    from dim_featurizer.examples import load_sample

    frame = load_sample("mp2018").iloc[:24]
    return frame["structure"], frame["e_form"]


@pytest.fixture(scope="module")
def fitted(labelled):
    X, y = labelled
    return DIMRegressor(seed=3, **TINY).fit(X, y)


def test_fit_predict_learns_and_is_reproducible(labelled, fitted):
    X, y = labelled
    predictions = fitted.predict(X)
    assert predictions.shape == (len(X),) and np.isfinite(predictions).all()
    history = pd.DataFrame(fitted.history_)
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert 1 <= fitted.best_epoch_ <= len(history) and fitted.n_train_ + fitted.n_validation_ == len(X)
    encoded = fitted.runner_.encode(list(X))[0]  # the benchmark's path: test set encoded once
    np.testing.assert_allclose(fitted.predict_encoded(encoded), predictions, rtol=1e-5)
    again = clone(fitted).fit(list(X), y.to_numpy())  # a list and an array work like a Series
    np.testing.assert_array_equal(again.predict(X), predictions)
    other_seed = DIMRegressor(seed=4, **TINY).fit(X, y)
    assert not np.allclose(other_seed.predict(X), predictions)


def test_fine_tuning_changes_the_encoder_and_random_init_differs(labelled, fitted):
    from dim_featurizer.weights import load_weights

    X, y = labelled
    start, _ = load_weights(None)
    tuned = fitted.net_.encoder.state_dict()
    assert any(not torch.equal(v, tuned[k]) for k, v in start.state_dict().items())
    random = DIMRegressor(init="random", seed=3, **TINY).fit(X, y)
    # Same architecture and standardisation; only the starting weights differ.
    assert random.net_.encoder.config == fitted.net_.encoder.config
    assert not np.allclose(random.predict(X), fitted.predict(X))


def test_readout_and_width_follow_the_featurizer(labelled):
    X, y = labelled
    model = DIMRegressor(readout="global_mu", seed=0, max_epochs=1, device="cpu").fit(X, y)
    assert model.net_.head[0].in_features == model.net_.encoder.config.global_dim
    assert model.net_.encoder.config.readout == "global_mu"


def test_pickle_holds_no_tensor_and_save_load_round_trip(labelled, fitted, tmp_path):
    X, _ = labelled
    expected = fitted.predict(X)
    blob = pickle.dumps(fitted)
    modules = {arg.split()[0] for op, arg, _ in pickletools.genops(blob) if op.name == "GLOBAL"}
    modules |= {arg for op, arg, _ in pickletools.genops(blob) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")}
    assert not any(str(m).startswith("torch") for m in modules), "a torch object was pickled"
    np.testing.assert_array_equal(pickle.loads(blob).predict(X), expected)
    folder = fitted.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "regressor.json"]
    loaded = DIMRegressor.load(folder)
    np.testing.assert_array_equal(loaded.predict(X), expected)
    assert loaded.get_params() == fitted.get_params() and loaded.best_epoch_ == fitted.best_epoch_
    unfitted = pickle.loads(pickle.dumps(DIMRegressor()))
    assert not hasattr(unfitted, "net_")


def _molecule() -> Molecule:
    coords = [[0, 0, 0], [0.6, 0.6, 0.6], [-0.6, -0.6, 0.6], [0.6, -0.6, -0.6], [-0.6, 0.6, -0.6]]
    return Molecule(["C", "H", "H", "H", "H"], coords)


def _disordered() -> Structure:
    return Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_fit_refuses_a_bad_structure_by_position_and_id(labelled):
    X, y = labelled
    bad = X.copy()
    bad.iloc[5] = _disordered()
    with pytest.raises(FeaturizationError, match=rf"entry 5 \(id '{bad.index[5]}'"):
        DIMRegressor(**TINY).fit(bad, y)
    items = list(X)
    items[2] = _molecule()
    with pytest.raises(FeaturizationError, match="entry 2 .*Molecule"):
        DIMRegressor(**TINY).fit(items, y)


def test_fit_refuses_bad_targets_and_options(labelled):
    X, y = labelled
    with pytest.raises(ValueError, match="24 structures but y has 23"):
        DIMRegressor(**TINY).fit(X, y.iloc[:-1])
    broken = y.copy()
    broken.iloc[7] = np.nan
    with pytest.raises(ValueError, match=rf"y entry 7 \(id '{X.index[7]}'\) is nan"):
        DIMRegressor(**TINY).fit(X, broken)
    with pytest.raises(ValueError, match="init must be one of"):
        DIMRegressor(init="scratch").fit(X, y)
    with pytest.raises(ValueError, match="at least 2"):
        DIMRegressor(**TINY).fit(X.iloc[:1], y.iloc[:1])


def test_predict_names_bad_input_or_gives_nan_when_asked(labelled, fitted):
    X, _ = labelled
    mixed = list(X.iloc[:4]) + [_molecule()] + list(X.iloc[4:6])
    with pytest.raises(FeaturizationError, match="entry 4 "):
        fitted.predict(mixed)
    lenient = pickle.loads(pickle.dumps(fitted)).set_params(ignore_errors=True)
    predictions = lenient.predict(mixed)
    assert np.isnan(predictions[4]) and np.isfinite(np.delete(predictions, 4)).all()
    np.testing.assert_allclose(np.delete(predictions, 4), fitted.predict(X.iloc[:6]))


def test_scikit_learn_checks_that_apply():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(DIMRegressor(max_epochs=1, device="cpu"), on_fail=None)
    status = {}
    for result in results:
        status.setdefault(result["check_name"], set()).add(result["status"])
    passed = {name for name, s in status.items() if s == {"passed"}}
    failed = {name for name, s in status.items() if "failed" in s}
    assert API_CHECKS <= passed, API_CHECKS - passed
    assert failed <= NUMERIC_X_CHECKS, f"a check that does not need numeric X failed: {failed - NUMERIC_X_CHECKS}"


def test_paired_statistics():
    from dim_featurizer.bench.finetune import paired_statistics

    rows = [("a", d, "pretrained", 1.0 + d) for d in range(6)] + [("a", d, "random", 2.0 + d) for d in range(6)]
    rows += [("b", d, "pretrained", 3.0) for d in range(4)] + [("b", d, "random", 2.0 if d else 4.0) for d in range(4)]
    fits = pd.DataFrame(rows, columns=["task", "draw", "representation", "mae"]).assign(budget=50)
    table = paired_statistics(fits).set_index("task")
    assert table.loc["a", "pretrained_wins"] == 6 and table.loc["a", "sign_test_p"] == pytest.approx(2 / 64)
    expected = np.median([(1 + d) / (2 + d) - 1 for d in range(6)])
    assert table.loc["a", "median_relative_change"] == pytest.approx(expected)
    assert table.loc["b", "pretrained_wins"] == 1 and table.loc["all", "pairs"] == 10
    assert table.loc["all", "pretrained_wins"] == 7 and np.isnan(table.loc["all", "wilcoxon_p"])


def test_finetune_benchmark_pairs_inits_stores_each_fit_and_resumes(tmp_path, sample_dir):
    from dim_featurizer.bench.finetune import earlier_finetune_fits, run_finetune
    from dim_featurizer.bench.finetune import main as finetune_main

    lines: list[str] = []
    options = dict(tasks=["phonons"], budgets=[12], draws=2, test_limit=15, data_dir=sample_dir, device="cpu")
    options.update(cache_dir=tmp_path / "cache", max_epochs=2, patience=1)
    result = run_finetune(out=tmp_path / "out", log=lines.append, **options)
    fits = result.fits
    assert sorted(fits["representation"]) == ["pretrained", "pretrained", "random", "random"]
    assert (fits["n_test"] == 15).all() and np.isfinite(fits["mae"]).all() and (fits["fit_seconds"] > 0).all()
    assert not np.allclose(*[fits.loc[fits["representation"] == i, "mae"] for i in ("pretrained", "random")])
    for name in ("fits.csv", "summary.csv", "win_rates.csv", "tables.md", "box_phonons.png", "run.json", "timing.csv"):
        assert (tmp_path / "out" / name).is_file(), name
    paired = pd.read_csv(tmp_path / "out" / "paired.csv")
    assert list(paired["task"]) == ["phonons", "all"] and list(paired["pairs"]) == [2, 2]
    comparison = (tmp_path / "out" / "comparison.md").read_text().splitlines()
    assert len(comparison) == 3 and comparison[2].startswith("| phonons | 12 | 2 |") and comparison[2].endswith("| – |")
    assert sum("MAE" in line for line in lines) == 4
    # One stored part per fit: drop one, and only that fit is redone.
    parts = sorted((tmp_path / "cache" / "finetune").glob("*.csv"))
    assert len(parts) == 4
    parts[0].unlink()
    stored = run_finetune(out=None, log=None, report_only=True, **options)
    assert len(stored.fits) == 3 and len(stored.missing) == 1
    lines.clear()
    again = run_finetune(out=None, log=lines.append, **options)
    assert sum("MAE" in line for line in lines) == 1
    pd.testing.assert_frame_equal(
        again.fits.drop(columns=["fit_seconds", "predict_seconds"]).sort_values(["representation", "draw"]),
        fits.drop(columns=["fit_seconds", "predict_seconds"]).sort_values(["representation", "draw"]),
        check_like=True,
        check_exact=False,
    )
    # A machine without the fit store resumes from the results folder, only under the same settings.
    shutil.rmtree(tmp_path / "cache")
    lines.clear()
    restored = run_finetune(out=tmp_path / "out", log=lines.append, **options)
    assert not any("MAE" in line for line in lines) and len(restored.fits) == 4
    identity = json.loads((tmp_path / "out" / "run.json").read_text())["settings"]
    identity = {k: identity[k] for k in ("weights", "seed", "test_limit", "max_epochs", "patience")}
    assert len(earlier_finetune_fits(tmp_path / "out", identity)) == 4
    assert earlier_finetune_fits(tmp_path / "out", {**identity, "patience": 2}) == {}
    argv = [
        "--tasks",
        "phonons",
        "--budgets",
        "12",
        "--draws",
        "1",
        "--test-limit",
        "15",
        "--data-dir",
        str(sample_dir),
    ]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "cli"), "--max-epochs", "2"]
    assert finetune_main(argv + ["--patience", "1", "--device", "cpu"]) == 0
    assert (tmp_path / "cli" / "tables.md").read_text().count("pretrained") >= 1


def test_verbose_prints_each_epoch_with_the_time_left(labelled, capsys):
    X, y = labelled
    DIMRegressor(seed=0, max_epochs=3, patience=2, device="cpu", verbose=1).fit(X.iloc[:20], y.iloc[:20])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) >= 2 and all("s left unless it improves" in line for line in lines)
    assert lines[-1].split("at most ")[1].startswith("0 s")  # the last epoch leaves none
