"""The Dask path on a real 2-worker LocalCluster: same vectors as one process, weights loaded once per worker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

from dim_featurizer import DeepInfoMaxFeaturizer  # noqa: E402
from dim_featurizer.cluster import featurize_dask, featurize_partition  # noqa: E402
from dim_featurizer.errors import FeaturizationError  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def frame(real_structures):
    ids = [f"c{i}" for i in range(len(real_structures))]
    return pd.DataFrame({"structure": [s.to_json() for s in real_structures], "n": range(len(ids))}, index=ids)


@pytest.mark.slow
def test_dataframe_on_two_workers_equals_one_process(client, frame, real_structures):
    import dask.dataframe as dd

    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    expected = featurizer.transform(real_structures)
    ddf = dd.from_pandas(frame, npartitions=6)
    features = featurize_dask(ddf, featurizer)
    assert list(features.columns) == featurizer.feature_labels()
    result = features.compute()
    assert list(result.index) == list(ddf.index.compute())  # dask sorted the index; rows follow it
    np.testing.assert_allclose(result.loc[frame.index].to_numpy(), expected, atol=1e-5)
    # Six partitions (twice over), yet no worker loaded the weights more than once.
    from dim_featurizer import cluster

    featurize_dask(ddf, featurizer).compute()
    loads = client.run(lambda: cluster.LOADS)
    assert len(loads) == 2 and max(loads.values()) == 1 and sum(loads.values()) >= 1


@pytest.mark.slow
def test_bag_and_bad_entries(client, frame, real_structures):
    import dask.bag as db
    import dask.dataframe as dd

    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu")
    expected = featurizer.transform(real_structures[:10])
    rows = featurize_dask(db.from_sequence(list(frame["structure"][:10]), npartitions=3), featurizer).compute()
    np.testing.assert_allclose(np.asarray(rows, dtype=float), expected, atol=1e-5)

    bad = frame.copy()
    bad.iloc[7, 0] = str(real_structures[7])  # what dask's convert-string makes of a Structure object
    ddf = dd.from_pandas(bad, npartitions=3)
    with pytest.raises(FeaturizationError, match="cannot read c7.*to_json"):
        featurize_dask(ddf, featurizer).compute()
    table = featurize_dask(ddf, featurizer, ignore_errors=True).compute()
    assert len(table) == len(frame) and table["error"].notna().sum() == 1
    assert np.isnan(table.loc["c7", "DIM_0"]) and table.drop(index="c7")["DIM_0"].notna().all()


def test_partition_function_without_a_cluster(examples):
    params = DeepInfoMaxFeaturizer(weights="untrained", device="cpu").get_params()
    table = featurize_partition(pd.Series(list(examples.values()), index=list(examples)), params)
    assert list(table.index) == list(examples) and table.shape == (8, 128)
    with pytest.raises(KeyError, match="no column 'cif'"):
        import dask.dataframe as dd

        featurize_dask(dd.from_pandas(pd.DataFrame({"x": [1]}), npartitions=1), column="cif")


@pytest.mark.slow
def test_n_jobs_inside_daemonic_dask_workers_falls_back_to_one_process(client, frame, real_structures):
    """Dask workers are daemonic and may not start encoding processes: n_jobs=2 must still work there."""
    import dask.dataframe as dd

    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", n_jobs=2)
    result = featurize_dask(dd.from_pandas(frame.iloc[:30], npartitions=2), featurizer).compute()
    expected = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False).transform(real_structures[:30])
    np.testing.assert_allclose(result.loc[frame.index[:30]].to_numpy(), expected, atol=1e-5)
    assert client.run(lambda: __import__("multiprocessing").current_process().daemon)  # the premise holds
