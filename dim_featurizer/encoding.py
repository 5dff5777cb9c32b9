"""Turn a pymatgen ``Structure`` into the tensors the encoder reads (docs/method.md §1).

Steps: validate → primitive cell (spglib) → Niggli-reduced basis → near-cubic
supercell of at most ``max_atoms`` atoms → minimum-image distances (Å) from
each primitive (unique) site to every supercell atom.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np
import spglib

from dim_featurizer.elements import element_table, missing_properties
from dim_featurizer.errors import (
    DisorderedStructureError,
    EmptyStructureError,
    InvalidGeometryError,
    NotAStructureError,
    OverlappingSitesError,
    StructureTooLargeError,
    UnsupportedElementError,
)

#: Bump when this module changes what it produces: caches keyed on it are rebuilt,
#: and weights recorded with another version are refused.
ENCODING_VERSION = 1
# Integer shifts to the 27 neighbouring cells, for minimum-image search.
_IMAGES = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
# Bound on (row, column, image) triples held at once while computing distances.
_DISTANCE_CHUNK = 2_000_000


OXIDATION_MODES = ("given", "guess", "zero")


@dataclass(frozen=True)
class EncodingConfig:
    """How a ``Structure`` becomes tensors (docs/method.md §1).

    Attributes:
        max_atoms: largest near-cubic supercell built from the primitive cell.
        oxidation: ``"given"`` uses oxidation states the structure carries (0
            where it carries none), ``"guess"`` asks pymatgen for a
            charge-balanced guess (cached per formula, 0 when none exists),
            ``"zero"`` ignores them.
        symprec: spglib tolerance for the primitive-cell search, Å.
        min_distance: atoms closer than this are overlapping, Å.
        max_sites: largest primitive cell accepted; larger is an error.
    """

    max_atoms: int = 50
    oxidation: str = "given"
    symprec: float = 0.01
    min_distance: float = 0.5
    max_sites: int = 2000

    def __post_init__(self) -> None:
        if self.oxidation not in OXIDATION_MODES:
            raise ValueError(f"oxidation must be one of {OXIDATION_MODES}, got {self.oxidation!r}")
        if self.max_atoms < 1 or self.max_sites < 1:
            raise ValueError("max_atoms and max_sites must be positive")

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncodingConfig:
        """Build from :meth:`as_dict` output; unknown keys are an error."""
        extra = set(d) - {f.name for f in fields(cls)}
        if extra:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(extra)}")
        return cls(**d)


@dataclass(frozen=True)
class EncodedCrystal:
    """One crystal as arrays.

    Attributes:
        site_features: (n, 9) float32, raw (unstandardised) features of the n
            unique (primitive-cell) sites, columns as ``elements.SITE_FEATURES``.
        distances: (n, m) float32 minimum-image distances in Å from unique
            site i to each of the m supercell atoms; column i is site i itself.
        image_of: (m,) int64, the unique site each supercell atom is an image of.
        repeats: (3,) supercell repeats of the primitive cell.
    """

    site_features: np.ndarray
    distances: np.ndarray
    image_of: np.ndarray
    repeats: tuple[int, int, int]

    @property
    def n_sites(self) -> int:
        """Number of unique sites (rows)."""
        return int(self.site_features.shape[0])

    @property
    def n_atoms(self) -> int:
        """Number of supercell atoms (columns)."""
        return int(self.distances.shape[1])


@dataclass(frozen=True)
class Cell:
    """A checked, ordered cell as arrays: what encoding workers receive instead of a pickled ``Structure``
    (pickling a Structure costs the sending process ~10x more).

    Attributes:
        lattice: (3, 3) Å. frac: (n, 3) fractional coordinates. z: (n,) atomic numbers.
        oxidation: (n,) oxidation states under the encoding's ``oxidation`` mode; None while a guess is due.
        formula: the reduced formula, kept only when the oxidation states are still to be guessed.
    """

    lattice: np.ndarray
    frac: np.ndarray
    z: np.ndarray
    oxidation: np.ndarray | None
    formula: str | None = None


def to_cell(structure: Any, config: EncodingConfig, defer_guess: bool = False) -> Cell:
    """Return the structure's :class:`Cell` (a Cell passes through) or raise a documented error.

    ``structure`` may also be undecoded: a pymatgen dict, its JSON text (``Structure.to_json()``) or CIF
    text, parsed here, so that encoding workers rather than the main process pay for parsing.
    ``defer_guess`` leaves oxidation states that must be guessed as None, for a worker to fill in.
    """
    if isinstance(structure, Cell):
        return _with_states(structure)
    from pymatgen.core import Structure

    if isinstance(structure, dict) or _looks_like_structure_text(structure):
        from dim_featurizer.readers import structure_from_value

        fast = cell_from_dict(structure, config)
        if fast is not None:
            return fast if defer_guess else _with_states(fast)
        parsed = structure_from_value(structure)
        if isinstance(parsed, Exception):
            raise NotAStructureError(f"cannot read: {parsed}")
        structure = parsed
    if not isinstance(structure, Structure):
        raise NotAStructureError(f"expected a pymatgen Structure, got {type(structure).__name__}")
    if len(structure) == 0:
        raise EmptyStructureError("the structure has no sites")
    species = _ordered_species(structure)
    lattice = np.asarray(structure.lattice.matrix, dtype=np.float64)
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    problem = _geometry_problem(lattice, frac)
    if problem:
        raise InvalidGeometryError(problem)
    z = np.array([getattr(sp, "Z", 0) for sp in species], dtype=np.int64)
    bad = _unsupported(z)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        missing = ", ".join(missing_properties(int(z[i])))
        raise UnsupportedElementError(
            f"site {i}: {species[i]} is not supported: the site-feature tables have no {missing} for it "
            "(dim_featurizer.supported_elements() lists the elements that are)"
        )
    oxidation = _oxidation_states(species, config.oxidation)
    formula = structure.composition.reduced_formula if oxidation is None else None
    cell = Cell(lattice, frac, z, oxidation, formula)
    return cell if defer_guess else _with_states(cell)


def _geometry_problem(lattice: np.ndarray, frac: np.ndarray) -> str | None:
    """What is wrong with a cell's (3, 3) lattice (Å) and (n, 3) fractional coordinates, or None."""
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        return "the lattice or coordinates contain NaN or infinity"
    volume = abs(np.linalg.det(lattice))
    return f"the cell volume is {volume:.3g} Å³" if volume < 1e-3 else None


