"""Pretraining options (local weighting, supercell permutation, reconstruction) and the probes, on tiny real data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from dim_featurizer.train.build import build_setup
from dim_featurizer.train.cache import encode_dataset
from dim_featurizer.train.config import TrainConfig
from dim_featurizer.train.loop import Trainer
from dim_featurizer.train.objective import DeepInfoMax
from dim_featurizer.train.probes import label_free_probes, linear_r2
from dim_featurizer.train.samples import (
    SizeIndex,
    column_species,
    false_permutation,
    false_vacancy,
    make_sample,
)

from dim_featurizer.encoding import EncodingConfig
from dim_featurizer.model import untrained_encoder


@pytest.fixture(scope="module")
def dataset(real_structures):
    series = pd.Series(real_structures, index=[f"c{i}" for i in range(len(real_structures))])
    return encode_dataset(series, EncodingConfig(), pbar=False)


@pytest.fixture
def sample(dataset):
    return make_sample(dataset, SizeIndex(dataset.n_sites), np.arange(10), np.random.default_rng(3), "supercell")


def test_distance_weighting_is_the_per_site_then_per_crystal_mean(sample):
    model = DeepInfoMax(untrained_encoder(), local_weighting="distance")
    mu, logvar = model.encoder.local(sample.real)
    generator = torch.Generator().manual_seed(0)
    true, false, mask = model.local_terms(sample, mu, logvar, generator)
    got = model.local_loss(sample, mu, logvar, torch.Generator().manual_seed(0))
    batch = sample.real
    own = batch.distances.numpy()
    donor = batch.distances[sample.donor_row.unsqueeze(1), sample.donor_col].numpy()
    true, false, mask = true.detach().numpy(), false.detach().numpy(), mask.numpy()
    per_crystal = {}

    def mean(term, d, row):
        w = mask[row] / (d[row] + 1) ** 2
        return (term[row] * w).sum() / w.sum()

    for row in range(len(own)):  # written out site by site, as the authors' code reads
        value = mean(true, own, row) + np.mean([mean(false[k], d, row) for k, d in enumerate((donor, donor, own))])
        per_crystal.setdefault(int(batch.crystal_index[row]), []).append(value)
    expected = np.mean([np.mean(v) for v in per_crystal.values()])
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    uniform = DeepInfoMax(model.encoder, local_weighting="uniform").local_loss(sample, mu, logvar, generator)
    assert abs(float(uniform.detach()) - float(got.detach())) > 1e-4  # the two weightings really differ


def test_supercell_permutation_keeps_centres_geometry_and_composition(dataset):
    rng = np.random.default_rng(0)
    changed = 0
    for i in range(len(dataset)):
        own = dataset.crystal(i)
        perm = false_permutation(own, rng, "supercell")
        np.testing.assert_array_equal(perm.distances, own.distances)
        np.testing.assert_array_equal(perm.image_of[: own.n_sites], own.image_of[: own.n_sites])  # centres kept
        assert sorted(perm.image_of.tolist()) == sorted(own.image_of.tolist())  # same atoms, same composition
        if own.n_atoms == own.n_sites:
            np.testing.assert_array_equal(perm.image_of, own.image_of)  # nothing to permute
        changed += bool(np.any(column_species(perm) != column_species(own)))
    assert changed > len(dataset) // 2


def test_supercell_permutations_are_masked_when_they_change_nothing(sample, dataset):
    for c, index in enumerate(range(10)):
        own = dataset.crystal(index)
        rows = sample.permutation.crystal_index == c
        species = sample.permutation.site_features[rows][:, [0, 8]].numpy()
        neighbours = sample.permutation.neighbor_index[rows][0, : own.n_atoms] - int(np.flatnonzero(rows)[0])
        differs = bool(np.any(species[neighbours.numpy()] != column_species(own)))
        assert bool(sample.valid[2, c]) == differs


def test_false_vacancy_removes_one_image_atom_and_keeps_everything_else(dataset):
    rng = np.random.default_rng(0)
    for index in range(len(dataset)):
        own = dataset.crystal(index)
        hole = false_vacancy(own, rng)
        if own.n_atoms == own.n_sites:  # nothing but the unique sites: nothing to remove, masked
            assert hole is own
            continue
        assert hole.n_atoms == own.n_atoms - 1 and hole.n_sites == own.n_sites
        np.testing.assert_array_equal(hole.site_features, own.site_features)
        # Exactly one image column (never a centre, columns 0..n-1) is gone; the rest keep their order.
        removed = [
            j
            for j in range(own.n_sites, own.n_atoms)
            if np.array_equal(np.delete(own.distances, j, axis=1), hole.distances)
            and np.array_equal(np.delete(own.image_of, j), hole.image_of)
        ]
        assert removed, index


def test_vacancies_add_a_fourth_global_false_kind_masked_where_nothing_is_removed(dataset, tmp_path):
    sizes, indices = SizeIndex(dataset.n_sites), np.arange(10)
    plain = make_sample(dataset, sizes, indices, np.random.default_rng(3), "supercell")
    holes = make_sample(dataset, sizes, indices, np.random.default_rng(3), "supercell", vacancies=True)
    # The vacancy draws come last: every other sample is that of a run without them.
    assert torch.equal(plain.permutation.neighbor_index, holes.permutation.neighbor_index)
    assert plain.vacancy is None and len(plain.false_crystals()) == 3 and plain.valid.shape == (3, 10)
    assert len(holes.false_crystals()) == 4 and holes.valid.shape == (4, 10)
    for c in range(10):
        own = dataset.crystal(c)
        assert int((holes.vacancy.crystal_index == c).sum()) == own.n_sites
        assert bool(holes.valid[3, c]) == (own.n_atoms > own.n_sites)
    model = DeepInfoMax(untrained_encoder())
    mu, _ = model.encoder.local(holes.real)
    _, false_terms, weights, _, _ = model.global_terms(holes, mu, torch.Generator().manual_seed(0))
    assert false_terms.shape == weights.shape == (5, 10)
    config = TrainConfig(epochs=1, batch_sites=80, val_fraction=0.2, vacancies=True)
    trainer = Trainer(build_setup(dataset, config, EncodingConfig(), device="cpu"), tmp_path)
    trainer.fit(pbar=False)
    assert np.isfinite(trainer.state["history"][0]["train_total"])
    from dim_featurizer.train.diagnose import VACANCY_KIND, false_sample_terms

    table, _ = false_sample_terms(trainer.setup)
    assert VACANCY_KIND in set(table[table["level"] == "global"]["sample"])


def test_reconstruction_trains_both_decoders_and_checkpoints_must_state_every_option(dataset, tmp_path):
    config = TrainConfig(epochs=1, batch_sites=80, val_fraction=0.2, reconstruction=1.0, local_weighting="distance")
    trainer = Trainer(build_setup(dataset, config, EncodingConfig(), device="cpu"), tmp_path / "rec")
    assert hasattr(trainer.model, "local_decoder") and hasattr(trainer.model, "global_decoder")
    batch = np.arange(8)
    losses = trainer.losses(trainer.model, batch, np.random.default_rng(0))
    losses.reconstruction.backward()
    assert trainer.model.encoder.local.site_embed[0].weight.grad.abs().sum() > 0  # reaches the local encoder
    assert trainer.model.encoder.global_.mu.weight.grad.abs().sum() > 0
    trainer.fit(pbar=False)
    assert trainer.state["history"][0]["train_reconstruction"] > 0
    plain = TrainConfig(epochs=1, batch_sites=80, val_fraction=0.2, reconstruction=0.0)
    assert not hasattr(build_setup(dataset, plain, EncodingConfig(), device="cpu").model, "local_decoder")
    # A checkpoint that does not state every option is refused, naming the options it lacks.
    Trainer(build_setup(dataset, plain, EncodingConfig(), device="cpu"), tmp_path / "old").fit(max_steps=1, pbar=False)
    blob = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    saved = {k: v for k, v in json.loads(blob["config"]).items() if k not in ("local_weighting", "reconstruction")}
    blob["config"] = json.dumps(saved)
    torch.save(blob, tmp_path / "old" / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"other settings: \['local_weighting', 'reconstruction'\]"):
        Trainer(build_setup(dataset, plain, EncodingConfig(), device="cpu"), tmp_path / "old").load_checkpoint()


def test_linear_r2_sees_what_is_linearly_there():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 3)
    x = rng.normal(size=(300, 5))
    assert linear_r2(x, x[:, 0] * 2 + 1, groups) > 0.99
    assert linear_r2(x, rng.normal(size=300), groups) < 0.1


def test_label_free_probes_on_real_crystals(dataset):
    probes = label_free_probes(untrained_encoder(), dataset, np.arange(len(dataset)))
    assert set(probes) >= {"centre_Z_r2", "centre_EN_r2", "shell_EN_r2", "nn_distance_r2", "mean_properties_r2"}
    assert probes["centre_Z_r2"] > 0.8 and probes["centre_EN_r2"] > 0.8  # a random network keeps the centre atom
    assert 0 <= probes["active_dims"] <= probes["global_dim"] == 128


@pytest.mark.slow
def test_diagnose_and_probe_commands_on_the_sample(sample_dir, tmp_path):
    from dim_featurizer.train.cli import main
    from dim_featurizer.train.export import export_run

    from dim_featurizer.bench.cli import main as bench_main

    data, split = str(sample_dir / "mp2018_e_form_gap.json.gz"), str(sample_dir / "mp2018_folds.json")
    common = [data, "--split", split, "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--batch-sites", "300"]
    common += ["--val-fraction", "0.2", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--device", "cpu"]
    common += ["--attention-layers", "2"]  # the whole path, fit to card, with a non-default architecture
    assert main(["fit", *common, "--local-weighting", "distance", "--permutation", "supercell"]) == 0
    assert main(["diagnose", *common, "--local-weighting", "distance", "--permutation", "supercell"]) == 0
    probes = json.loads((tmp_path / "run" / "diagnosis.json").read_text())["probes"]
    assert set(probes) == {"kept", "start", "untrained"}
    args = [*common, "--local-weighting", "distance", "--permutation", "supercell", "--budgets", "20", "--draws", "2"]
    assert bench_main(["probe", *args, "--models", "ridge"]) == 0
    fits = pd.read_csv(tmp_path / "run" / "devprobe.csv")
    assert set(fits["encoder"]) == {"kept", "start", "untrained"} and np.isfinite(fits["mae"]).all()
    assert len(fits) == 3 * 2 * 2 * 1 * 2  # encoders x readouts x targets x budgets x draws
    folds = json.loads(open(split).read())
    assert fits["n_score"].iloc[0] <= len(folds["train"])
    card = (export_run(tmp_path / "run", tmp_path / "weights", "toy") / "README.md").read_text()
    assert "## Label-free probes" in card and "## Development probe" in card
    assert "local weighting `distance`" in card and "permutation over `supercell`" in card
    assert "the feature vector is μ_G" in card and "attention blocks\n  2" in card
    pooled = (export_run(tmp_path / "run", tmp_path / "pooled", "toy", readout="pooled") / "README.md").read_text()
    assert "the feature vector is the global encoder's mean-pooled layer" in pooled
    config = json.loads((tmp_path / "weights" / "toy" / "config.json").read_text())
    assert config["attention_layers"] == 2
    record = config["pretraining"]
    assert record["selection_labels_read"] == ["e_form", "gap"] and record["selection_test_ids_read"] == 0


def test_pair_local_sample_adds_the_centre_atom(sample):
    pair = DeepInfoMax(untrained_encoder(), local_sample="pair")
    neighbour = DeepInfoMax(pair.encoder, local_sample="neighbour")
    n = pair.encoder.config.n_site_features
    assert pair.local_sample.hidden.weight.shape[1] == 2 * n + 1
    with torch.no_grad():  # the neighbour model gets the pair model's weights without the centre columns
        neighbour.load_state_dict(
            {k: v for k, v in pair.state_dict().items() if not k.startswith("local_sample.")}, strict=False
        )
        w = pair.local_sample.hidden.weight
        neighbour.local_sample.hidden.weight.copy_(torch.cat([w[:, :n], w[:, -1:]], 1))
        neighbour.local_sample.hidden.bias.copy_(pair.local_sample.hidden.bias)
        neighbour.local_sample.out.load_state_dict(pair.local_sample.out.state_dict())
    mu, logvar = pair.encoder.local(sample.real)

    def terms(model):
        return model.local_terms(sample, mu, logvar, torch.Generator().manual_seed(0))

    assert not torch.allclose(terms(pair)[0], terms(neighbour)[0])  # the centre atom changes every score
    with torch.no_grad():
        pair.local_sample.hidden.weight[:, n : 2 * n] = 0.0
    for a, b in zip(terms(pair)[:2], terms(neighbour)[:2]):
        torch.testing.assert_close(a, b)  # without its centre columns it is the neighbour-only sample


@pytest.mark.parametrize(
    ("option", "decoder", "term"),
    [
        ("masked_sites", "masked_decoder", "masked"),
        ("shell_reconstruction", "shell_decoder", "shell"),
        ("element_reconstruction", "element_decoder", "elements"),
    ],
)
def test_decoder_terms_train_through_the_local_encoder(dataset, tmp_path, option, decoder, term):
    """Masked-site prediction, first-shell and element-table reconstruction: a decoder on mu_i, off (and absent)
    at weight 0."""
    config = TrainConfig(epochs=1, batch_sites=80, val_fraction=0.2, **{option: 1.0})
    trainer = Trainer(build_setup(dataset, config, EncodingConfig(), device="cpu"), tmp_path / term)
    assert getattr(trainer.model, option) == 1.0 and hasattr(trainer.model, decoder)
    losses = trainer.losses(trainer.model, np.arange(8), np.random.default_rng(0))
    value = getattr(losses, term)
    assert value > 0 and torch.isfinite(value) and losses.total > losses.local_js
    value.backward()
    assert trainer.model.encoder.local.site_embed[0].weight.grad.abs().sum() > 0  # reaches the local encoder
    assert getattr(trainer.model, decoder)[0].weight.grad.abs().sum() > 0
    trainer.fit(pbar=False)
    assert trainer.state["history"][0][f"train_{term}"] > 0
    plain = build_setup(
        dataset,
        TrainConfig(epochs=1, batch_sites=80, val_fraction=0.2, **{option: 0.0}),
        EncodingConfig(),
        device="cpu",
    )
    assert not hasattr(plain.model, decoder)
    zero = Trainer(plain, tmp_path / "plain").losses(plain.model, np.arange(8), np.random.default_rng(0))
    assert float(getattr(zero, term)) == 0.0


def test_element_targets_are_magpies_crystal_statistics_standardised():
    """The crystal targets of --element-reconstruction are matminer's Magpie features, standardised."""
    from dim_featurizer.train.targets import MAGPIE_PROPERTIES, crystal_statistics, magpie_targets
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition, Element

    table = magpie_targets()
    assert table.shape == (119, len(MAGPIE_PROPERTIES)) and np.isfinite(table).all()
    nd = MAGPIE_PROPERTIES.index("NdValence")
    assert table[26, nd] > table[11, nd]  # Fe has d electrons, Na none
    formulas = ["Fe2O3", "NaCl", "Si"]
    z = [Element(e).Z for f in formulas for e, n in Composition(f).items() for _ in range(int(n))]
    index = [c for c, f in enumerate(formulas) for n in Composition(f).values() for _ in range(int(n))]
    got = crystal_statistics(torch.from_numpy(table[z]), torch.tensor(index), len(formulas)).numpy()
    # The affine map of each property: two elements' raw and standardised values.
    magpie = ElementProperty.from_preset("magpie")
    raw = np.array(
        [[magpie.data_source.get_elemental_property(Element.from_Z(k), p) for p in MAGPIE_PROPERTIES] for k in (8, 26)]
    )
    scale = (table[26] - table[8]) / np.where(raw[1] != raw[0], raw[1] - raw[0], np.nan)
    shift = table[8] - raw[0] * scale
    for c, formula in enumerate(formulas):
        values = dict(zip(magpie.feature_labels(), magpie.featurize(Composition(formula))))
        for block, stat in enumerate(("mean", "avg_dev", "minimum", "maximum")):
            for k, prop in enumerate(MAGPIE_PROPERTIES):
                if not np.isfinite(scale[k]):
                    continue  # O and Fe agree on this property: its scale is not pinned by them
                expected = values[f"MagpieData {stat} {prop}"] * scale[k] + (0 if stat == "avg_dev" else shift[k])
                assert got[c, block * len(MAGPIE_PROPERTIES) + k] == pytest.approx(expected, abs=1e-4), (
                    formula,
                    stat,
                    prop,
                )


