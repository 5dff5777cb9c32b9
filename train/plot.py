"""Loss curves in the style of the paper's Fig. 6: train and validation, per objective."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_curves(log_csv: str | Path | pd.DataFrame, out_png: str | Path, title: str = "") -> Path:
    """Draw local/global JS and KL, train vs validation, by epoch, from a training ``log.csv`` (or its rows)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("loss curves need matplotlib: pip install 'dim_featurizer[train]'") from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = log_csv if isinstance(log_csv, pd.DataFrame) else pd.read_csv(log_csv)
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    panels = [
        ("local_js", "local DIM (JS)"),
        ("global_js", "global DIM (JS)"),
        ("local_kl", "local KL"),
        ("global_kl", "global KL"),
    ]
    for ax, (key, label) in zip(axes.flat, panels):
        ax.plot(log["epoch"], log[f"train_{key}"], "o-", ms=3, label="train")
        ax.plot(log["epoch"], log[f"val_{key}"], "s--", ms=3, label="validation")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend()
    fig.suptitle(title or "Deep InfoMax pretraining")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
