"""Tutorial 1: DIM vectors in matminer and scikit-learn.

Run it: ``python tutorials/01_featurize.py [--n 200]``. It reads Matbench
phonons from the full data folder (``$DIM_DATA_DIR``, default
``../shared/data``) when it is there, else from the 300-crystal sample
shipped with the package. A user with internet can swap in
``matminer.datasets.load_dataset("matbench_phonons")``.
"""

# %% Imports
import argparse

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dim_featurizer import DeepInfoMaxFeaturizer, example_structures
from dim_featurizer.examples import sample_data_dir
from dim_featurizer.readers import default_data_dir, read_frame

if __name__ == "__main__":  # needed whenever n_jobs > 1: encoding workers re-import this file
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300, help="crystals to use")
    args = parser.parse_args()

    # %% 1. One structure, one vector (the default weights are the package's own)
    featurizer = DeepInfoMaxFeaturizer()
    vector = featurizer.featurize(example_structures()["Si"])
    name = featurizer.weights_info_.name
    print(f"Si -> {len(vector)} features from weights {name!r}: {np.round(vector[:4], 3)} ...")

    # %% 2. A DataFrame column, the matminer way
    path = default_data_dir() / "matbench_phonons.json.gz"
    if not path.is_file():
        path = sample_data_dir() / "matbench_phonons.json.gz"
    print(f"reading {path}")
    df = read_frame(path).iloc[: args.n]
    df = featurizer.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    labels = featurizer.feature_labels()
    print(f"featurised {len(df)} crystals; rows that failed: {int(df[labels[0]].isna().sum())}")

    # %% 3. Inside a scikit-learn Pipeline: structures in, predictions out
    ridge = RidgeCV(alphas=np.logspace(-2, 3, 11))
    pipeline = make_pipeline(DeepInfoMaxFeaturizer(pbar=False), StandardScaler(), ridge)
    y = df["last phdos peak"]
    scores = cross_val_score(pipeline, df[["structure"]], y, cv=3, scoring="neg_mean_absolute_error")
    print(
        f"3-fold MAE of the last phonon-DOS peak: {-scores.mean():.1f} cm^-1 "
        f"(predicting the mean: {np.abs(y - y.mean()).mean():.1f} cm^-1)"
    )
