"""The per-element half of the site features: a table indexed by atomic number.

Eight properties come from matminer's Magpie tables (Ward et al. 2016), in
their own units. Where Magpie has no value a documented fallback fills it:

============================  ============================================
property (Magpie table)       fallback, in this order
============================  ============================================
AtomicRadius (Å)              Magpie CovalentRadius (pm → Å)
Electronegativity (Pauling)   Magpie AllenElectronegativity, pymatgen ``X``
FirstIonizationEnergy (eV)    pymatgen ``ionization_energies[0]`` (NIST)
Density (kg/m³ for solids)    pymatgen ``density_of_solid``
============================  ============================================

An element still missing a value (Fr, Es and heavier, dummy species) is
unsupported: encoding raises :class:`UnsupportedElementError` naming it.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

#: Magpie table names, in feature-column order.
ELEMENT_PROPERTIES = (
    "Number",
    "AtomicWeight",
    "Row",
    "Column",
    "FirstIonizationEnergy",
    "Electronegativity",
    "AtomicRadius",
    "Density",
)
#: The full site-feature vector: the element table plus the oxidation state.
SITE_FEATURES = (*ELEMENT_PROPERTIES, "OxidationState")
MAX_Z = 118


def _pymatgen_fallback(prop: str, z: int) -> float:
    from pymatgen.core import Element

    element = Element.from_Z(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for every missing datum
        if prop == "Electronegativity":
            value = element.X
        elif prop == "FirstIonizationEnergy":
            value = element.ionization_energies[0] if element.ionization_energies else None
        elif prop == "Density":
            value = element.density_of_solid
        else:
            value = None
    return float("nan") if value is None else float(value)


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """Return the (119, 8) float64 table of element properties, row = atomic number.

    Row 0 and unsupported elements are NaN. Built once per process.
    """
    from matminer.utils.data import MagpieData

    magpie = MagpieData(impute_nan=False).all_elemental_props
    from pymatgen.core import Element

    symbols = [Element.from_Z(z).symbol for z in range(1, MAX_Z + 1)]
    table = np.full((MAX_Z + 1, len(ELEMENT_PROPERTIES)), np.nan)
    for col, prop in enumerate(ELEMENT_PROPERTIES):
        table[1:, col] = [magpie[prop][s] for s in symbols]
    fallbacks = {
        "AtomicRadius": lambda s, z: magpie["CovalentRadius"][s] / 100.0,
        "Electronegativity": lambda s, z: magpie["AllenElectronegativity"][s],
    }
    for col, prop in enumerate(ELEMENT_PROPERTIES):
        for z in np.flatnonzero(np.isnan(table[1:, col])) + 1:
            symbol = symbols[z - 1]
            value = fallbacks[prop](symbol, z) if prop in fallbacks else float("nan")
            if np.isnan(value):
                value = _pymatgen_fallback(prop, int(z))
            table[z, col] = value
    return table


def supported_atomic_numbers() -> np.ndarray:
    """Return the sorted atomic numbers with every site feature available."""
    return np.flatnonzero(np.isfinite(element_table()).all(axis=1))


def supported_elements() -> list[str]:
    """The element symbols a structure may contain, in order of atomic number: those with every site feature.

    Returns:
        e.g. ``["H", "He", "Li", ...]``; a structure with any other element is refused, naming it.
    """
    from pymatgen.core import Element

    return [Element.from_Z(int(z)).symbol for z in supported_atomic_numbers()]


def missing_properties(z: int) -> list[str]:
    """Return the names of the properties element ``z`` lacks (empty when supported)."""
    if not 0 < z <= MAX_Z:
        return list(ELEMENT_PROPERTIES)
    row = element_table()[z]
    return [p for p, v in zip(ELEMENT_PROPERTIES, row) if not np.isfinite(v)]
