"""Summaries, paired win rates, Fig. 8-style box plots and a Fig. 9-style t-SNE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dim_featurizer.files import write_csv, write_text

KEYS = ["task", "model", "budget", "representation"]


def summary(fits: pd.DataFrame) -> pd.DataFrame:
    """Median and interquartile range of test MAE per task, model, budget and representation."""
    grouped = fits.groupby(KEYS)["mae"]
    out = pd.DataFrame({"median": grouped.median(), "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75)})
    out["iqr"] = out["q75"] - out["q25"]
    out["fits"] = grouped.size()
    return out.reset_index()


def win_rates(fits: pd.DataFrame, reference: str = "dim") -> pd.DataFrame:
    """Share of paired draws (same task, model, budget, draw) where ``reference`` has the lower MAE."""
    wide = fits.pivot_table(index=["task", "model", "budget", "draw"], columns="representation", values="mae")
    rows = []
    for baseline in [c for c in wide.columns if c != reference]:
        pair = wide[[reference, baseline]].dropna()
        wins = (pair[reference] < pair[baseline]).groupby(level=["task", "model", "budget"]).mean()
        for (task, model, budget), rate in wins.items():
            rows.append({"task": task, "model": model, "budget": budget, "baseline": baseline, "win_rate": rate})
    return pd.DataFrame(rows)


def _pipe_table(frame: pd.DataFrame) -> str:
    """A Markdown pipe table of ``frame``, its index levels as the first columns."""
    header = [str(n) for n in frame.index.names] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for key, row in frame.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join([*map(str, key), *map(str, row)]) + " |")
    return "\n".join(lines)


def _num(value: float) -> str:
    """Three significant figures, without scientific notation up to 10⁶."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def results_markdown(fits: pd.DataFrame, units: dict[str, str], reference: str = "dim") -> str:
    """Markdown tables per task: median (interquartile range) test MAE, and the reference's paired win rates.

    Rows are (model, budget), columns representations; the lowest median of
    each row is in bold.
    """
    table = summary(fits)
    wins = win_rates(fits, reference) if reference in set(fits["representation"]) else pd.DataFrame()
    parts = []
    for task, frame in table.groupby("task"):
        best = frame.groupby(["model", "budget"])["median"].transform("min")
        cells = [
            ("**{}**" if m == b else "{}").format(f"{_num(m)} ({_num(lo)}–{_num(hi)})")
            for m, b, lo, hi in zip(frame["median"], best, frame["q25"], frame["q75"])
        ]
        wide = frame.assign(cell=cells).pivot(index=["model", "budget"], columns="representation", values="cell")
        parts.append(
            f"### {task}: test MAE ({units.get(task, '')}), median (interquartile range)\n\n{_pipe_table(wide)}\n"
        )
        mine = wins[wins["task"] == task] if len(wins) else wins
        if len(mine):
            rates = mine.pivot(index=["model", "budget"], columns="baseline", values="win_rate")
            parts.append(
                f"Share of paired draws where `{reference}` has the lower MAE ({task}):\n\n"
                f"{_pipe_table(rates.map(lambda v: f'{v:.2f}'))}\n"
            )
    return "\n".join(parts)