def test_jittered_view_moves_every_real_pair_by_about_its_scale_and_nothing_else(sample):
    from dim_featurizer.train.objective import MIN_JITTERED_DISTANCE, jittered_view

    batch = sample.real
    view = jittered_view(batch, 0.05, torch.Generator().manual_seed(0))
    again = jittered_view(batch, 0.05, torch.Generator().manual_seed(0))
    torch.testing.assert_close(view.distances, again.distances, atol=0, rtol=0)  # seeded
    real = batch.distances > 0
    assert torch.equal(view.distances[~real], batch.distances[~real])  # self pairs and padding stay 0
    assert torch.equal(view.neighbor_index, batch.neighbor_index) and torch.equal(view.mask, batch.mask)
    moved = (view.distances - batch.distances)[real]
    assert (moved != 0).all() and view.distances[real].min() >= MIN_JITTERED_DISTANCE
    # |Δd| ≲ 1% strain of d plus √2·σ·z with σ ≤ 0.05 Å: far under 0.5 Å, but not zero on average.
    assert moved.abs().max() < 0.5 and moved.abs().mean() > 0.005


def test_jitter_pairs_the_jittered_view_with_its_own_clean_crystal(dataset, tmp_path):
    def losses(jitter: float):
        config = TrainConfig(epochs=1, batch_sites=80, val_fraction=0.2, jitter=jitter)
        trainer = Trainer(build_setup(dataset, config, EncodingConfig(), device="cpu"), tmp_path / f"j{jitter}")
        return trainer, trainer.losses(trainer.model, np.arange(8), np.random.default_rng(0))

    (_, plain), (trainer, jittered) = losses(0.0), losses(0.05)
    assert trainer.model.jitter == 0.05 and torch.isfinite(jittered.total)
    assert float(jittered.local_js) != float(plain.local_js)  # same weights and draws, another view
    jittered.total.backward()
    assert trainer.model.encoder.local.distance_embed[0].weight.grad.abs().sum() > 0
    trainer.fit(pbar=False)
    assert np.isfinite(trainer.state["history"][0]["train_total"])


def test_first_shell_of_rock_salt_is_six_anions_at_half_the_cell():
    from dim_featurizer.train.objective import first_shell
    from pymatgen.core import Lattice, Structure

    from dim_featurizer.batching import collate
    from dim_featurizer.encoding import encode_structure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    batch = collate([encode_structure(nacl, EncodingConfig())])
    nearest, shell = first_shell(batch)
    torch.testing.assert_close(nearest, torch.full_like(nearest, 2.82), atol=1e-3, rtol=0)
    assert shell.sum(1).tolist() == [6.0, 6.0]
    species = batch.site_features[:, 0]  # the first element property differs between Na and Cl
    shell_species = species[batch.neighbor_index][shell.bool()].view(2, 6)
    assert (shell_species != species[:, None]).all()  # every first neighbour is the other element


@pytest.mark.parametrize("name", ["reconstruction", "masked_sites", "jitter", "shell_reconstruction"])
def test_negative_or_nan_term_weights_are_refused_by_name(name):
    for bad in (-0.05, float("nan")):
        with pytest.raises(ValueError, match=f"{name} must be 0"):
            TrainConfig(**{name: bad})
