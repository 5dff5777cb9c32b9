"""Encoding against pymatgen's own geometry and matminer's Magpie tables."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dim_featurizer.batching import collate, plan_batches
from dim_featurizer.config import EncodingConfig
from dim_featurizer.elements import ELEMENT_PROPERTIES, element_table, supported_atomic_numbers
from dim_featurizer.encoding import build_supercell, encode_structure, supercell_repeats
from dim_featurizer.errors import UnsupportedElementError


def test_distances_match_pymatgen_supercell(examples, real_structures):
    for structure in list(examples.values()) + real_structures[:30]:
        cell = build_supercell(structure)
        encoded = encode_structure(structure)
        reference = cell.to_structure().distance_matrix[: cell.n_sites]
        np.testing.assert_allclose(encoded.distances, reference, atol=1e-4)
        assert np.all(np.diag(encoded.distances) == 0)


def test_supercell_is_the_same_crystal(real_structures):
    for structure in real_structures[:30]:
        cell = build_supercell(structure)
        sc = cell.to_structure()
        assert sc.composition.reduced_formula == structure.composition.element_composition.reduced_formula
        # Density is conserved, so the cell is a true supercell of the primitive cell.
        assert sc.density == pytest.approx(structure.density, rel=1e-6)
        primitive = len(sc) // int(np.prod(cell.repeats))
        assert len(sc) <= 50 or primitive > 25
        # Every atom is an image of a unique site of the same species.
        np.testing.assert_array_equal(cell.site_keys[cell.image_of, 0], [s.specie.Z for s in sc])


def test_primitive_reduction_collapses_supercells(examples):
    nacl = examples["NaCl"]  # conventional cell: 8 atoms, primitive: 2
    assert len(nacl) == 8
    assert encode_structure(nacl).n_sites == 2
    big = nacl * (2, 2, 1)
    assert encode_structure(big).n_sites == 2


def test_supercell_repeats_are_greedy_and_near_cubic():
    lattice = Lattice.cubic(3.0).matrix
    repeats = supercell_repeats(lattice, 1, 50)
    assert repeats.prod() == 48 and sorted(repeats) == [3, 4, 4]
    # An elongated cell grows along its short axes first.
    repeats = supercell_repeats(Lattice.tetragonal(3.0, 9.0).matrix, 2, 50)
    assert repeats[2] == 1 and repeats[0] >= 3
    # Over max_atoms / 2 the primitive cell is used as it is.
    assert supercell_repeats(lattice, 30, 50).tolist() == [1, 1, 1]
    assert (supercell_repeats(lattice, 4, 500).prod() * 4) <= 500


def test_site_features_match_magpie(real_structures):
    from matminer.utils.data import MagpieData

    magpie = MagpieData(impute_nan=False).all_elemental_props
    for structure in real_structures[:20]:
        cell = build_supercell(structure)
        encoded = encode_structure(structure)
        for row, z in zip(encoded.site_features, cell.site_keys[:, 0].astype(int)):
            from pymatgen.core import Element

            symbol = Element.from_Z(z).symbol
            for value, prop in zip(row, ELEMENT_PROPERTIES):
                expected = magpie[prop][symbol]
                if np.isfinite(expected):
                    assert value == pytest.approx(expected, rel=1e-6), (symbol, prop)


def test_missing_magpie_values_are_imputed_not_dropped():
    from matminer.utils.data import MagpieData

    magpie = MagpieData(impute_nan=False).all_elemental_props
    table = element_table()
    # Magpie has no atomic radius for Xe nor a Pauling electronegativity for Ar.
    assert np.isnan(magpie["AtomicRadius"]["Xe"]) and table[54, 6] == pytest.approx(1.40)
    assert np.isnan(magpie["Electronegativity"]["Ar"]) and table[18, 5] == pytest.approx(3.242)
    xe = Structure(Lattice.cubic(4.0), ["Xe", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert np.isfinite(encode_structure(xe).site_features).all()
    assert {54, 18, 2, 86}.issubset(set(supported_atomic_numbers().tolist()))


def test_unsupported_element_is_named():
    fr = Structure(Lattice.cubic(5.0), ["Fr", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(UnsupportedElementError, match="Fr.*Density"):
        encode_structure(fr)


def test_oxidation_modes(examples):
    nacl = examples["NaCl"].copy()
    assert np.all(encode_structure(nacl).site_features[:, 8] == 0)  # none given
    guessed = encode_structure(nacl, EncodingConfig(oxidation="guess")).site_features
    assert sorted(guessed[:, 8].tolist()) == [-1.0, 1.0]
    nacl.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    given = encode_structure(nacl).site_features
    assert sorted(given[:, 8].tolist()) == [-1.0, 1.0]
    assert np.all(encode_structure(nacl, EncodingConfig(oxidation="zero")).site_features[:, 8] == 0)


def test_collate_and_plan(real_structures):
    crystals = [encode_structure(s) for s in real_structures[:12]]
    batch = collate(crystals)
    n = sum(c.n_sites for c in crystals)
    assert batch.site_features.shape == (n, 9)
    assert batch.distances.shape == (n, max(c.n_atoms for c in crystals))
    assert batch.mask.sum().item() == sum(c.n_sites * c.n_atoms for c in crystals)
    assert batch.crystal_index.bincount().tolist() == [c.n_sites for c in crystals]
    # Every neighbour index points into its own crystal.
    assert (batch.crystal_index[batch.neighbor_index] == batch.crystal_index[:, None]).all()
    sizes = [c.n_sites for c in crystals]
    plan = plan_batches(sizes, budget=20, widths=[c.n_atoms for c in crystals])
    assert sorted(i for b in plan for i in b) == list(range(12))
    for b in plan:
        assert len(b) == 1 or sum(sizes[i] for i in b) <= 20
    with pytest.raises(ValueError):
        plan_batches(sizes, budget=0)


@pytest.mark.parametrize("mode", ["zero", "given", "guess"])
def test_cells_read_straight_from_dicts_equal_those_of_structures(examples, real_structures, mode):
    from dim_featurizer.encoding import cell_from_dict, to_cell

    config = EncodingConfig(oxidation=mode)
    charged = examples["NaCl"].copy()
    charged.add_oxidation_state_by_guess()
    read, structures = 0, [*real_structures, *examples.values(), charged]
    for structure in structures:
        for value in (structure.as_dict(), structure.to_json()):
            fast, slow = cell_from_dict(value, config), to_cell(structure, config, defer_guess=True)
            if fast is None:  # only a guess the dict cannot make is left to pymatgen
                assert mode == "guess" and slow.oxidation is None
                continue
            read += 1
            for name in ("lattice", "frac", "z", "oxidation"):
                np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
            # And what the encoder makes of it, through the public path.
            np.testing.assert_array_equal(
                encode_structure(value, config).distances, encode_structure(structure, config).distances
            )
    assert read == (2 if mode == "guess" else 2 * len(structures))  # guessing: only the charged one


def test_dicts_the_fast_path_cannot_read_get_pymatgens_named_errors():
    from dim_featurizer.encoding import cell_from_dict, to_cell
    from dim_featurizer.errors import DisorderedStructureError

    lattice = Lattice.cubic(4.0)
    disordered = Structure(lattice, [{"Fe": 0.5, "Co": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    unsupported = Structure(lattice, ["Og", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]).as_dict()
    config = EncodingConfig()
    assert cell_from_dict(disordered, config) is None and cell_from_dict(unsupported, config) is None
    assert cell_from_dict("data_x\n_cell_length_a 4", config) is None  # CIF text is not a dict
    with pytest.raises(DisorderedStructureError, match="site 0"):
        to_cell(disordered, config)
    with pytest.raises(UnsupportedElementError, match="site 0: Og"):
        to_cell(unsupported, config)
