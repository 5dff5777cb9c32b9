"""Tutorial 1: DIM vectors in matminer and scikit-learn.

Run it: ``python tutorials/01_featurize.py [--n 200]``. It reads the Matbench
phonons set from ``$DIM_DATA_DIR`` (default ``../shared/data``); a user with
internet can swap in ``matminer.datasets.load_dataset("matbench_phonons")``.
"""

# %% Imports
import argparse
import os
from pathlib import Path

import numpy as np
from matminer.utils.io import load_dataframe_from_json
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dim_featurizer import DeepInfoMaxFeaturizer, example_structures

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=400, help="crystals to use")
args = parser.parse_args()

# %% 1. One structure, one vector (the default weights are the package's own)
featurizer = DeepInfoMaxFeaturizer()
si = example_structures()["Si"]
vector = featurizer.featurize(si)
print(f"Si -> {len(vector)} features from weights {featurizer.weights_info_.name!r}: {np.round(vector[:4], 3)} ...")

# %% 2. A DataFrame column, the matminer way
data_dir = Path(os.environ.get("DIM_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
df = load_dataframe_from_json(str(data_dir / "matbench_phonons.json.gz"), pbar=False).iloc[: args.n]
df = featurizer.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
labels = featurizer.feature_labels()
print(f"featurised {len(df)} crystals; rows that failed: {int(df[labels[0]].isna().sum())}")

# %% 3. Inside a scikit-learn Pipeline: structures in, predictions out
pipeline = make_pipeline(DeepInfoMaxFeaturizer(pbar=False), StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 11)))
scores = cross_val_score(pipeline, df[["structure"]], df["last phdos peak"], cv=3, scoring="neg_mean_absolute_error")
print(
    f"3-fold MAE of the last phonon-DOS peak: {-scores.mean():.1f} cm^-1 (predicting the mean: "
    f"{np.abs(df['last phdos peak'] - df['last phdos peak'].mean()).mean():.1f} cm^-1)"
)
