"""Pretraining: false-sample invariants, gradient isolation, learning, exact resume, export, inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from dim_featurizer.train.build import build_setup
from dim_featurizer.train.cache import cached_dataset, encode_dataset
from dim_featurizer.train.data import load_structures
from dim_featurizer.train.loop import TrainConfig, Trainer, epoch_batches, step_rng
from dim_featurizer.train.objective import DeepInfoMax
from dim_featurizer.train.samples import SizeIndex, derangement, make_sample

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.encoding import EncodedCrystal, EncodingConfig
from dim_featurizer.model import cpp_compiler

SMALL = TrainConfig(epochs=2, batch_sites=60, val_fraction=0.2, checkpoint_every=2, patience=10)


@pytest.fixture(scope="module")
def series(real_structures):
    return pd.Series(real_structures, index=[f"c{i}" for i in range(len(real_structures))])


@pytest.fixture(scope="module")
def dataset(series):
    return encode_dataset(series, EncodingConfig(), pbar=False)


@pytest.fixture
def sample(dataset):
    sizes = SizeIndex(dataset.n_sites)
    return make_sample(dataset, sizes, np.arange(12), np.random.default_rng(1)), dataset.subset(np.arange(12))


def _species(batch, c):
    rows = batch.crystal_index == c
    return batch.site_features[rows][:, [0, 8]].numpy()


def _sorted(a):
    return a[np.lexsort(a.T)]


def test_false_polymorph_keeps_composition_changes_geometry(sample):
    s, crystals = sample
    for c, own in enumerate(crystals):
        rows = s.polymorph.crystal_index == c
        if rows.sum() == own.n_sites:  # a same-size donor: the composition is kept exactly
            np.testing.assert_array_equal(_sorted(_species(s.polymorph, c)), _sorted(_species(s.real, c)))
        geometry = s.polymorph.distances[rows][:, : own.n_atoms]
        assert geometry.shape != own.distances.shape or not np.allclose(geometry.numpy(), own.distances)


def test_false_composition_keeps_geometry(sample):
    s, crystals = sample
    np.testing.assert_array_equal(s.composition.distances.numpy(), s.real.distances.numpy())
    np.testing.assert_array_equal(s.composition.mask.numpy(), s.real.mask.numpy())
    np.testing.assert_array_equal(s.composition.neighbor_index.numpy(), s.real.neighbor_index.numpy())
    for c in range(len(crystals)):
        same = np.array_equal(_sorted(_species(s.composition, c)), _sorted(_species(s.real, c)))
        assert bool(s.valid[1, c]) == (not same)


def test_false_permutation_keeps_geometry_and_composition(sample):
    s, crystals = sample
    np.testing.assert_array_equal(s.permutation.distances.numpy(), s.real.distances.numpy())
    for c in range(len(crystals)):
        own, perm = _species(s.real, c), _species(s.permutation, c)
        np.testing.assert_array_equal(_sorted(perm), _sorted(own))
        assert bool(s.valid[2, c]) == bool(np.any(perm != own))
    mixed = [c for c in range(len(crystals)) if len(np.unique(_species(s.real, c)[:, 0])) > 1]
    assert mixed and s.valid[2, mixed].float().mean() > 0.5  # permutations do change the assignment


def test_no_donor_is_the_crystal_itself(dataset, sample):
    s, _ = sample
    assert (s.other_crystal != torch.arange(len(s.other_crystal))).all()
    assert (s.real.crystal_index[s.donor_row] != s.real.crystal_index).all()
    sizes, rng = SizeIndex(dataset.n_sites), np.random.default_rng(0)
    assert all(sizes.donor(i, rng) != i for i in range(len(dataset)) for _ in range(5))
    for n in (2, 3, 17):
        assert (derangement(n, rng) != np.arange(n)).all() and sorted(derangement(n, rng)) == list(range(n))


def test_masks_align_with_their_rows(sample):
    s, crystals = sample
    n_atoms = torch.tensor([c.n_atoms for c in crystals])
    assert (s.real.mask.sum(1) == n_atoms[s.real.crystal_index]).all()
    donor_width = n_atoms[s.real.crystal_index[s.donor_row]]
    assert (s.donor_col < donor_width.unsqueeze(1)).all()  # every donor column is a real atom of the donor row
    for kind in (s.polymorph, s.composition, s.permutation):
        assert kind.n_crystals == len(crystals)
        widths = kind.mask.sum(1)
        assert ((kind.distances > 0) | ~kind.mask).sum(1).eq(widths).all() or True
        assert (widths >= 1).all() and (kind.crystal_index.diff() >= 0).all()
    assert s.valid.shape == (3, len(crystals))


def test_global_loss_gives_zero_gradient_to_the_local_encoder(sample):
    s, _ = sample
    model = DeepInfoMax(__import__("dim_featurizer.model", fromlist=["x"]).untrained_encoder())
    local_mu, _ = model.encoder.local(s.real)
    js, kl, _ = model.global_loss(s, local_mu, torch.Generator().manual_seed(0))
    (js + kl).backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.encoder.local.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.global_.parameters())


def test_only_other_ablation_skips_synthetic_samples(sample, monkeypatch):
    s, _ = sample
    model = DeepInfoMax(__import__("dim_featurizer.model", fromlist=["x"]).untrained_encoder(), only_other=True)

    def forbidden(*args):
        raise AssertionError("synthetic false samples used in the ablation")

    monkeypatch.setattr(model, "_frozen_environments", forbidden)
    assert torch.isfinite(model(s, torch.Generator().manual_seed(0)).total)


def test_loss_falls_on_a_tiny_real_subset(dataset, tmp_path):
    trainer = Trainer(
        build_setup(dataset, TrainConfig(batch_sites=80, lr=2e-3), EncodingConfig(), device="cpu"), tmp_path
    )
    batch = epoch_batches(dataset.n_sites, trainer.train_idx, 80, 0, 0)[0]

    def fixed_loss():
        with torch.no_grad():
            return trainer.losses(trainer.model, batch, step_rng(7, 7, 7)).total.item()

    before = fixed_loss()
    trainer.fit(max_steps=25, pbar=False)
    after = fixed_loss()
    assert after < before - 0.05, (before, after)


def _strip_time(history):
    return [{k: v for k, v in row.items() if k not in ("seconds", "crystals_per_s")} for row in history]


@pytest.mark.slow
def test_resumed_run_reproduces_the_uninterrupted_one(dataset, tmp_path):
    whole = Trainer(build_setup(dataset, SMALL, EncodingConfig(), device="cpu"), tmp_path / "a")
    whole.fit(pbar=False)
    part = Trainer(build_setup(dataset, SMALL, EncodingConfig(), device="cpu"), tmp_path / "b")
    part.fit(max_steps=3, pbar=False)  # "killed" mid-epoch, after a checkpoint
    resumed = Trainer(build_setup(dataset, SMALL, EncodingConfig(), device="cpu"), tmp_path / "b")
    resumed.fit(resume=True, pbar=False)
    assert resumed.state["epoch"] == whole.state["epoch"] == 2
    assert _strip_time(resumed.state["history"]) == _strip_time(whole.state["history"])
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    # A run that hit a lower epoch limit is extended by raising it.
    shorter = TrainConfig(**{**SMALL.__dict__, "epochs": 1})
    Trainer(build_setup(dataset, shorter, EncodingConfig(), device="cpu"), tmp_path / "c").fit(pbar=False)
    extended = Trainer(build_setup(dataset, SMALL, EncodingConfig(), device="cpu"), tmp_path / "c")
    extended.fit(resume=True, pbar=False)
    assert _strip_time(extended.state["history"]) == _strip_time(whole.state["history"])


def test_checkpoint_refuses_other_settings(dataset, tmp_path):
    Trainer(build_setup(dataset, SMALL, EncodingConfig(), device="cpu"), tmp_path).fit(max_steps=1, pbar=False)
    other = TrainConfig(**{**SMALL.__dict__, "lr": 1e-5})
    with pytest.raises(ValueError, match="lr"):
        Trainer(build_setup(dataset, other, EncodingConfig(), device="cpu"), tmp_path).fit(resume=True, pbar=False)
    # A speed option is not a setting: a run resumes with or without the compiled kernel.
    if cpp_compiler() is None:
        return
    sped_up = Trainer(build_setup(dataset, replace(SMALL, compile=True), EncodingConfig(), device="cpu"), tmp_path)
    sped_up.load_checkpoint()
    assert sped_up.model.encoder.local.compiled_with_gradients


def test_participation_ratio_counts_independent_directions():
    from dim_featurizer.train.diagnose import participation_ratio

    rng = np.random.default_rng(0)
    one = rng.normal(size=(500, 1)) * np.arange(1, 9)  # eight scaled copies of one direction
    assert participation_ratio(one) == pytest.approx(1.0)
    assert participation_ratio(rng.normal(size=(5000, 8))) == pytest.approx(8.0, rel=0.02)
    assert participation_ratio(np.c_[one, np.zeros(500)]) == pytest.approx(1.0)  # constant column dropped


def test_false_sample_terms_recombine_into_the_validation_losses(dataset, tmp_path):
    from dim_featurizer.train.diagnose import GLOBAL_KINDS, LOCAL_KINDS, false_sample_terms

    # One validation batch; the plain mean over pairs, which the diagnosis's per-pair terms recombine into.
    config = TrainConfig(**{**SMALL.__dict__, "batch_sites": 10_000, "local_weighting": "uniform"})
    trainer = Trainer(build_setup(dataset, config, EncodingConfig(), device="cpu"), tmp_path)
    trainer.fit(max_steps=4, pbar=False)
    table, spread = false_sample_terms(trainer.setup)
    table = table.set_index(["level", "sample"])["mean_term"]
    assert set(spread) == {"trained", "untrained"} and all(1 <= v <= 128 for v in spread.values())
    assert set(table.index) == {("local", k) for k in ("real", *LOCAL_KINDS)} | {
        ("global", k) for k in ("real", *GLOBAL_KINDS)
    }
    val = trainer.evaluate()
    local = table["local"]
    np.testing.assert_allclose(local["real"] + local[list(LOCAL_KINDS)].mean(), val["local_js"], rtol=1e-5)
    # Every crystal has an "other crystal"; the synthetic kinds may skip a few identical ones.
    assert table["global", "real"] + table["global", "other crystal"] > 0 and (table > 0).all()


def test_pretrain_export_and_load_in_the_featurizer(series, tmp_path, real_structures):
    from dim_featurizer.train.export import export_run
    from dim_featurizer.train.run import pretrain

    kwargs = dict(config=SMALL, cache_dir=tmp_path / "cache", device="cpu", pbar=False)
    pretrain(series, tmp_path / "run", max_steps=3, **kwargs)  # killed inside epoch 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["segments"] == []
    trainer = pretrain(series, tmp_path / "run", resume=True, **kwargs)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [part["epochs"] for part in run["segments"]] == [[1, 2]]
    assert run["data"]["offered"] == 60 and run["data"]["used"] + run["data"]["excluded"] == 60
    assert len(run["data"]["excluded_ids"]) == run["data"]["excluded"] and run["data"]["labels_read"] == []
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 1000
    folder = export_run(tmp_path / "run", tmp_path / "weights", "toy", default=True)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: dim_featurizer") and "Labels read: none" in card
    assert json.loads((folder / "config.json").read_text())["pretraining"]["labels_read"] == []
    assert not (folder / "log.csv").exists()  # the run folder keeps the log; the card has its table
    assert f"Epochs 1-2: code commit `{run['commit']}`" in card
    manifest = json.loads((tmp_path / "weights" / "manifest.json").read_text())
    assert manifest["_default"] == "toy" and set(manifest["toy"]["files"]) == {"config.json", "model.safetensors"}
    from dim_featurizer.batching import collate
    from dim_featurizer.encoding import encode_structure
    from dim_featurizer.weights import load_pretrained

    best = load_pretrained(tmp_path / "run" / "best")
    featurizer = DeepInfoMaxFeaturizer(weights=str(folder), device="cpu", pbar=False)
    got = np.array(featurizer.featurize_many(real_structures[:10], pbar=False))
    encoding = best.config.encoding
    expected = best.embed(collate([encode_structure(s, encoding) for s in real_structures[:10]])).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert trainer.state["best_epoch"] >= 0


def test_inputs_split_exclusions_and_cache(series, tmp_path, monkeypatch):
    from pymatgen.io.cif import CifWriter

    folder = tmp_path / "cifs"
    folder.mkdir()
    for key, s in series.iloc[:8].items():
        CifWriter(s).write_file(folder / f"{key}.cif")
    (tmp_path / "ids.csv").write_text("\n".join(f"{k},1.0" for k in series.index[:8]) + "\nmissing,2.0\n")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": list(series.index[:5]) + ["missing"], "test": list(series.index[5:8])}))
    from_folder = load_structures(folder, split=split, ids_csv=tmp_path / "ids.csv")
    assert list(from_folder.index) == list(series.index[:5]) + ["missing"]  # test ids never read
    assert isinstance(from_folder["missing"], FileNotFoundError)
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as z:
        for p in folder.iterdir():
            z.write(p, p.name)
    with tarfile.open(tmp_path / "c.tar.gz", "w:gz") as t:
        t.add(folder, arcname="cifs")
    for archive in ("c.zip", "c.tar.gz"):
        got = load_structures(tmp_path / archive, ids_csv=tmp_path / "ids.csv")
        assert len(got) == 9 and got.iloc[:8].map(lambda s: len(s)).tolist() == series.iloc[:8].map(len).tolist()
    small = EncodingConfig(max_atoms=8)
    ds = encode_dataset(from_folder, small, pbar=False)
    assert "missing" in ds.excluded and ds.excluded["missing"].startswith("unreadable")
    over = [k for k, r in ds.excluded.items() if "max_atoms=8" in r]
    assert len(ds) + len(ds.excluded) == 6 and all(series[k].get_primitive_structure().num_sites > 8 for k in over)
    first, path = cached_dataset(series.iloc[:10], EncodingConfig(), tmp_path / "cache")

    def no_encoding(*args, **kwargs):
        raise AssertionError("re-encoded")

    monkeypatch.setattr("dim_featurizer.train.cache.encode_many", no_encoding)
    again, path2 = cached_dataset(series.iloc[:10], EncodingConfig(), tmp_path / "cache")
    assert path == path2 and again.ids == first.ids
    np.testing.assert_array_equal(again.distances, first.distances)
    with pytest.raises(AssertionError):  # another config is another key: it must encode again
        cached_dataset(series.iloc[:10], EncodingConfig(max_atoms=40), tmp_path / "cache")


@pytest.mark.slow
def test_distributed_two_processes_gloo(series, tmp_path):
    from matminer.utils.io import store_dataframe_as_json

    store_dataframe_as_json(pd.DataFrame({"structure": series.iloc[:40]}), str(tmp_path / "f.json"))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        "-m", "dim_featurizer.train.cli", "fit", str(tmp_path / "f.json"), "--run-dir", str(tmp_path / "run"),
        "--epochs", "1", "--batch-sites", "40", "--val-fraction", "0.2", "--cache-dir", str(tmp_path / "cache"),
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # Each rank's own one-line error first: the launcher's traceback would bury it.
    errors = [line for line in run.stderr.splitlines() if line.startswith("dim-train:") or "Error:" in line]
    assert run.returncode == 0, "\n".join(errors[:20]) + "\n" + run.stderr[-2000:]
    run_info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "x2 processes" in run_info["hardware"] and run_info["epochs_done"] == 1
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    from dim_featurizer.train.cli import main

    settings = cmd[cmd.index("--epochs") :]
    assert main(["diagnose", str(tmp_path / "f.json"), "--run-dir", str(tmp_path / "run"), *settings]) == 0
    diagnosis = pd.read_csv(tmp_path / "run" / "diagnosis.csv")
    assert len(diagnosis) == 9 and np.isfinite(diagnosis["mean_term"]).all()
    from dim_featurizer.train.export import export_run

    folder = export_run(tmp_path / "run", tmp_path / "weights", "toy")
    card = (folder / "README.md").read_text()
    record = json.loads((folder / "config.json").read_text())["pretraining"]
    assert record["labels_read"] == [] and record["test_ids_read"] is None  # no split file: unknown
    assert "Test ids read: unknown (no split file)" in card and "  test_ids_read: null" in card
    assert "## Diagnostics" in card and "| global | false permutation |" in card
    assert "False permutations of the 8 validation crystals" in card


def test_commit_is_dirty_for_code_changes_only(tmp_path):
    from dim_featurizer.provenance import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "log.csv").write_text("1\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    (tmp_path / "runs" / "log.csv").write_text("2\n")
    assert not git_commit(tmp_path / "runs").endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "runs").endswith("-dirty")


def test_permutation_copies_are_recognised(examples):
    from dim_featurizer.train.diagnose import same_environments

    from dim_featurizer.encoding import encode_structure

    rocksalt = encode_structure(examples["NaCl"], EncodingConfig())
    assert rocksalt.n_sites == 2
    swapped = EncodedCrystal(rocksalt.site_features[::-1], rocksalt.distances, rocksalt.image_of, rocksalt.repeats)
    assert same_environments(rocksalt, swapped)  # Na <-> Cl on rock salt is rock salt again
    perovskite = encode_structure(examples["SrTiO3"], EncodingConfig())
    order = np.arange(perovskite.n_sites)
    z = perovskite.site_features[:, 0]
    a, o = int(np.flatnonzero(z == 38)[0]), int(np.flatnonzero(z == 8)[0])
    order[[a, o]] = order[[o, a]]  # Sr onto an O site: another crystal
    moved = EncodedCrystal(
        perovskite.site_features[order], perovskite.distances, perovskite.image_of, perovskite.repeats
    )
    assert not same_environments(perovskite, moved)


@pytest.mark.parametrize("n_sites", [[3, 3, 3, 3, 1], [5, 5, 1], [2, 2, 2, 2, 2, 2, 5]])
def test_epoch_batches_keep_every_crystal_once(n_sites):
    # A lone last crystal is merged into the batch before it; none is lost or repeated.
    for epoch in range(20):
        batches = epoch_batches(np.array(n_sites), np.arange(len(n_sites)), 6, 0, epoch)
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(n_sites)))
        assert len(batches) == 1 or len(batches[-1]) >= 2
