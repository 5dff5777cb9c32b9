"""Exceptions raised for inputs the featuriser cannot turn into a vector.

Every documented failure is a subclass of :class:`FeaturizationError`, so a
caller can catch them all at once; each message names the offending entry.
"""

from __future__ import annotations

from typing import Any


class FeaturizationError(ValueError):
    """Base class: an input that cannot be featurised, with the reason."""


class NotAStructureError(FeaturizationError, TypeError):
    """The entry is not a pymatgen ``Structure`` (a ``Molecule``, str, dict, None...)."""


class EmptyStructureError(FeaturizationError):
    """The structure has no sites."""


class DisorderedStructureError(FeaturizationError):
    """A site is partially occupied or holds more than one species."""


class InvalidGeometryError(FeaturizationError):
    """Non-finite coordinates or lattice, or a degenerate (zero-volume) cell."""


class OverlappingSitesError(FeaturizationError):
    """Two atoms sit closer than the encoding's ``min_distance``."""


class UnsupportedElementError(FeaturizationError):
    """An element (or dummy species) has no entry in the site-feature tables."""


class StructureTooLargeError(FeaturizationError):
    """The primitive cell has more sites than the configured ``max_sites``."""


class WeightsError(RuntimeError):
    """Weights could not be found, verified or loaded; the message lists every source tried."""


def describe(entry: Any) -> str:
    """A one-line human name for an entry: ``Structure NaCl``, ``Molecule H2``, ``str 'NaCl'``, ``NoneType``."""
    composition = getattr(entry, "composition", None)
    if composition is not None and hasattr(entry, "sites"):
        try:
            formula = composition.reduced_formula if len(entry) else "with no sites"
        except Exception:  # noqa: BLE001 - a broken object still gets a name
            formula = "(unreadable composition)"
        return f"{type(entry).__name__} {formula}"
    if entry is None:
        return "NoneType"
    text = " ".join(repr(entry).split())
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(entry).__name__} {text}"


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace runs collapsed)."""
    return " ".join(str(error).split()) or type(error).__name__


def name_entry(error: BaseException, entry: Any, index: int | None = None, key: Any = None) -> BaseException:
    """Return ``error`` re-made with a one-line message naming its entry; same type when possible.

    Args:
        error: what went wrong.
        entry: the offending input.
        index: its position in the input (None for a single structure).
        key: its id (the index label of a Series or DataFrame), when the input has one.

    Returns:
        e.g. ``NotAStructureError("entry 2 (id 'mp-1', Molecule H2): expected a pymatgen Structure, got Molecule")``,
        with the original error as ``__cause__``.
    """
    where = ", ".join(([f"id {key!r}"] if key is not None else []) + [describe(entry)])
    message = f"entry {index} ({where}): {one_line(error)}" if index is not None else f"{where}: {one_line(error)}"
    try:
        named = type(error)(message)
    except Exception:  # noqa: BLE001 - exotic exception signatures
        named = FeaturizationError(message)
    named.__cause__ = error
    return named
