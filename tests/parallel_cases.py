"""One parallel workflow a user may put DIM in, run as its own process: ``python parallel_cases.py CASE``.

Every case first featurises in this process (so torch's thread pool is live, as in a real session), then
runs the workflow and prints one JSON line: the largest absolute difference from the serial vectors (or
scores). A case that hangs is caught by the caller's timeout (tests/test_parallel.py).
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
import sys

import numpy as np

N_CRYSTALS = 24


def featurizer():
    from dim_featurizer import DeepInfoMaxFeaturizer

    return DeepInfoMaxFeaturizer(pbar=False)


def frame():
    from dim_featurizer.examples import load_sample

    return load_sample("phonons").iloc[:N_CRYSTALS]


def multiple(iterate_over_entries: bool, n_jobs: int | None, serial: np.ndarray, data) -> float:
    """DIM beside DensityFeatures in a MultipleFeaturizer (matminer's default n_jobs when None)."""
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.structure import DensityFeatures

    both = MultipleFeaturizer([featurizer(), DensityFeatures()], iterate_over_entries=iterate_over_entries)
    if n_jobs is not None:
        both.set_n_jobs(n_jobs)
    out = both.featurize_dataframe(data[["structure"]], "structure", pbar=False)
    density = DensityFeatures()
    density.set_n_jobs(1)
    expected = np.hstack([serial, np.asarray(density.featurize_many(data["structure"], pbar=False), dtype=float)])
    return float(np.abs(out.drop(columns="structure").to_numpy(float) - expected).max())


def pool_map(method: str, dim, structures: list) -> np.ndarray:
    with multiprocessing.get_context(method).Pool(2) as pool:
        return np.asarray(pool.map(dim.featurize, structures))


def cv_scores(n_jobs: int, data, grid: bool) -> np.ndarray:
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(featurizer(), StandardScaler(), Ridge())
    x, y = data[["structure"]], data["last phdos peak"]
    if grid:
        search = GridSearchCV(model, {"ridge__alpha": [0.1, 10.0]}, cv=3, n_jobs=n_jobs).fit(x, y)
        return np.asarray(search.cv_results_["mean_test_score"])
    return cross_val_score(model, x, y, cv=3, n_jobs=n_jobs)


def run(case: str) -> float:
    data = frame()
    structures = list(data["structure"])
    dim = featurizer()
    serial = np.asarray(dim.featurize_many(structures, pbar=False))  # torch has now run in this process
    if case.startswith("multiple-"):
        _, iterate, jobs = case.split("-")
        return multiple(iterate == "entries", None if jobs == "default" else int(jobs), serial, data)
    if case == "other-featurizer-after-dim":
        from matminer.featurizers.structure import DensityFeatures

        out = DensityFeatures().featurize_dataframe(data[["structure"]], "structure", pbar=False)  # default n_jobs
        serial_density = DensityFeatures()
        serial_density.set_n_jobs(1)
        expected = np.asarray(serial_density.featurize_many(structures, pbar=False), dtype=float)
        density_gap = np.abs(out.drop(columns="structure").to_numpy(float) - expected).max()
        return float(max(density_gap, np.abs(np.asarray(dim.featurize_many(structures, pbar=False)) - serial).max()))
    if case in ("fork", "forkserver", "spawn"):
        return float(np.abs(pool_map(case, dim, structures) - serial).max())
    if case in ("loky", "multiprocessing"):
        from joblib import Parallel, delayed

        rows = Parallel(n_jobs=2, backend=case)(delayed(dim.featurize)(s) for s in structures)
        return float(np.abs(np.asarray(rows) - serial).max())
    if case in ("cross-val-score", "grid-search"):
        grid = case == "grid-search"
        return float(np.abs(cv_scores(2, data, grid) - cv_scores(1, data, grid)).max())
    if case == "pickled":
        copy = pickle.loads(pickle.dumps(dim))
        return float(np.abs(np.asarray(copy.featurize_many(structures, pbar=False)) - serial).max())
    if case == "fit-featurize-dataframe":
        out = featurizer().fit_featurize_dataframe(data[["structure"]], "structure", pbar=False)
        return float(np.abs(out.drop(columns="structure").to_numpy(float) - serial).max())
    raise SystemExit(f"unknown case {case!r}")


CASES = [
    "multiple-entries-default",
    "multiple-entries-1",
    "multiple-featurizers-default",
    "multiple-featurizers-1",
    "other-featurizer-after-dim",
    "fork",
    "forkserver",
    "spawn",
    "loky",
    "multiprocessing",
    "cross-val-score",
    "grid-search",
    "pickled",
    "fit-featurize-dataframe",
]

if __name__ == "__main__":
    print(json.dumps({"case": sys.argv[1], "max_abs_diff": run(sys.argv[1])}))
