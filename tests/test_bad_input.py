"""Bad input: a clear error naming the entry, or a NaN row under ignore_errors; never a lost batch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_python
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Element, Lattice, Molecule, Structure
from pymatgen.core.periodic_table import DummySpecies

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer import errors as E

#: The failures a user can meet for bad structures; anything else is a bug.
DOCUMENTED_ERRORS = (
    E.NotAStructureError,
    E.EmptyStructureError,
    E.DisorderedStructureError,
    E.InvalidGeometryError,
    E.OverlappingSitesError,
    E.UnsupportedElementError,
    E.StructureTooLargeError,
)


def bad_inputs():
    cubic = Lattice.cubic(4.0)
    return {
        "molecule": (Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]), E.NotAStructureError, "Molecule"),
        "string": ("NaCl", E.NotAStructureError, "str"),
        "none": (None, E.NotAStructureError, "NoneType"),
        "broken dict": ({"lattice": "not a lattice"}, E.NotAStructureError, "cannot read"),
        "broken json": ('{"sites": 3}', E.NotAStructureError, "cannot read"),
        "empty": (Structure(cubic, [], []), E.EmptyStructureError, "no sites"),
        "mixed site": (Structure(cubic, [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]]), E.DisorderedStructureError, "site 0"),
        "vacancy": (
            Structure(cubic, ["Na", {"Cl": 0.8}], [[0, 0, 0], [0.5, 0.5, 0.5]]),
            E.DisorderedStructureError,
            "site 1",
        ),
        "overlap": (Structure(cubic, ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]), E.OverlappingSitesError, "0.040 Å"),
        "francium": (Structure(cubic, ["Fr", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), E.UnsupportedElementError, "Fr"),
        "dummy": (Structure(cubic, [DummySpecies("X")], [[0, 0, 0]]), E.UnsupportedElementError, "X"),
        "nan coords": (Structure(cubic, ["Fe"], [[np.nan, 0, 0]]), E.InvalidGeometryError, "NaN"),
        "flat cell": (
            Structure(Lattice([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), ["Fe"], [[0, 0, 0]]),
            E.InvalidGeometryError,
            "volume",
        ),
    }


GOOD = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_undecoded_structures_give_the_structures_vectors(featurizer):
    """A pymatgen dict, its JSON text or CIF text are parsed by the encoder (in the workers with n_jobs > 1)."""
    forms = [GOOD, GOOD.as_dict(), GOOD.to_json(), GOOD.to(fmt="cif")]
    rows = np.asarray(featurizer.featurize_many(forms, pbar=False))
    np.testing.assert_allclose(rows, np.repeat(rows[:1], len(forms), axis=0), atol=1e-5)


@pytest.mark.parametrize("name", list(bad_inputs()))
def test_each_bad_input_is_named(featurizer, name):
    entry, error, text = bad_inputs()[name]
    with pytest.raises(error) as info:
        featurizer.featurize_many([GOOD, GOOD, entry], pbar=False)
    assert "entry 2" in str(info.value) and text in str(info.value)
    assert isinstance(info.value, DOCUMENTED_ERRORS)


def test_ignore_errors_gives_nan_rows_and_keeps_the_rest(featurizer, examples):
    bad = [entry for entry, _, _ in bad_inputs().values()]
    good = list(examples.values())
    mixed = [x for pair in zip(good + good[: len(bad) - len(good)], bad) for x in pair]
    rows = featurizer.featurize_many(mixed, ignore_errors=True, return_errors=True, pbar=False)
    assert len(rows) == len(mixed)
    for i, row in enumerate(rows):
        values, error = np.array(row[:-1], float), row[-1]
        if i % 2:  # bad
            assert np.isnan(values).all() and f"entry {i} " in error
        else:
            assert error != error  # NaN: no error
            np.testing.assert_allclose(values, featurizer.featurize(mixed[i]), atol=1e-5)


def test_dataframe_with_bad_rows(featurizer):
    import pandas as pd

    df = pd.DataFrame({"structure": [GOOD, None, GOOD]}, index=["a", "b", "c"])
    out = featurizer.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    assert len(out) == 3 and out.loc["b"].iloc[1:].isna().all() and out.loc["a"].iloc[1:].notna().all()
    with pytest.raises(E.NotAStructureError, match="entry 1"):
        featurizer.featurize_dataframe(df, "structure", pbar=False)


def _big_cell(n_side):
    """A cell of n_side³ atoms that no translation reduces: a jittered grid of mixed species."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    frac = (grid + 0.1 * rng.random(grid.shape)) / n_side
    species = rng.choice(["Na", "Cl", "K"], len(frac))
    return Structure(Lattice.cubic(2.8 * n_side), species.tolist(), frac)