def _unsupported(z: np.ndarray) -> np.ndarray:
    """(n,) True where atomic number ``z`` has no complete row in the site-feature table."""
    table = element_table()
    return ~np.isfinite(table[np.clip(z, 0, len(table) - 1)]).all(axis=1) | (z <= 0) | (z >= len(table))


def cell_from_dict(value: Any, config: EncodingConfig) -> Cell | None:
    """The :class:`Cell` of a pymatgen ``Structure.as_dict()`` (or its JSON text) read straight from the dict,
    without building a ``Structure`` (much cheaper than ``Structure.from_dict`` then :func:`to_cell`).

    Only the plain case is read here: ordered sites of known, supported elements in a sound cell, with
    oxidation states that need no guess. Anything else gives None, and the caller parses the value with
    pymatgen, whose path names every error.
    """
    try:
        d = json.loads(value) if isinstance(value, (str, bytes)) and value.lstrip()[:1] in ("{", b"{") else value
        lattice = np.asarray(d["lattice"]["matrix"], dtype=np.float64).reshape(3, 3)
        species = [site["species"] for site in d["sites"]]
        frac = np.asarray([site["abc"] for site in d["sites"]], dtype=np.float64).reshape(len(species), 3)
        if not species or any(len(sp) != 1 or sp[0].get("occu", 1) != 1 for sp in species):
            return None
        symbols = _symbol_numbers()
        z = np.array([symbols.get(sp[0]["element"], 0) for sp in species], dtype=np.int64)
        given = np.array([sp[0].get("oxidation_state") or 0.0 for sp in species], dtype=np.float64)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None
    if _geometry_problem(lattice, frac) or _unsupported(z).any() or (config.oxidation == "guess" and not given.any()):
        return None
    return Cell(lattice, frac, z, np.zeros(len(z)) if config.oxidation == "zero" else given)


