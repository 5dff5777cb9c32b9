"""The leave-family-out probe: the committed family rule, pretraining without the families, L2-SP, the probe
and its label-free diagnosis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from dim_featurizer.train.build import build_setup
from dim_featurizer.train.cache import encode_dataset
from dim_featurizer.train.config import TrainConfig
from dim_featurizer.train.loop import Trainer
from dim_featurizer.train.probes import recoverability

from dim_featurizer.bench.families import FAMILIES, assign_families, family_of, read_families
from dim_featurizer.bench.familyprobe import CONTROL, PLAN, family_probe, family_summary, score_split
from dim_featurizer.encoding import EncodingConfig
from dim_featurizer.model import untrained_encoder
from dim_featurizer.readers import read_frame, read_split


def test_the_rule_puts_a_crystal_in_the_first_family_it_fits():
    assert family_of(["Li", "F"], "AB") == "fluorides"
    assert family_of(["N", "F"], "AB3") == "fluorides"  # the first family wins: families are disjoint
    assert family_of(["Ga", "N"], "AB") == "nitrides"
    assert family_of(["Zn", "Se"], "AB") == "selenides-tellurides"
    assert family_of(["Pt", "Fe"], "AB") == "precious-intermetallics"
    assert family_of(["Pt", "Si"], "AB") == ""  # Si is not a metal
    assert family_of(["Cu", "Fe", "S"], "ABC2") == "abc2"
    assert family_of(["Na", "Cl"], "AB") == ""
    assert len(FAMILIES) >= 5


def test_the_committed_family_table_follows_the_rule_on_the_sample(sample_dir):
    table = read_families(ROOT / "runs" / "families" / "families.csv")
    assert set(table) == {name for name, _, _ in FAMILIES}
    train = read_split(sample_dir / "mp2018_folds.json")["train"]
    frame = read_frame(sample_dir / "mp2018_e_form_gap.json.gz", train)
    expected = assign_families(frame["structure"])
    committed = table.reindex(expected.index).fillna("")
    assert (expected != "").sum() > 10
    assert (committed == expected).all(), expected[committed != expected].head()


def test_the_scored_share_is_a_fifth_and_fixed():
    pool, score = score_split(1000, seed=0)
    assert len(score) == 200 and len(pool) == 800 and not set(pool) & set(score)
    assert np.array_equal(score, score_split(1000, seed=0)[1])


@pytest.fixture(scope="module")
def structures(real_structures):
    return pd.Series(real_structures, index=[f"c{i}" for i in range(len(real_structures))])


def test_pretraining_leaves_out_the_excluded_ids(structures, tmp_path):
    from dim_featurizer.train.run import prepare_setup

    drop = list(structures.index[:15])
    (tmp_path / "families.csv").write_text("id,family\n" + "".join(f"{i},f\n" for i in drop))
    setup, info = prepare_setup(structures, exclude_ids=tmp_path / "families.csv", cache_dir=tmp_path, pbar=False)
    assert not set(drop) & set(setup.dataset.ids)
    assert info["data"]["left_out"]["ids"] == 15 and info["data"]["offered"] == len(structures) - 15


def test_the_anchor_keeps_the_encoder_near_its_start(structures, tmp_path):
    dataset = encode_dataset(structures, EncodingConfig(), pbar=False)
    distances = {}
    for anchor in (0.0, 1000.0):
        config = TrainConfig(epochs=1, batch_sites=80, val_fraction=0.2, anchor=anchor, lr=1e-3)
        trainer = Trainer(build_setup(dataset, config, EncodingConfig(), device="cpu"), tmp_path / str(anchor))
        trainer.fit(pbar=False)
        distances[anchor] = trainer.state["history"][-1]["distance_from_start"]
    assert 0 < distances[1000.0] < 0.5 * distances[0.0]


def test_family_probe_is_paired_resumable_and_scored_against_the_control(structures, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"structure": structures, "y": rng.normal(size=len(structures))})
    sets = {"a": frame.iloc[:30], "b": frame.iloc[30:]}
    encoders = {"kept": untrained_encoder(seed=1), CONTROL: untrained_encoder(seed=0)}
    fits = family_probe(encoders, sets, tmp_path, combos=["kept+start", "start+magpie"], peers=["magpie"])
    assert set(fits["features"]) == {"kept", CONTROL, "kept+start", "magpie", "start+magpie"}
    per_set = fits.groupby(["family", "features"]).size()
    assert (per_set == sum(draws for _, draws in PLAN.values())).all()
    assert (fits["budget"] <= fits["n_pool"]).all()  # a budget above the pool takes the whole pool
    summary = family_summary(fits)
    assert np.allclose(summary.loc[summary["features"] == CONTROL, "vs_control"], 1.0)
    saved = []
    options = {"combos": ["kept+start", "start+magpie"], "peers": ["magpie"]}
    again = family_probe(encoders, sets, tmp_path, **options, done=fits, save=saved.append)
    assert len(again) == len(fits) and not saved  # nothing left to fit
    partial = fits[fits["family"] == "a"]
    resumed = family_probe(encoders, sets, tmp_path, **options, done=partial)
    merged = resumed.sort_values(list(resumed.columns[:5])).reset_index(drop=True)
    assert np.allclose(merged["mae"], fits.sort_values(list(fits.columns[:5]))["mae"])


def test_recoverability_reads_geometry_and_composition(structures):
    dataset = encode_dataset(structures, EncodingConfig(), pbar=False)
    measures = recoverability(untrained_encoder(), dataset, np.arange(len(dataset)))
    assert measures["environment/nn_distance"] > 0.5  # the environment layer sees the distances
    assert measures["embedding/nn_distance"] < measures["environment/nn_distance"]
    assert measures["mean_embedding/magpie"] > 0.3
    assert 1 <= measures["participation_ratio"] <= 128 and 0 < measures["top5_variance"] <= 1


def test_substituted_copies_swap_within_groups_and_are_seeded(real_structures):
    from dim_featurizer.train.substitution import COPY_MARK, group_partners, substituted_copies
    from pymatgen.core import Element

    assert "F" in group_partners()["Cl"] and "Li" not in group_partners()["H"] and "Na" in group_partners()["K"]
    series = pd.Series(real_structures[:10], index=[f"c{i}" for i in range(10)])
    copies = substituted_copies(series, 2, seed=0)
    assert list(copies.index[:2]) == [f"c0{COPY_MARK}0", f"c0{COPY_MARK}1"]
    again = substituted_copies(series, 2, seed=0)
    assert all(a == b for a, b in zip(copies, again))
    for (key, copy), original in zip(copies.items(), np.repeat(series.to_numpy(), 2)):
        assert len(copy) == len(original)
        assert np.allclose(copy.frac_coords, original.frac_coords)
        before = [Element(e.symbol) for e in original.composition.elements]
        after = [Element(e.symbol) for e in copy.composition.elements]
        assert len(set(after)) == len(set(before))  # distinct elements stay distinct
        for old, new in zip(before, after):
            assert old == new or new.symbol in group_partners()[old.symbol], key
    assert any(c.composition != o.composition for c, o in zip(copies, np.repeat(series.to_numpy(), 2)))


@pytest.mark.slow
def test_family_probe_command_on_the_sample(sample_dir, tmp_path):
    import json

    from dim_featurizer.train.cli import main

    from dim_featurizer.bench.cli import main as bench_main

    data, split = str(sample_dir / "mp2018_e_form_gap.json.gz"), str(sample_dir / "mp2018_folds.json")
    frame = read_frame(data, read_split(split)["train"])
    family = assign_families(frame["structure"])
    table = tmp_path / "families.csv"
    family[family != ""].rename_axis("id").reset_index().to_csv(table, index=False)
    common = [data, "--split", split, "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--batch-sites", "300"]
    common += ["--val-fraction", "0.2", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--device", "cpu"]
    # A run that pretrained on the families is refused: the probe would not measure transfer.
    assert main(["fit", *common]) == 0
    assert bench_main(["probe", *common, "--families", str(table)]) == 1
    common[4] = str(tmp_path / "left-out")
    assert main(["fit", *common, "--exclude-ids", str(table)]) == 0
    probe = ["probe", *common, "--exclude-ids", str(table), "--families", str(table), "--diagnose"]
    assert bench_main([*probe, "--peers", "magpie"]) == 0
    fits = pd.read_csv(tmp_path / "left-out" / "familyprobe.csv")
    assert set(fits["family"]) >= set(family[family != ""]) | {"phonons"}
    assert set(fits["features"]) == {"kept", "start", "kept+start", "magpie"} and np.isfinite(fits["mae"]).all()
    record = json.loads((tmp_path / "left-out" / "familyprobe.json").read_text())
    assert record["test_ids_read"] == 0 and record["control"] == CONTROL
    assert (tmp_path / "left-out" / "familydiagnosis.csv").is_file()
    before = len(fits)
    assert bench_main([*probe, "--peers", "magpie"]) == 0  # resumed: nothing is fitted twice
    assert len(pd.read_csv(tmp_path / "left-out" / "familyprobe.csv")) == before
