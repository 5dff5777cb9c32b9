"""Example crystals and a small real-data sample shipped with the package.

- ``example_structures()``: eight textbook crystals (Si, NaCl, GaAs, ...)
  built from literature lattice constants.
- ``sample_data_dir()``: 600 real crystals (Materials Project, Matbench
  phonons) in the layout of the full data folder; ``load_sample`` reads one
  of its frames. See ``sample_data/README.md`` for sources and licences.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

#: The frames in ``sample_data/``, by short name.
SAMPLES = {"mp2018": "mp2018_e_form_gap.json.gz", "phonons": "matbench_phonons.json.gz"}


def example_files() -> list[Path]:
    """Return the paths of the bundled example CIF files, sorted by name."""
    return sorted(Path(str(p)) for p in resources.files(__name__).iterdir() if p.name.endswith(".cif"))


def example_structures() -> dict[str, Any]:
    """Return ``{name: Structure}`` for the bundled examples (Si, NaCl, GaAs, ...)."""
    from pymatgen.core import Structure

    return {path.stem: Structure.from_file(path) for path in example_files()}


def sample_data_dir() -> Path:
    """The folder of the shipped real-data sample, laid out like the full data folder."""
    return Path(str(resources.files(__name__) / "sample_data"))


def load_sample(name: str = "phonons") -> Any:
    """A labelled DataFrame from the shipped sample: ``"phonons"`` (300 rows) or ``"mp2018"`` (300 rows).

    Returns:
        A DataFrame indexed by id, with a ``structure`` column of pymatgen
        Structures and the label columns (``last phdos peak`` in cm⁻¹;
        ``e_form`` in eV/atom and ``gap`` in eV).
    """
    from dim_featurizer.readers import read_frame

    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose from {sorted(SAMPLES)}")
    return read_frame(sample_data_dir() / SAMPLES[name])
