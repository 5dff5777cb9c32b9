"""Label-free reconstruction targets from Magpie's element table (Ward et al. 2016).

The site features carry eight element properties. Magpie's composition
features use 22 (valence-shell counts, ground-state volume, band gap and
magnetic moment of the element, Mendeleev number, ...), and DIM + Magpie
beats DIM alone in the benchmark. ``--element-reconstruction`` asks the
encoder to carry that table too: each site's 22 properties from μ_i, and
each crystal's Magpie statistics of them from μ_G. These are properties of
the elements, read from matminer's tables; no crystal's label is read.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from dim_featurizer.elements import MAX_Z, supported_atomic_numbers

#: The 22 element properties of matminer's ``ElementProperty.from_preset("magpie")``, in its order.
MAGPIE_PROPERTIES = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "GSvolume_pa",
    "GSbandgap",
    "GSmagmom",
    "SpaceGroupNumber",
)
#: Per-crystal statistics of each property, as Magpie's (its range and mode follow from these or are coarse).
CRYSTAL_STATISTICS = ("mean", "avg_dev", "minimum", "maximum")


@lru_cache(maxsize=1)
def magpie_targets() -> np.ndarray:
    """(119, 22) float32 table, row = atomic number: :data:`MAGPIE_PROPERTIES` standardised over the supported
    elements (mean 0, std 1 per property). A value Magpie lacks is 0, the mean, as Magpie's own imputation."""
    from matminer.utils.data import MagpieData
    from pymatgen.core import Element

    magpie = MagpieData(impute_nan=False).all_elemental_props
    symbols = [Element.from_Z(z).symbol for z in range(1, MAX_Z + 1)]
    table = np.full((MAX_Z + 1, len(MAGPIE_PROPERTIES)), np.nan)
    for col, prop in enumerate(MAGPIE_PROPERTIES):
        table[1:, col] = [magpie[prop].get(s, np.nan) for s in symbols]
    known = table[supported_atomic_numbers()]
    std = np.nanstd(known, axis=0)
    table = (table - np.nanmean(known, axis=0)) / np.where(std > 1e-9, std, 1.0)
    return np.nan_to_num(table, nan=0.0).astype(np.float32)


def crystal_statistics(values: torch.Tensor, crystal_index: torch.Tensor, n_crystals: int) -> torch.Tensor:
    """Magpie's statistics of per-site values over each crystal's sites.

    Args:
        values: (N, P) one row per site of the primitive cells (so each atom counts once).
        crystal_index: (N,) the crystal of each row, in ``[0, n_crystals)``.
        n_crystals: C.

    Returns:
        (C, 4P): the mean, the mean absolute deviation from it, the minimum and the maximum, in the order of
        :data:`CRYSTAL_STATISTICS`, each block P wide.
    """
    count = torch.bincount(crystal_index, minlength=n_crystals).clamp_min(1).to(values.dtype).unsqueeze(1)
    rows = crystal_index.unsqueeze(1).expand_as(values)
    mean = values.new_zeros((n_crystals, values.shape[1])).index_add_(0, crystal_index, values) / count
    deviation = (values - mean[crystal_index]).abs()
    avg_dev = values.new_zeros(mean.shape).index_add_(0, crystal_index, deviation) / count
    low = values.new_zeros(mean.shape).scatter_reduce(0, rows, values, "amin", include_self=False)
    high = values.new_zeros(mean.shape).scatter_reduce(0, rows, values, "amax", include_self=False)
    return torch.cat([mean, avg_dev, low, high], 1)
