"""Small textbook crystals shipped with the package (built from literature lattice constants)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def example_files() -> list[Path]:
    """Return the paths of the bundled example CIF files, sorted by name."""
    return sorted(Path(str(p)) for p in resources.files(__name__).iterdir() if p.name.endswith(".cif"))


def example_structures() -> dict:
    """Return ``{name: Structure}`` for the bundled examples (Si, NaCl, GaAs, ...)."""
    import warnings

    from pymatgen.core import Structure

    with warnings.catch_warnings():
        # The CIFs store 1/3 and 2/3 to 8 decimals; pymatgen says it snaps them back.
        warnings.filterwarnings("ignore", message="Issues encountered while parsing CIF")
        return {path.stem: Structure.from_file(path) for path in example_files()}
