"""Exceptions raised for inputs the featuriser cannot turn into a vector.

Every documented failure is a subclass of :class:`FeaturizationError`, so a
caller can catch them all at once; each message names the offending entry.
"""

from __future__ import annotations


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


#: The failures a user can meet for bad structures; anything else is a bug.
DOCUMENTED_ERRORS = (
    NotAStructureError,
    EmptyStructureError,
    DisorderedStructureError,
    InvalidGeometryError,
    OverlappingSitesError,
    UnsupportedElementError,
    StructureTooLargeError,
)
