"""The dim-featurize command: examples, folders, JSON frames, CSV and parquet, bad files."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from dim_featurizer.cli import main
from dim_featurizer.examples import example_files


def test_no_input_featurises_the_examples(tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["--weights", "untrained", "--device", "cpu", "-o", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out, index_col=0)
    assert len(table) == len(example_files()) == 8
    assert table.shape[1] == 128 and np.isfinite(table.to_numpy()).all()
    assert "8 structures, 0 failed" in capsys.readouterr().err


def test_folder_and_poscar_to_parquet(tmp_path, examples):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in example_files()[:3]:
        shutil.copy(path, folder)
    examples["NaCl"].to(filename=str(folder / "POSCAR"), fmt="poscar")
    out = tmp_path / "x.parquet"
    assert main([str(folder), "--weights", "untrained", "-o", str(out), "--no-progress"]) == 0
    table = pd.read_parquet(out)
    assert len(table) == 4 and any(name.endswith("POSCAR") for name in table.index)
    # The POSCAR row equals the NaCl CIF row: same crystal, different file format.
    cif = [name for name in table.index if name.endswith("NaCl.cif")]
    if cif:
        np.testing.assert_allclose(table.loc[cif[0]], table.loc[str(folder / "POSCAR")], atol=1e-5)


def test_matminer_json_frame(tmp_path, examples, capsys):
    from matminer.utils.io import store_dataframe_as_json

    frame = pd.DataFrame({"structure": list(examples.values())}, index=list(examples))
    store_dataframe_as_json(frame, str(tmp_path / "f.json.gz"), compression="gz")
    assert main([str(tmp_path / "f.json.gz"), "--weights", "untrained", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("id,DIM_0") and "SrTiO3" in text


def test_bad_file_is_named_or_kept_as_an_error_row(tmp_path, capsys):
    good = example_files()[0]
    broken = tmp_path / "broken.cif"
    broken.write_text("data_nothing\n_cell_length_a 3\n")
    args = [str(good), str(broken), "--weights", "untrained", "--no-progress"]
    assert main(args + ["-o", str(tmp_path / "a.csv")]) == 1
    assert "broken.cif" in capsys.readouterr().err
    assert main(args + ["--ignore-errors", "-o", str(tmp_path / "b.csv")]) == 0
    table = pd.read_csv(tmp_path / "b.csv", index_col=0)
    assert table.loc[str(broken), "error"].startswith("cannot read")
    assert table.loc[str(good)].drop("error").notna().all()


def test_missing_path_and_bad_weights(tmp_path, capsys):
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "nope.cif")])
    assert main(["--weights", str(tmp_path / "no" / "such" / "w")]) == 1
    assert "tried" in capsys.readouterr().err
