"""The dim-featurize command: examples, folders, JSON frames, CSV and parquet, bad files."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from dim_featurizer.cli import main
from dim_featurizer.examples import example_files


def test_no_input_featurises_the_examples(tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["--weights", "untrained", "--device", "cpu", "-o", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out, index_col=0)
    assert len(table) == len(example_files()) == 8
    assert list(table.columns[:2]) == ["formula", "DIM_0"] and table.columns[-1] == "error"
    features = table.filter(like="DIM_")
    assert features.shape[1] == 128 and np.isfinite(features.to_numpy()).all() and table["error"].isna().all()
    assert set(table.index) == {p.stem for p in example_files()}  # the input's own ids, not paths
    assert table.loc["NaCl", "formula"] == "NaCl" and table.loc["TiO2_rutile", "formula"] == "TiO2"
    assert "8 structures, 0 failed" in capsys.readouterr().err


def test_folder_and_poscar_to_parquet(tmp_path, examples):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in example_files()[:3]:
        shutil.copy(path, folder)
    examples["NaCl"].to(filename=str(folder / "POSCAR"), fmt="poscar")
    out = tmp_path / "x.parquet"
    assert main([str(folder), "--weights", "untrained", "-o", str(out), "--no-progress"]) == 0
    table = pd.read_parquet(out).set_index("id")
    assert len(table) == 4 and "POSCAR" in table.index
    # The POSCAR row equals the NaCl CIF row: same crystal, different file format.
    if "NaCl" in table.index:
        features = table.filter(like="DIM_")
        np.testing.assert_allclose(features.loc["NaCl"], features.loc["POSCAR"], atol=1e-5)


def test_matminer_json_frame(tmp_path, examples, capsys):
    from matminer.utils.io import store_dataframe_as_json

    frame = pd.DataFrame({"structure": list(examples.values())}, index=list(examples))
    store_dataframe_as_json(frame, str(tmp_path / "f.json.gz"), compression="gz")
    assert main([str(tmp_path / "f.json.gz"), "--weights", "untrained", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("id,formula,DIM_0") and "SrTiO3" in text


def test_bad_file_is_named_or_kept_as_an_error_row(tmp_path, capsys):
    good = example_files()[0]
    broken = tmp_path / "broken.cif"
    broken.write_text("data_nothing\n_cell_length_a 3\n")
    args = [str(good), str(broken), "--weights", "untrained", "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "a.csv")]) == 1
    assert "broken.cif" in capsys.readouterr().err
    assert main(args + ["--ignore-errors", "-o", str(tmp_path / "b.csv")]) == 0
    table = pd.read_csv(tmp_path / "b.csv", index_col=0)
    assert table.loc["broken", "error"].startswith("cannot read")
    assert table.loc[good.stem].drop("error").notna().all()


def test_missing_path_and_bad_weights(tmp_path, capsys):
    assert main([str(tmp_path / "nope.cif")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["--weights", str(tmp_path / "no" / "such" / "w")]) == 1
    assert "tried" in capsys.readouterr().err