@pytest.mark.slow
def test_huge_cell_is_refused_clearly_or_featurised_in_bounded_chunks(examples):
    big = _big_cell(13)  # 2,197 atoms
    strict = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    with pytest.raises(E.StructureTooLargeError, match="2197 sites"):
        strict.featurize(big)
    roomy = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", max_sites=3000, pbar=False)
    rows = np.array(roomy.featurize_many([examples["Si"], big, examples["NaCl"]], pbar=False))
    assert np.isfinite(rows).all()
    np.testing.assert_allclose(rows[0], roomy.featurize(examples["Si"]), atol=1e-5)


def test_entries_must_be_list_like(featurizer):
    with pytest.raises(TypeError, match="list-like"):
        featurizer.featurize_many("NaCl")
    with pytest.raises(ValueError, match="ignore_errors"):
        featurizer.featurize_many([GOOD], return_errors=True)


SUPPORTED = [Element.from_Z(z).symbol for z in range(1, 104)]
junk = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.floats(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def random_structures(draw):
    lengths = draw(st.lists(st.floats(0.5, 12.0), min_size=3, max_size=3))
    angles = draw(st.lists(st.floats(40.0, 140.0), min_size=3, max_size=3))
    n = draw(st.integers(0, 6))
    species = draw(st.lists(st.sampled_from(SUPPORTED), min_size=n, max_size=n))
    coords = draw(st.lists(st.lists(st.floats(-1.0, 2.0), min_size=3, max_size=3), min_size=n, max_size=n))
    try:
        lattice = Lattice.from_parameters(*lengths, *angles)
    except Exception:  # noqa: BLE001 - impossible angle triples; pymatgen's own refusal
        return None
    return Structure(lattice, species, coords) if n else Structure(lattice, [], [])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.one_of(random_structures(), junk), min_size=1, max_size=4))
def test_random_structures_and_junk(featurizer, entries):
    for entry in entries:
        try:
            values = np.asarray(featurizer.featurize(entry))
        except DOCUMENTED_ERRORS:
            continue
        assert values.shape == (128,) and np.isfinite(values).all()
    rows = featurizer.featurize_many(entries, ignore_errors=True, pbar=False)
    assert len(rows) == len(entries)
    for row in rows:
        values = np.asarray(row, float)
        assert np.isfinite(values).all() or np.isnan(values).all()


def test_errors_are_one_line_and_name_index_id_and_formula(featurizer):
    import pandas as pd

    methane = Molecule(
        ["C", "H", "H", "H", "H"], [[0, 0, 0], [0, 0, 1.09], [1.03, 0, -0.36], [-0.5, 0.9, -0.4], [-0.5, -0.9, -0.4]]
    )
    with pytest.raises(E.NotAStructureError) as info:
        featurizer.featurize_many(pd.Series([GOOD, methane], index=["mp-22862", "mol-1"]), pbar=False)
    assert str(info.value) == "entry 1 (id 'mol-1', Molecule H4C): expected a pymatgen Structure, got Molecule"
    frame = pd.DataFrame({"structure": [GOOD, "NaCl\nrock salt"]}, index=["a", "b"])
    out = featurizer.featurize_dataframe(frame, "structure", ignore_errors=True, return_errors=True, pbar=False)
    message = out.loc["b", out.columns[-1]]
    assert message.startswith("entry 1 (id 'b', str 'NaCl\\nrock salt'):") and "\n" not in message
    assert np.isnan(out.loc["b", "DIM_0"]) and np.isfinite(out.loc["a", "DIM_0"])
    overlap = bad_inputs()["overlap"][0]
    with pytest.raises(E.OverlappingSitesError, match=r"^Structure NaCl: atoms of Z=11"):
        featurizer.featurize(overlap)  # one structure: no "entry 0"


UNGUARDED = """
from dim_featurizer import DeepInfoMaxFeaturizer, example_structures
structures = list(example_structures().values()) * 2
DeepInfoMaxFeaturizer(weights="untrained", n_jobs=2, pbar=False).featurize_many(structures, pbar=False)
print("done")
"""


@pytest.mark.slow
def test_n_jobs_without_a_main_guard_says_what_to_do(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(UNGUARDED)
    run = run_python([script], cwd=tmp_path, timeout=300)
    assert run.returncode != 0 and "done" not in run.stdout
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError:") and 'if __name__ == "__main__":' in last
    script.write_text(
        "if __name__ == '__main__':\n" + "".join(f"    {line}\n" for line in UNGUARDED.strip().splitlines())
    )
    run = run_python([script], cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and "done" in run.stdout, run.stderr[-2000:]
