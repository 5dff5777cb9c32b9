"""Tutorial 3: fine-tune the pretrained encoder on a few labels, as a scikit-learn regressor.

Run it: ``python tutorials/03_fine_tune.py [--labels 100] [--max-epochs 300]``.
``DIMRegressor`` puts a small head (Linear → Mish → Linear) on the Site-Net
encoder and trains both on your labels, starting from the Deep InfoMax
weights (``init="pretrained"``) or from random ones (``init="random"``, the
control). It uses formation energy (eV/atom) of mp2018 crystals: the full
data folder (``$DIM_DATA_DIR``, default ``../shared/data``) when it is there,
else the 300-crystal sample shipped with the package. Labels come from the
split's training list, scores from its test list.
"""

# %% Imports
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import mean_absolute_error

from dim_featurizer import DIMRegressor
from dim_featurizer.bench.tasks import load_task
from dim_featurizer.examples import sample_data_dir
from dim_featurizer.readers import default_data_dir

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=100, help="labelled training crystals")
    parser.add_argument("--test-limit", type=int, default=500, help="test crystals scored")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=20)
    args = parser.parse_args()
    data_dir = default_data_dir()
    if not (data_dir / "mp2018_e_form_gap.json.gz").is_file():
        data_dir = sample_data_dir()
    print(f"data: {data_dir}")

    # %% 1. A seeded draw of labelled crystals from the training split, and test crystals to score on
    task = load_task("e_form", data_dir, test_limit=args.test_limit)
    rng = np.random.default_rng(0)
    labelled = task.pool.iloc[rng.choice(len(task.pool), size=min(args.labels, len(task.pool)), replace=False)]
    X, y = labelled["structure"], labelled["e_form"]
    print(f"{len(X)} labelled crystals, {len(task.test)} test crystals")

    # %% 2. Fine-tune from the pretrained weights and from random ones (same draw, seed and budget).
    # 20% of the labelled crystals are held out inside fit() to stop early; nothing else is seen.
    models = {}
    for init in ("pretrained", "random"):
        started = time.perf_counter()
        model = DIMRegressor(init=init, seed=0, max_epochs=args.max_epochs, patience=args.patience)
        models[init] = model.fit(X, y)
        mae = mean_absolute_error(task.test["e_form"], model.predict(task.test["structure"]))
        print(
            f"init={init}: test MAE {mae:.3f} eV/atom; best epoch {model.best_epoch_} of {len(model.history_)}; "
            f"{time.perf_counter() - started:.0f} s"
        )

    # %% How to read the comparison above: it is one draw of labelled crystals and one seed.
    # Which start wins moves from draw to draw. In the paired benchmark (results/finetune, 10 draws at
    # 100 labels on mp2018 formation energy) the pretrained start had the lower MAE in 7 of 10 draws,
    # with medians 0.422 against 0.457 eV/atom; at 50 labels in 3 of 10. A single run in which the
    # random start wins is within that spread, not evidence against pretraining; compare many draws
    # (dim-bench finetune) before concluding.
    gap = mean_absolute_error(task.test["e_form"], models["random"].predict(task.test["structure"])) - (
        mean_absolute_error(task.test["e_form"], models["pretrained"].predict(task.test["structure"]))
    )
    verdict = "pretrained start ahead" if gap > 0 else "random start ahead"
    print(f"this draw: {verdict} by {abs(gap):.3f} eV/atom; one draw of many, see results/finetune for the spread")

    # %% 3. A fitted model saves as safetensors + JSON (no pickle) and loads back
    folder = models["pretrained"].save(Path(tempfile.mkdtemp()) / "e_form_regressor")
    again = DIMRegressor.load(folder)
    same = np.allclose(again.predict(X[:5]), models["pretrained"].predict(X[:5]))
    print(f"saved to {folder}; reloaded predictions identical: {same}")
