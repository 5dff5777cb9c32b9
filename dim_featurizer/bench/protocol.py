"""The fitting protocol: seeded labelled subsets, two model families, MAE on the whole test set."""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

#: Every model kind ``make_model`` knows; ``ridge`` is RidgeCV over a fixed grid of penalties.
MODELS = ("linear", "ridge", "mlp")


def make_model(kind: str, seed: int, scale: bool = True):
    """Mean-impute (a failed featurisation is NaN) → standardise every feature → regressor.

    The same scaling for every representation: each feature to zero mean and
    unit variance over the labelled subset (constant features stay 0).
    ``scale=False`` leaves out the scaler, for features already standardised
    over an unlabelled pool.
    """
    if kind == "linear":
        regressor = LinearRegression()  # least squares (minimum norm when under-determined)
    elif kind == "ridge":
        regressor = RidgeCV(alphas=np.logspace(-3, 4, 15))
    elif kind == "mlp":
        regressor = MLPRegressor(hidden_layer_sizes=(64,), activation="relu", max_iter=1000, random_state=seed)
    else:
        raise ValueError(f"unknown model {kind!r}")
    steps = [SimpleImputer(strategy="mean", keep_empty_features=True)] + ([StandardScaler()] if scale else [])
    return make_pipeline(*steps, regressor)


def standardise(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``x`` with each column centred and scaled by the NaN-aware mean and std of ``reference`` (constant: std 1)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN columns (a representation that failed everywhere)
        mean, std = np.nanmean(reference, axis=0), np.nanstd(reference, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return (x - mean) / std


def fit_one(x_train, y_train, x_test, y_test, kind: str, seed: int, scale: bool = True) -> float:
    """Fit on the subset and return the test MAE."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP convergence warnings at the iteration cap
        model = make_model(kind, seed, scale).fit(x_train, y_train)
    return float(np.mean(np.abs(model.predict(x_test) - y_test)))


def run_fits(
    task_name: str,
    features: dict[str, pd.DataFrame],
    pool: pd.DataFrame,
    test: pd.DataFrame,
    target: str,
    subsets: dict[tuple[int, int], np.ndarray],
    models: tuple[str, ...] = MODELS,
    n_jobs: int = 1,
    pbar: bool = True,
) -> pd.DataFrame:
    """Every (representation, model, budget, draw) fit; one row each with the test MAE.

    The same subsets (pool positions) are used for every representation, so the comparisons are paired.
    Each feature is standardised over every crystal of ``pool`` (the task's whole unlabelled pool, its
    labels unread), so a feature that is non-zero in two labelled crystals is not blown up.
    """
    y_pool, y_test = pool[target].to_numpy(float), test[target].to_numpy(float)
    jobs, keys = [], []
    for rep, frame in features.items():
        x_pool, x_test = frame.loc[pool.index].to_numpy(), frame.loc[test.index].to_numpy()
        x_pool, x_test = standardise(x_pool, x_pool), standardise(x_test, x_pool)
        for (budget, draw), rows in subsets.items():
            for kind in models:
                keys.append((task_name, rep, kind, budget, draw))
                jobs.append(delayed(fit_one)(x_pool[rows], y_pool[rows], x_test, y_test, kind, draw, False))
    results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
    maes = list(tqdm(results, total=len(jobs), desc=f"fits {task_name}", disable=not pbar))
    frame = pd.DataFrame(keys, columns=["task", "representation", "model", "budget", "draw"])
    frame["mae"] = maes
    frame["n_test"] = len(test)
    return frame
