"""The encoder's plain, serialisable configuration (``config.json`` of a weights folder).

``EncodingConfig`` lives beside the encoding in :mod:`dim_featurizer.encoding`; it is re-exported here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dim_featurizer.encoding import ENCODING_VERSION, OXIDATION_MODES, EncodingConfig

__all__ = ["ARCHITECTURE_FIELDS", "ENCODING_VERSION", "OXIDATION_MODES", "READOUTS", "EncodingConfig", "ModelConfig"]

#: The feature vectors an encoder can give (``ModelConfig.readout``).
READOUTS = ("global_mu", "pooled")
#: The ModelConfig fields that give the network's shape (its tensors' sizes and count).
ARCHITECTURE_FIELDS = ("n_site_features", "hidden", "attention_layers", "local_dim", "global_hidden", "global_dim")


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``d`` that are fields of ``cls``; unknown keys are an error."""
    names = {f.name for f in fields(cls)}
    extra = set(d) - names
    if extra:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(extra)}")
    return {k: v for k, v in d.items() if k in names}


@dataclass(frozen=True)
class ModelConfig:
    """The Site-Net encoder's shape and input standardisation (docs/method.md §2).

    Attributes:
        n_site_features: site-feature width (9: eight element properties and
            the oxidation state).
        hidden: width of site, distance and attention embeddings.
        attention_layers: attention blocks over each site's environment. The
            paper has 1; each further block reads site embeddings updated by
            the previous block's environment vectors (h_i + s_i), so μ_i
            sees one more shell of neighbours per block.
        local_dim: width of each local representation μ_i.
        global_hidden: width of the pooled global layer.
        global_dim: D, the length of the feature vector μ_G. The paper says
            128 (the reference code used 64); this project uses 128.
        feature_mean, feature_std: site-feature standardisation constants.
        distance_mean, distance_std: distance standardisation, Å.
        encoding: the encoding the weights were trained with.
        encoding_version: ``encoding.ENCODING_VERSION`` when the weights were
            trained; loading refuses weights made for another version.
        pretraining: facts about how the weights were made, as data (None for
            untrained weights): ``labels_read`` (property labels read, a list),
            ``test_ids_read`` (ids of the split's held-out lists among the
            structures read), the data, split and subset, the run's settings.
            The benchmark reads these, never the prose of a model card.
        readout: the feature vector: ``"global_mu"`` (μ_G, D values) or
            ``"pooled"`` (the mean-pooled layer before the global bottleneck,
            ``global_hidden`` values). Compare trained and untrained weights
            with the same readout.
        max_pairs: rows are processed in chunks of at most this many
            (site, neighbour) pairs, bounding memory; results do not depend on it.
        weights_sha256: the sha256 of the folder's ``model.safetensors``, written by
            ``weights.save_pretrained`` and checked on every load (None in memory only).
    """

    n_site_features: int = 9
    hidden: int = 64
    attention_layers: int = 1
    local_dim: int = 32
    global_hidden: int = 128
    global_dim: int = 128
    feature_mean: tuple[float, ...] | None = None
    feature_std: tuple[float, ...] | None = None
    distance_mean: float = 0.0
    distance_std: float = 1.0
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    encoding_version: int = ENCODING_VERSION
    pretraining: dict[str, Any] | None = None
    readout: str = "global_mu"
    max_pairs: int = 262_144
    weights_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.attention_layers < 1:
            raise ValueError(f"attention_layers must be at least 1, got {self.attention_layers}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if isinstance(self.encoding, dict):
            object.__setattr__(self, "encoding", EncodingConfig.from_dict(self.encoding))
        for name in ("feature_mean", "feature_std"):
            value = getattr(self, name)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != self.n_site_features:
                    raise ValueError(f"{name} needs {self.n_site_features} values, got {len(value)}")
                object.__setattr__(self, name, value)

    @property
    def feature_width(self) -> int:
        """The length of the feature vector of ``readout``."""
        return self.global_dim if self.readout == "global_mu" else self.global_hidden

    def architecture(self) -> dict[str, int]:
        """The network's shape: :data:`ARCHITECTURE_FIELDS` and their values."""
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

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

    def to_json(self) -> str:
        """The config as indented JSON text (the ``config.json`` of a weights folder)."""
        return json.dumps(self.as_dict(), indent=2) + "\n"

    @classmethod
    def from_json_file(cls, path: str | Path) -> ModelConfig:
        """Read a config written as :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
