"""Benchmark harness (installed as ``dim_featurizer.bench``): do DIM features help on small labelled sets?

Imports ``dim_featurizer`` and scikit-learn; the featuriser never imports it.
"""
