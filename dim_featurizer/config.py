"""Plain, serialisable configuration objects for the encoding and the encoder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

OXIDATION_MODES = ("given", "guess", "zero")


@dataclass(frozen=True)
class EncodingConfig:
    """How a ``Structure`` becomes tensors (METHOD.md §1).

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
        return cls(**_known(cls, d))


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    extra = set(d) - names - {"@module", "@class"}
    if extra:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(extra)}")
    return {k: v for k, v in d.items() if k in names}


@dataclass(frozen=True)
class ModelConfig:
    """The Site-Net encoder's shape and input standardisation (METHOD.md §2).

    Attributes:
        n_site_features: site-feature width (9: eight element properties and
            the oxidation state).
        hidden: width of site, distance and attention embeddings.
        local_dim: width of each local representation μ_i.
        global_hidden: width of the pooled global layer.
        global_dim: D, the length of the feature vector μ_G. The paper says
            128 (the reference code used 64); this project uses 128.
        feature_mean, feature_std: site-feature standardisation constants.
        distance_mean, distance_std: distance standardisation, Å.
        encoding: the encoding the weights were trained with.
        max_pairs: rows are processed in chunks of at most this many
            (site, neighbour) pairs, bounding memory; results do not depend on it.
    """

    n_site_features: int = 9
    hidden: int = 64
    local_dim: int = 32
    global_hidden: int = 128
    global_dim: int = 128
    feature_mean: tuple[float, ...] | None = None
    feature_std: tuple[float, ...] | None = None
    distance_mean: float = 0.0
    distance_std: float = 1.0
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    max_pairs: int = 262_144

    def __post_init__(self) -> None:
        if isinstance(self.encoding, dict):
            object.__setattr__(self, "encoding", EncodingConfig.from_dict(self.encoding))
        for name in ("feature_mean", "feature_std"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != self.n_site_features:
                    raise ValueError(f"{name} needs {self.n_site_features} values, got {len(value)}")
                object.__setattr__(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the ``config.json`` of a weights folder)."""
        d = asdict(self)
        d["encoding"] = self.encoding.as_dict()
        for name in ("feature_mean", "feature_std"):
            d[name] = None if d[name] is None else list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Build from :meth:`as_dict` output; unknown keys are an error."""
        return cls(**_known(cls, d))

    def to_json_file(self, path: str | Path) -> None:
        """Write the config as indented JSON."""
        Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    @classmethod
    def from_json_file(cls, path: str | Path) -> ModelConfig:
        """Read a config written by :meth:`to_json_file`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
