"""dim_featurizer: Site-Net Deep InfoMax feature vectors for crystal structures.

The main entry point is :class:`DeepInfoMaxFeaturizer`, a matminer featuriser
that is also a scikit-learn transformer. Heavy modules are imported lazily so
that ``import dim_featurizer`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "DeepInfoMaxFeaturizer": "dim_featurizer.featurizer",
    "DIMRegressor": "dim_featurizer.regressor",
    "EncodingConfig": "dim_featurizer.config",
    "ModelConfig": "dim_featurizer.config",
    "encode_structure": "dim_featurizer.encoding",
    "SiteNetEncoder": "dim_featurizer.model",
    "load_weights": "dim_featurizer.weights",
    "save_pretrained": "dim_featurizer.weights",
    "load_pretrained": "dim_featurizer.weights",
    "example_structures": "dim_featurizer.examples",
    "supported_elements": "dim_featurizer.elements",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'dim_featurizer' has no attribute {name!r}")
