"""DIM inside matminer's and Python's parallel workflows: nothing hangs, and every way gives the serial vectors.

Each workflow of ``parallel_cases.py`` runs in its own process under a timeout, after DIM has already run in
that process (the state in which a forked child used to deadlock in torch's thread pool).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
import torch
from conftest import run_python
from parallel_cases import CASES

HERE = Path(__file__).parent
#: Seconds a case may take: each finishes in 4-12 s on 2 cores; a hang is stopped here.
TIMEOUT = 180


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_parallel_workflow_matches_serial(case):
    result = run_python([HERE / "parallel_cases.py", case], cwd=HERE, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-2000:]
    line = [row for row in result.stdout.splitlines() if row.startswith("{")][-1]
    assert json.loads(line)["max_abs_diff"] < 1e-5


def _child_report(structure):
    """Run in a forked worker: its torch threads, the runner it got, and a vector."""
    from dim_featurizer import DeepInfoMaxFeaturizer

    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    vector = featurizer.featurize(structure)
    runner = featurizer.runner()
    return torch.get_num_threads(), runner.owner_pid, runner.pool is None, vector


def test_forked_child_uses_one_thread_and_the_parents_runner(examples):
    from dim_featurizer import DeepInfoMaxFeaturizer

    examples = list(examples.values())
    parent = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False, n_jobs=2)
    expected = parent.featurize_many(examples, pbar=False)  # torch's pool (and the encoding pool) now live
    assert parent.runner().pool is not None
    with multiprocessing.get_context("fork").Pool(1) as pool:
        threads, owner, no_pool, vector = pool.apply_async(_child_report, (examples[0],)).get(timeout=TIMEOUT)
    assert threads == 1
    assert owner == os.getpid()  # loaded once, by the parent: the child did not reload the weights
    assert no_pool  # the parent's encoding workers are not the child's
    assert max(abs(a - b) for a, b in zip(vector, expected[0])) < 1e-5
    assert torch.get_num_threads() >= 1 and parent.runner().owner_pid == os.getpid()


def test_a_new_featuriser_in_the_loading_process_loads_its_own_runner(examples):
    from dim_featurizer import DeepInfoMaxFeaturizer

    first = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    second = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    assert first.runner() is not second.runner()  # sharing is for forked children only


def test_a_child_forked_after_cuda_started_resolves_auto_to_the_cpu(monkeypatch):
    from dim_featurizer.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "_is_in_bad_fork", lambda: True)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "_is_in_bad_fork", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda:0")
