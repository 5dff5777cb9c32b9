"""DeepInfoMaxFeaturizer: matminer and scikit-learn contracts, invariances, batching."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Structure
from scipy.spatial.transform import Rotation

from dim_featurizer import DeepInfoMaxFeaturizer


def vec(featurizer, structure):
    return np.asarray(featurizer.featurize(structure))


def test_labels_citations_implementors(featurizer):
    labels = featurizer.feature_labels()
    assert labels == [f"DIM_{i}" for i in range(128)]
    assert featurizer.feature_labels() is not labels  # a fresh list each call
    labels.append("junk")
    assert len(featurizer.feature_labels()) == 128
    cites = " ".join(featurizer.citations())
    assert "Deep InfoMax" in cites and "Site-Net" in cites
    assert featurizer.implementors()


def test_get_params_and_clone_round_trip():
    from sklearn.base import clone

    f = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", batch_sites=300, max_atoms=80, seed=3, n_jobs=2)
    params = f.get_params()
    assert params["batch_sites"] == 300 and params["max_atoms"] == 80 and params["n_jobs"] == 2
    g = clone(f)
    assert g.get_params() == params and g is not f
    f.set_n_jobs(1)
    assert f.get_params()["n_jobs"] == 1


def test_model_is_lazy_and_never_pickled(examples):
    f = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    assert not hasattr(f, "model_")
    v = vec(f, examples["Si"])
    assert hasattr(f, "model_")
    blob = pickle.dumps(f)
    assert len(blob) < 2000  # parameters only, no tensors
    g = pickle.loads(blob)
    assert not hasattr(g, "model_")
    np.testing.assert_array_equal(vec(g, examples["Si"]), v)


def test_featurize_dataframe(featurizer, examples):
    df = pd.DataFrame({"structure": list(examples.values())}, index=list(examples))
    out = featurizer.featurize_dataframe(df, "structure", pbar=False)
    assert list(out.columns[1:]) == featurizer.feature_labels()
    assert np.isfinite(out.iloc[:, 1:].to_numpy(float)).all()
    np.testing.assert_allclose(out.loc["NaCl"].iloc[1:].to_numpy(float), vec(featurizer, examples["NaCl"]), atol=1e-5)
    # Different crystals give different vectors.
    assert np.abs(out.loc["NaCl"].iloc[1:].to_numpy(float) - out.loc["CsCl"].iloc[1:].to_numpy(float)).max() > 1e-3


def test_pipeline_and_pandas_output(real_structures):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = pd.DataFrame({"structure": real_structures[:40]})
    y = np.array([s.density for s in real_structures[:40]])
    dim = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    pipe = make_pipeline(dim, StandardScaler(), Ridge()).fit(X, y)
    assert pipe.predict(X).shape == (40,)
    dim.set_output(transform="pandas")
    frame = dim.fit_transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == dim.feature_labels()
    assert frame.shape == (40, 128)
    plain = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False).transform(real_structures[:40])
    np.testing.assert_allclose(frame.to_numpy(), plain, atol=1e-6)


def test_vector_does_not_depend_on_batch(featurizer, real_structures):
    alone = np.array([vec(featurizer, s) for s in real_structures[:8]])
    together = np.array(featurizer.featurize_many(real_structures, pbar=False))[:8]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    small = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", batch_sites=7, pbar=False)
    np.testing.assert_allclose(np.array(small.featurize_many(real_structures[:8], pbar=False)), alone, atol=1e-5)


@pytest.mark.parametrize("oxidation", ["zero", "guess"])
def test_encoding_processes_give_the_same_vectors(real_structures, oxidation):
    """Workers get checked arrays (guesses of oxidation states are left to them) and the pool outlives a call."""
    options = {"weights": "untrained", "device": "cpu", "oxidation": oxidation, "pbar": False}
    alone = DeepInfoMaxFeaturizer(**options)
    pooled = DeepInfoMaxFeaturizer(**options, n_jobs=2)
    entries = [*real_structures[:20], "not a structure", *real_structures[20:30]]
    expected = np.array(alone.featurize_many(entries, ignore_errors=True, pbar=False))
    got = np.array(pooled.featurize_many(entries, ignore_errors=True, pbar=False))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.isnan(got[20]).all() and not np.isnan(np.delete(got, 20, axis=0)).any()
    runner = pooled.runner_
    np.testing.assert_allclose(pooled.transform(real_structures[:12]), expected[:12], atol=1e-6)
    assert pooled.runner_ is runner  # one runner, and with it one lasting pool of workers


def test_device_auto_resolves(featurizer):
    f = DeepInfoMaxFeaturizer(weights="untrained").fit()
    assert f.device_.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert featurizer.device_.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(featurizer, real_structures):
    gpu = DeepInfoMaxFeaturizer(weights="untrained", device="cuda", pbar=False)
    np.testing.assert_allclose(
        np.array(gpu.featurize_many(real_structures, pbar=False)),
        np.array(featurizer.featurize_many(real_structures, pbar=False)),
        atol=1e-5,
    )


# -- physics invariances ----------------------------------------------------


def _rotated(structure, seed):
    rotation = Rotation.random(random_state=seed).as_matrix()
    return Structure(structure.lattice.matrix @ rotation.T, structure.species, structure.frac_coords)


def _permuted(structure, seed):
    order = np.random.default_rng(seed).permutation(len(structure))
    return Structure(structure.lattice, [structure.species[i] for i in order], structure.frac_coords[order])


def _translated(structure, seed):
    shift = np.random.default_rng(seed).random(3)
    return Structure(structure.lattice, structure.species, structure.frac_coords + shift)


def _supercell(structure, seed):
    matrices = [(2, 1, 1), (1, 2, 2), [[1, 1, 0], [-1, 1, 0], [0, 0, 1]]]
    return structure * matrices[seed % len(matrices)]


@pytest.mark.parametrize("transform", [_rotated, _permuted, _translated, _supercell])
def test_invariances(featurizer, examples, real_structures, transform):
    structures = list(examples.values()) + real_structures[:12]
    reference = np.array(featurizer.featurize_many(structures, pbar=False))
    moved = np.array(featurizer.featurize_many([transform(s, i) for i, s in enumerate(structures)], pbar=False))
    np.testing.assert_allclose(moved, reference, atol=1e-4)


def test_pooled_readout_is_the_layer_before_the_bottleneck(real_structures):
    from sklearn.base import clone

    from dim_featurizer.batching import collate
    from dim_featurizer.encoding import encode_structure
    from dim_featurizer.model import untrained_encoder

    pooled = DeepInfoMaxFeaturizer(weights="untrained", readout="pooled", pbar=False)
    assert clone(pooled).get_params()["readout"] == "pooled"
    got = np.array(pooled.featurize_many(real_structures[:6], pbar=False))
    assert got.shape == (6, 128) and pooled.feature_labels()[-1] == "DIM_127"
    encoder = untrained_encoder()
    readouts = encoder.readouts(collate([encode_structure(s, pooled.encoding_) for s in real_structures[:6]]))
    np.testing.assert_allclose(got, readouts["pooled"].numpy(), atol=1e-5)
    default = np.array(DeepInfoMaxFeaturizer(weights="untrained", pbar=False).featurize_many(real_structures[:6]))
    np.testing.assert_allclose(default, readouts["global_mu"].numpy(), atol=1e-5)


def test_label_prefix_keeps_two_featurisers_apart_in_a_multiple_featurizer(examples):
    from matminer.featurizers.base import MultipleFeaturizer

    from dim_featurizer import DeepInfoMaxFeaturizer

    trained = DeepInfoMaxFeaturizer(weights="untrained", seed=1, device="cpu", pbar=False)
    control = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False, label_prefix="DIM_control")
    assert control.feature_labels()[0] == "DIM_control_0" and trained.feature_labels()[0] == "DIM_0"
    both = MultipleFeaturizer([trained, control], iterate_over_entries=False)
    both.set_n_jobs(1)
    frame = pd.DataFrame({"structure": list(examples.values())})
    out = both.featurize_dataframe(frame, "structure", pbar=False)
    assert out.shape == (len(frame), 1 + 2 * len(trained.feature_labels()))
    assert np.allclose(
        out[control.feature_labels()].to_numpy(float), control.featurize_many(frame["structure"], pbar=False)
    )
