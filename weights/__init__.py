"""Weights shipped with dim_featurizer (installed as ``dim_featurizer.bundled_weights``).

Each sub-folder is a Hub-layout weights folder; ``manifest.json`` lists them
with the sha256 of every file and names the default.
"""
