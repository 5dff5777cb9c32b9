"""Hypothetical crystals for pretraining: each training crystal with its elements swapped within their groups.

Pretraining data that spans more chemistry without a label (docs/method.md §3.9): a copy of a chloride
with Cl → F is a fluoride-like crystal that no database holds. Each copy swaps every element of the crystal
for a different supported element of the same periodic-table group (lanthanides and actinides count as
one group each; hydrogen stays apart from the alkali metals), chosen with a seeded generator. Fractional
positions are kept and the cell is scaled by the mean ratio of the new to the old atomic radii, so that
bond lengths follow the elements. An element with no free partner in its group stays.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

#: Marks a hypothetical copy's id: ``<id>~sub<k>``.
COPY_MARK = "~sub"


@lru_cache(maxsize=1)
def group_partners() -> dict[str, tuple[str, ...]]:
    """Element symbol → the other supported elements of its group (lanthanides and actinides: their own)."""
    from pymatgen.core import Element

    from dim_featurizer.elements import supported_elements

    def group(symbol: str) -> str:
        element = Element(symbol)
        if element.is_lanthanoid or element.is_actinoid:
            return "Ln" if element.is_lanthanoid else "An"
        return "H" if symbol == "H" else str(element.group)

    symbols = supported_elements()
    groups: dict[str, list[str]] = {}
    for symbol in symbols:
        groups.setdefault(group(symbol), []).append(symbol)
    return {s: tuple(o for o in groups[group(s)] if o != s) for s in symbols}


@lru_cache(maxsize=1)
def radii() -> np.ndarray:
    """Atomic radius (Å) by atomic number (index 0 unused; NaN where pymatgen has none)."""
    import warnings

    from pymatgen.core import Element

    out = np.full(119, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for each element it has no radius of
        for z in range(1, 119):
            element = Element.from_Z(z)
            out[z] = element.atomic_radius or element.atomic_radius_calculated or np.nan
    return out


def substitute(structure, rng: np.random.Generator):
    """A copy of ``structure`` with each element swapped for a group partner not already in the crystal."""
    partners = group_partners()
    present = [e.symbol for e in structure.composition.elements]
    taken, mapping = set(present), {}
    for symbol in present:
        free = [p for p in partners.get(symbol, ()) if p not in taken]
        if free:
            mapping[symbol] = free[int(rng.integers(len(free)))]
            taken.add(mapping[symbol])
    copy = structure.copy()
    if mapping:
        from pymatgen.core import Element

        radius = radii()
        z = np.asarray(structure.atomic_numbers)
        swap = np.arange(len(radius))
        swap[[Element(k).Z for k in mapping]] = [Element(v).Z for v in mapping.values()]
        ratio = radius[swap[z]] / radius[z]
        copy.replace_species(mapping)
        if np.all(np.isfinite(ratio)) and np.all(ratio > 0):
            copy.scale_lattice(structure.volume * float(ratio.mean()) ** 3)
    return copy


def substituted_copies(structures: pd.Series, copies: int, seed: int = 0) -> pd.Series:
    """``copies`` hypothetical crystals per structure, indexed ``<id>~sub<k>`` (seeded by id and k).

    An entry that is not a structure (a read error) is passed on as it is, to be counted as excluded.
    """
    if copies <= 0:
        return structures.iloc[:0]
    ids, values = [], []
    for key, structure in structures.items():
        for k in range(copies):
            ids.append(f"{key}{COPY_MARK}{k}")
            if isinstance(structure, Exception):
                values.append(structure)
                continue
            digest = np.frombuffer(str(key).encode(), dtype=np.uint8).astype(np.uint32)
            rng = np.random.default_rng(np.random.SeedSequence([seed, k, *digest.tolist()]))
            values.append(substitute(structure, rng))
    return pd.Series(values, index=ids, name=structures.name, dtype=object)