def box_plots(fits: pd.DataFrame, out_dir: str | Path, units: dict[str, str]) -> list[Path]:
    """One figure per task: test MAE by budget, one box per representation, a panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for task, frame in fits.groupby("task"):
        reps = sorted(frame["representation"].unique())
        models = sorted(frame["model"].unique())
        fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
        budgets = sorted(frame["budget"].unique())
        width = 0.8 / len(reps)
        for ax, model in zip(axes[0], models):
            for k, rep in enumerate(reps):
                chosen = frame[(frame["model"] == model) & (frame["representation"] == rep)]
                data = [chosen.loc[chosen["budget"] == b, "mae"] for b in budgets]
                positions = np.arange(len(budgets)) + (k - (len(reps) - 1) / 2) * width
                box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=False)
                for patch in box["boxes"]:
                    patch.set_facecolor(plt.cm.tab10(k))
                ax.plot([], [], "s", color=plt.cm.tab10(k), label=rep)
            ax.set_xticks(np.arange(len(budgets)), [str(b) for b in budgets])
            ax.set_xlabel("labelled training crystals")
            ax.set_ylabel(f"test MAE ({units.get(task, '')})")
            ax.set_yscale("log")  # outlier draws (least squares at n ≈ features) span decades
            ax.set_title(f"{task}, {model}")
            ax.grid(alpha=0.3, axis="y")
        axes[0, 0].legend(fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / f"box_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def metal_halide(structures: pd.Series) -> np.ndarray:
    """True where a structure contains a metal and a halogen (the colouring of the paper's Fig. 9)."""
    return np.array(
        [
            any(e.is_metal for e in s.composition.elements) and any(e.is_halogen for e in s.composition.elements)
            for s in structures
        ]
    )


def tsne_plot(vectors: dict[str, np.ndarray], labels: np.ndarray, out_png: str | Path, seed: int = 0) -> Path:
    """t-SNE of test-set vectors per representation, side by side, coloured by metal + halogen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    fig, axes = plt.subplots(1, len(vectors), figsize=(5.5 * len(vectors), 5), squeeze=False)
    for ax, (name, x) in zip(axes[0], vectors.items()):
        ok = np.isfinite(x).all(axis=1)
        xy = TSNE(random_state=seed, init="pca", perplexity=min(30, max(5, ok.sum() // 4))).fit_transform(
            StandardScaler().fit_transform(x[ok])
        )
        ax.scatter(*xy[~labels[ok]].T, s=2, c="lightgray", label="other")
        ax.scatter(*xy[labels[ok]].T, s=3, c="crimson", label="metal + halogen")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(markerscale=4)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return Path(out_png)


def controls_markdown(
    table: pd.DataFrame, controls: dict[str, str], units: dict[str, str], budgets: tuple[int, ...] = (100, 1000)
) -> str:
    """A Markdown table of each pretrained column's median test MAE divided by its untrained control's.

    Args:
        table: :func:`summary` output.
        controls: pretrained column -> its control column (``representations.control_columns``); pairs of
            which either did not run are left out.
        units: each task's label unit.
        budgets: the labelled-set sizes shown.

    Returns:
        One row per (task, model, budget), one ``column / control`` ratio per pair (below 1: pretraining
        helps; "–" where the pair did not run on that task); empty when no pair ran.
    """
    wide = table[table["budget"].isin(budgets)].pivot_table(
        index=["task", "model", "budget"], columns="representation", values="median"
    )
    pairs = [(c, k) for c, k in controls.items() if c in wide.columns and k in wide.columns]
    if not pairs:
        return ""
    header = ["task", "model", "labels", *(f"{c} / {k}" for c, k in pairs)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (task, model, budget), row in wide.iterrows():
        cells = [f"{row[c] / row[k]:.3f}" if np.isfinite(row[c] / row[k]) else "–" for c, k in pairs]
        lines.append(f"| {task} ({units.get(task, '')}) | {model} | {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    fits: pd.DataFrame,
    out: str | Path,
    units: dict[str, str],
    reference: str = "dim",
    controls: dict[str, str] | None = None,
) -> None:
    """Write ``fits.csv``, ``summary.csv``, ``win_rates.csv`` (when ``reference`` has peers), ``tables.md``,
    ``headline.md`` (the README's summary, when the :data:`HEADLINE` columns ran), ``controls.md`` (each
    pretrained column against its untrained control, :func:`controls_markdown`, when ``controls`` are given
    and a pair ran) and one ``box_<task>.png`` per task into ``out``.

    Each file is written under a name of this process's own and renamed, so
    two runs writing the same folder never leave a mixed file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = {"fits.csv": fits, "summary.csv": summary(fits)}
    if reference in set(fits["representation"]) and fits["representation"].nunique() > 1:
        tables["win_rates.csv"] = win_rates(fits, reference)
    for name, frame in tables.items():
        write_csv(out / name, frame)
    write_text(out / "tables.md", results_markdown(fits, units, reference))
    if set(HEADLINE) <= set(fits["representation"]):
        write_text(out / "headline.md", headline_markdown(tables["summary.csv"], units) + "\n")
    if text := controls_markdown(tables["summary.csv"], controls or {}, units):
        write_text(out / "controls.md", text + "\n")
    box_plots(fits, out, units)


#: The columns of the README's summary table.
HEADLINE = ("dim", "dim-untrained", "magpie")
#: Columns added to it when they ran.
OPTIONAL = ("dim+magpie", "dim-untrained+magpie", "chgnet")


def headline_markdown(
    table: pd.DataFrame,
    units: dict[str, str],
    reps: tuple[str, ...] | None = None,
    budgets: tuple[int, ...] = (100, 1000),
) -> str:
    """A short Markdown table of median test MAE for a few representations and budgets (the README's summary).

    Args:
        table: :func:`summary` output.
        units: each task's label unit.
        reps: the columns, in order (None: :data:`HEADLINE`, then each of :data:`OPTIONAL` that ran); the
            lowest median of each row is in bold, a column not run for a task shows "–". The first two (the
            default and its untrained control) also give a ratio column.
        budgets: the labelled-set sizes shown.
    """
    if reps is None:
        reps = HEADLINE + tuple(r for r in OPTIONAL if r in set(table["representation"]))
    chosen = table[table["representation"].isin(reps) & table["budget"].isin(budgets)]
    wide = chosen.pivot_table(index=["task", "model", "budget"], columns="representation", values="median")
    wide = wide.reindex(columns=list(reps))
    ratio = f"{reps[0]} / {reps[1]}"
    header = ["task", "model", "labels", *reps, ratio]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (task, model, budget), row in wide.iterrows():
        best = row.min()
        cells = ["–" if np.isnan(v) else ("**{}**" if v == best else "{}").format(_num(v)) for v in row]
        cells.append(f"{row.iloc[0] / row.iloc[1]:.3f}")
        lines.append(f"| {task} ({units.get(task, '')}) | {model} | {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