@lru_cache(maxsize=1)
def _symbol_numbers() -> dict[str, int]:
    """Element symbol → atomic number, for every element pymatgen knows."""
    from pymatgen.core.periodic_table import Element

    return {e.symbol: e.Z for e in Element}


def _ordered_species(structure: Any) -> list:
    """Each site's one species, in one pass (3x faster than ``Structure.species``, which checks every site
    twice); raises :class:`DisorderedStructureError` naming the first disordered or partial site."""
    species = []
    for i, site in enumerate(structure.sites):
        composition = site.species
        if len(composition) != 1 or next(iter(composition.values())) != 1:
            raise DisorderedStructureError(
                f"site {i} is disordered or partially occupied ({composition}); "
                "order it first, e.g. with pymatgen's OrderDisorderedStructureTransformation"
            )
        species.append(next(iter(composition)))
    return species


def _looks_like_structure_text(value: Any) -> bool:
    """True for JSON text (``Structure.to_json()``) or CIF text; any other string is not a structure."""
    if isinstance(value, bytes):
        value = value[:4096].decode(errors="ignore")
    return isinstance(value, str) and (value.lstrip().startswith("{") or "_cell_length_a" in value)


def _with_states(cell: Cell) -> Cell:
    """``cell`` with its guessed oxidation states filled in (slow once per formula, so workers do it)."""
    return cell if cell.oxidation is not None else replace(cell, oxidation=_guessed_states(cell.z, cell.formula))


def _oxidation_states(species: list, mode: str) -> np.ndarray | None:
    """The sites' oxidation states, or None when ``mode == "guess"`` must guess them from the formula."""
    if mode == "zero":
        return np.zeros(len(species))
    given = np.array([getattr(sp, "oxi_state", None) or 0.0 for sp in species], dtype=np.float64)
    return given if mode == "given" or given.any() else None


def _guessed_states(z: np.ndarray, formula: str) -> np.ndarray:
    from pymatgen.core import Element

    guess = _guess_oxidation(formula)
    return np.array([guess.get(Element.from_Z(int(i)).symbol, 0.0) for i in z], dtype=np.float64)


@lru_cache(maxsize=65536)
def _guess_oxidation(formula: str) -> dict[str, float]:
    """Most probable charge-balanced oxidation states (pymatgen), {} when none."""
    from pymatgen.core import Composition

    guesses = Composition(formula).oxi_state_guesses(max_sites=-50)
    return dict(guesses[0]) if guesses else {}


