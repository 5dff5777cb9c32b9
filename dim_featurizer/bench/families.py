"""Crystal families inside the mp2018 training split, for the leave-family-out probe.

The rule was fixed and committed before any family was scored, and reads
structures only (elements and the anonymous formula), never a label. A
crystal belongs to the first family in :data:`FAMILIES` whose test it passes,
so families are disjoint; most training crystals belong to none.

    dim-bench families            # writes runs/families/families.csv (id, family) and families.json

Pretraining leaves the families out with ``dim-train fit --exclude-ids runs/families/families.csv``, and
``dim-bench probe --families runs/families/families.csv`` scores each family against the run's own control.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from dim_featurizer.console import Parser, report_errors
from dim_featurizer.files import write_csv, write_json
from dim_featurizer.readers import default_data_dir, read_frame, read_split

#: Where the family table lives, by default.
FAMILY_TABLE = Path("runs/families/families.csv")

#: Elements that are not metals, for the intermetallic family.
NON_METALS = frozenset("H He B C N O F Ne Si P S Cl Ar Ge As Se Br Kr Sb Te I Xe".split())
#: The precious and platinum-group metals.
PRECIOUS = frozenset("Ru Rh Pd Ag Os Ir Pt Au".split())

Test = Callable[[frozenset, str], bool]
#: (name, what it holds, test on (element symbols, anonymous formula)), in priority order.
FAMILIES: list[tuple[str, str, Test]] = [
    ("fluorides", "contains F", lambda els, anon: "F" in els),
    ("nitrides", "contains N", lambda els, anon: "N" in els),
    ("selenides-tellurides", "contains Se or Te", lambda els, anon: bool(els & {"Se", "Te"})),
    (
        "precious-intermetallics",
        "metals only, at least one of Ru Rh Pd Ag Os Ir Pt Au",
        lambda els, anon: not els & NON_METALS and bool(els & PRECIOUS),
    ),
    (
        "abc2",
        "anonymous formula ABC2 (a structure-type family: chalcopyrites, delafossites, ...)",
        lambda els, anon: anon == "ABC2",
    ),
]


def family_of(elements: Iterable[str], anonymous_formula: str) -> str:
    """The first family whose test the composition passes, or ``""`` for none.

    Args:
        elements: the crystal's element symbols.
        anonymous_formula: pymatgen's ``Composition.anonymized_formula`` (e.g. ``"ABC2"``).
    """
    els = frozenset(elements)
    return next((name for name, _, test in FAMILIES if test(els, anonymous_formula)), "")


def assign_families(structures: pd.Series) -> pd.Series:
    """Family name per structure (index kept), ``""`` for a crystal in none; reads compositions only."""
    names = []
    for structure in structures:
        composition = structure.composition
        names.append(family_of((e.symbol for e in composition.elements), composition.anonymized_formula))
    return pd.Series(names, index=structures.index, name="family")


def read_families(path: str | Path) -> pd.Series:
    """The family table (``id``, ``family``) as a Series indexed by id."""
    table = pd.read_csv(path, dtype=str)
    if not {"id", "family"} <= set(table.columns):
        raise ValueError(f"{path}: a family table needs the columns 'id' and 'family'")
    return table.set_index("id")["family"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``dim-bench families``."""
    p = Parser(
        prog="dim-bench families", description="Write the leave-family-out families of the mp2018 training split."
    )
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="the data folder ($DIM_DATA_DIR)")
    p.add_argument("--out", type=Path, default=FAMILY_TABLE, help="the family table (id, family) to write")
    return p


def main(argv: list[str] | None = None) -> int:
    """Write the family table and a summary beside it; returns the exit status."""
    args = build_parser().parse_args(argv)
    return report_errors("dim-bench families", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    """The command's work: training-split structures only, no label column."""
    train = read_split(args.data_dir / "mp2018_folds.json")["train"]
    frame = read_frame(args.data_dir / "mp2018_e_form_gap.json.gz", train, pbar=True)
    family = assign_families(frame["structure"])
    members = family[family != ""]
    write_csv(args.out, members.rename_axis("id").reset_index())
    summary = {
        "source": "mp2018_e_form_gap.json.gz, training split only; structures read, no label",
        "rule": [{"family": name, "holds": text} for name, text, _ in FAMILIES],
        "assignment": "the first family whose test a crystal passes (disjoint families)",
        "sizes": {name: int((members == name).sum()) for name, _, _ in FAMILIES},
        "training_crystals": len(family),
        "in_no_family": int((family == "").sum()),
    }
    write_json(args.out.with_suffix(".json"), summary)
    print(f"dim-bench families: {len(members)} of {len(family)} training crystals in {len(FAMILIES)} families")
    for name, size in summary["sizes"].items():
        print(f"  {name}: {size}")
    return 0
