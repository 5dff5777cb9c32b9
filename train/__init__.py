"""Self-supervised Deep InfoMax pretraining (installed as ``dim_featurizer.train``).

Imports ``dim_featurizer``; the featuriser never imports this package.
"""