def _has_lattice_translation(lattice: np.ndarray, frac: np.ndarray, types: np.ndarray, tol: float) -> bool:
    """True when some translation inside the cell maps every atom onto one of its own type.

    A cheap, vectorised pre-check: most input cells are already primitive,
    and then the full spglib symmetry search can be skipped.
    """
    counts = np.bincount(types)
    rarest = np.flatnonzero(types == np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    candidates = frac[rarest[1:]] - frac[rarest[0]]
    # First the rarest type's atoms alone (cheap); only translations that map them onto each other
    # are then checked on every atom.
    candidates = candidates[_maps_onto_itself(lattice, frac[rarest], candidates, tol)]
    if len(candidates) == 0:
        return False
    # Too big to test, every candidate is kept: spglib decides.
    same_type = types[:, None] == types[None, :]
    return bool(_maps_onto_itself(lattice, frac, candidates, tol, same_type).any())


def _maps_onto_itself(
    lattice: np.ndarray, frac: np.ndarray, shifts: np.ndarray, tol: float, allowed: np.ndarray | None = None
) -> np.ndarray:
    """(c,) bool: whether each fractional shift moves every atom to within ``tol`` Å of an atom
    (of an ``allowed`` (n, n) partner, when given)."""
    if len(shifts) * len(frac) ** 2 > _DISTANCE_CHUNK:
        return np.ones(len(shifts), dtype=bool)  # too big to test: keep them all
    delta = frac[None, :, None, :] + shifts[:, None, None, :] - frac[None, None, :, :]
    cart = (delta - np.round(delta)) @ lattice
    close = np.einsum("cijl,cijl->cij", cart, cart) < tol * tol
    if allowed is not None:
        close &= allowed
    return close.any(axis=2).all(axis=1)


def _primitive(lattice: np.ndarray, frac: np.ndarray, types: np.ndarray, symprec: float):
    """Return the primitive cell (lattice, frac, types); the input when it is already primitive."""
    if not _has_lattice_translation(lattice, frac, types, symprec):
        return lattice, frac, types
    try:
        cell = spglib.standardize_cell((lattice, frac, types), to_primitive=True, no_idealize=True, symprec=symprec)
    except Exception:  # noqa: BLE001 - spglib raises for cells it cannot analyse
        cell = None
    if cell is None or len(cell[2]) == 0:
        return lattice, frac, types
    return np.asarray(cell[0], float), np.asarray(cell[1], float), np.asarray(cell[2])


def _reduced_basis(lattice: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express the cell in its Niggli-reduced basis (rotation-free, same lattice)."""
    reduced = spglib.niggli_reduce(lattice)
    if reduced is None:
        return lattice, frac % 1.0
    reduced = np.asarray(reduced, float)
    new_frac = (frac @ lattice) @ np.linalg.inv(reduced)
    return reduced, new_frac % 1.0


def supercell_repeats(lattice: np.ndarray, n_sites: int, max_atoms: int) -> np.ndarray:
    """Greedy near-cubic repeats: grow the currently shortest axis while n_sites × repeats ≤ max_atoms.

    Args:
        lattice: (3, 3) reduced lattice, rows are vectors in Å.
        n_sites: atoms in that cell.
        max_atoms: the supercell's size limit.

    Returns:
        (3,) int64 repeats along a, b, c (all ones when the cell is already over max_atoms / 2).
    """
    lengths = np.linalg.norm(lattice, axis=1)
    repeats = np.ones(3, dtype=np.int64)
    while True:
        # Rounding makes ties (cubic axes) break by index, not by float noise.
        axis = int(np.argmin(np.round(lengths * repeats, 6)))
        if n_sites * (repeats.prod() // repeats[axis]) * (repeats[axis] + 1) > max_atoms:
            return repeats
        repeats[axis] += 1


def minimum_image_distances(lattice: np.ndarray, frac: np.ndarray, n_rows: int) -> np.ndarray:
    """Minimum-image distances (Å) from the first ``n_rows`` atoms to all atoms.

    Args:
        lattice: (3, 3) cell, rows in Å.
        frac: (m, 3) fractional coordinates in that cell.
        n_rows: rows wanted (the first n_rows atoms).

    Returns:
        (n_rows, m) float64 distances; a row's own column is 0.
    """
    reduced, frac = _reduced_basis(lattice, frac)
    m = len(frac)
    images = _IMAGES @ reduced  # (27, 3) Å
    image_sq = np.einsum("kl,kl->k", images, images)
    out = np.empty((n_rows, m))
    step = max(1, _DISTANCE_CHUNK // (m * len(_IMAGES)))
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        delta = frac[None, :, :] - frac[start:stop, None, :]
        cart = (delta - np.round(delta)) @ reduced
        # |d + t|² = |d|² + 2 d·t + |t|², minimised over the 27 image shifts t.
        sq = np.einsum("ijl,ijl->ij", cart, cart)[..., None] + 2.0 * (cart @ images.T) + image_sq
        out[start:stop] = np.sqrt(np.maximum(sq.min(axis=2), 0.0))
    return out


@dataclass(frozen=True)
class Supercell:
    """The near-cubic supercell an encoding is computed on.

    Attributes:
        lattice: (3, 3) supercell vectors as rows, Å.
        frac: (m, 3) fractional coordinates; the first n atoms are the unique sites.
        site_keys: (n, 2) atomic number and oxidation state of each unique site.
        image_of: (m,) unique site each atom is an image of.
        repeats: (3,) repeats of the Niggli-reduced primitive cell.
    """

    lattice: np.ndarray
    frac: np.ndarray
    repeats: tuple[int, int, int]
    site_keys: np.ndarray
    image_of: np.ndarray

    @property
    def n_sites(self) -> int:
        """Number of unique sites."""
        return len(self.site_keys)

    def to_structure(self) -> Any:
        """Return the supercell as a pymatgen ``Structure`` (species as elements)."""
        from pymatgen.core import Structure

        z = self.site_keys[self.image_of, 0].astype(int)
        return Structure(self.lattice, z.tolist(), self.frac)


def build_supercell(structure: Any, config: EncodingConfig | None = None) -> Supercell:
    """Validate ``structure`` (a ``Structure`` or its :class:`Cell`) and build its supercell (docs/method.md §1.1-1.3).

    Raises:
        FeaturizationError: a documented subclass naming what is wrong.
    """
    config = config or EncodingConfig()
    cell = to_cell(structure, config)
    lattice, frac, z, oxidation = cell.lattice, cell.frac, cell.z, cell.oxidation
    keys, types = np.unique(np.stack([z, oxidation], 1), axis=0, return_inverse=True)
    lattice, frac, types = _primitive(lattice, frac, types.reshape(-1), config.symprec)
    if len(types) > config.max_sites:
        raise StructureTooLargeError(f"the primitive cell has {len(types)} sites, over max_sites={config.max_sites}")
    lattice, frac = _reduced_basis(lattice, frac)
    n = len(types)
    repeats = supercell_repeats(lattice, n, config.max_atoms)
    shifts = np.stack(np.meshgrid(*[np.arange(r) for r in repeats], indexing="ij"), -1).reshape(-1, 3)
    return Supercell(
        lattice=lattice * repeats[:, None],
        frac=((frac[None] + shifts[:, None]) / repeats).reshape(-1, 3),
        site_keys=keys[types],
        image_of=np.tile(np.arange(n, dtype=np.int64), len(shifts)),
        repeats=tuple(int(r) for r in repeats),
    )


def encode_structure(structure: Any, config: EncodingConfig | None = None) -> EncodedCrystal:
    """Encode one ordered structure.

    Args:
        structure: a pymatgen ``Structure``.
        config: encoding options; defaults to ``EncodingConfig()``.

    Returns:
        The :class:`EncodedCrystal`.

    Raises:
        FeaturizationError: a documented subclass naming what is wrong.
    """
    config = config or EncodingConfig()
    cell = build_supercell(structure, config)
    n = cell.n_sites
    distances = minimum_image_distances(cell.lattice, cell.frac, n)
    diagonal = (np.arange(n), np.arange(n))
    distances[diagonal] = np.inf
    closest = np.unravel_index(np.argmin(distances), distances.shape)
    if distances[closest] < config.min_distance:
        a, b = cell.site_keys[closest[0], 0], cell.site_keys[cell.image_of[closest[1]], 0]
        raise OverlappingSitesError(
            f"atoms of Z={int(a)} and Z={int(b)} are {distances[closest]:.3f} Å apart "
            f"(under min_distance={config.min_distance} Å)"
        )
    distances[diagonal] = 0.0
    features = np.concatenate([element_table()[cell.site_keys[:, 0].astype(np.int64)], cell.site_keys[:, 1:]], axis=1)
    return EncodedCrystal(
        site_features=features.astype(np.float32),
        distances=distances.astype(np.float32),
        image_of=cell.image_of,
        repeats=cell.repeats,
    )


def encode_or_error(entry: Any, config: EncodingConfig) -> Encoded:
    """Encode one entry: ``(encoded, None)``, or ``(None, error)`` instead of raising (safe across processes)."""
    try:
        return encode_structure(entry, config), None
    except Exception as e:  # noqa: BLE001 - every failure is reported per entry
        return None, e


def check_entry(entry: Any, config: EncodingConfig) -> Cell | Exception:
    """The entry's :class:`Cell` with any oxidation-state guess left to the encoder, or the error that refuses it.

    What the main process does before sending an entry to an encoding worker; undecoded entries (a dict,
    JSON or CIF text) go to the worker as they are, so that the worker parses them.
    """
    if isinstance(entry, dict) or _looks_like_structure_text(entry):
        return entry
    try:
        return to_cell(entry, config, defer_guess=True)
    except Exception as e:  # noqa: BLE001 - reported per entry
        return e


#: One entry's result: the encoded crystal, or the error met encoding it.
Encoded = tuple["EncodedCrystal | None", "Exception | None"]
