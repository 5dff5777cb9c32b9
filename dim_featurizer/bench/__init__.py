"""Benchmark harness (``dim_featurizer.bench``): do DIM features help on small labelled sets?

Imports ``dim_featurizer`` and scikit-learn; the featuriser never imports it.
:func:`run_benchmark` runs the whole protocol; ``dim-bench`` is its command line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchmarkResult", "run_benchmark"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'dim_featurizer.bench' has no attribute {name!r}")
