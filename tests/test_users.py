"""Ready for real users: no traceback, no silent loss, analysis-ready output, progress and plain words.

Each test is a case that once failed: the comment above it says how.
"""

from __future__ import annotations

import gzip
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import run_python

from dim_featurizer import DeepInfoMaxFeaturizer, supported_elements
from dim_featurizer.cli import main as featurize_main
from dim_featurizer.examples import example_files, load_sample

UNTRAINED = ["--weights", "untrained", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def frame_path(sample_dir):
    return sample_dir / "mp2018_e_form_gap.json.gz"


def bad_frame(tmp_path, frame_path, rows=(70,)):
    """The sample frame with unreadable structures at ``rows``."""
    raw = json.loads(pd.read_json(frame_path, orient="split").to_json(orient="split"))
    position = raw["columns"].index("structure")
    for row in rows:
        raw["data"][row][position] = {"lattice": "not a lattice"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    return path


# -- streaming output that always merges ---------------------------------------------------------------


@pytest.mark.slow
def test_parts_with_and_without_failures_merge_and_read_back(tmp_path, frame_path):
    """Before: the error column was null-typed in clean parts and string-typed in others, so neither
    --merge nor pd.read_parquet(DIR/parts) could read the folder."""
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    path = bad_frame(tmp_path, frame_path)
    args = [str(path), "--out-dir", str(out), "--chunk-size", "50", "--ignore-errors", *UNTRAINED]
    assert featurize_main(args) == 0
    schemas = {str(pq.read_schema(p).field("error").type) for p in (out / "parts").glob("*.parquet")}
    assert schemas == {"string"}
    dataset = pd.read_parquet(out / "parts")
    assert len(dataset) == 300 and dataset["error"].notna().sum() == 1
    for name in ("all.parquet", "all.csv"):
        assert featurize_main(["--merge", str(out), "-o", str(tmp_path / name)]) == 0
    merged = pd.read_parquet(tmp_path / "all.parquet")
    as_csv = pd.read_csv(tmp_path / "all.csv")
    assert list(merged.columns) == list(as_csv.columns) and merged["error"].notna().sum() == 1
    # -o writes the same columns as --merge.
    assert featurize_main([str(path), "--ignore-errors", "-o", str(tmp_path / "direct.parquet"), *UNTRAINED]) == 0
    direct = pd.read_parquet(tmp_path / "direct.parquet")
    assert list(direct.columns) == list(merged.columns)
    np.testing.assert_allclose(direct.filter(like="DIM_"), merged.filter(like="DIM_"), atol=1e-6)


@pytest.mark.slow
def test_a_damaged_part_is_redone_on_resume_and_named_by_merge(tmp_path, frame_path, capsys):
    """Before: a truncated part counted as finished, and the merge failed naming '<Buffer>'."""
    out = tmp_path / "out"
    args = [str(frame_path), "--out-dir", str(out), "--chunk-size", "100", *UNTRAINED]
    assert featurize_main(args) == 0
    part = out / "parts" / "part-000001.parquet"
    good = part.read_bytes()
    part.write_bytes(good[: len(good) // 2])
    assert featurize_main(["--merge", str(out), "-o", str(tmp_path / "x.csv")]) == 1
    assert f"{part}: damaged part" in capsys.readouterr().err
    assert featurize_main(args) == 0
    err = capsys.readouterr().err
    assert "part 000001 unreadable" in err and "redoing it" in err and "1 damaged parts redone" in err
    assert featurize_main(["--merge", str(out), "-o", str(tmp_path / "x.csv")]) == 0


@pytest.mark.slow
def test_second_writer_of_a_shard_is_refused(tmp_path, frame_path):
    """Before: two writers on one shard both computed everything."""
    from dim_featurizer.stream import ShardLockedError, shard_lock

    out = tmp_path / "out"
    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu")
    from dim_featurizer.stream import featurize_to_parts

    with shard_lock(out, 0, 1), pytest.raises(ShardLockedError, match="being written by another process"):
        featurize_to_parts([frame_path], out, featurizer, chunk_size=100, pbar=False)
    featurize_to_parts([frame_path], out, featurizer, chunk_size=100, pbar=False)  # free again


@pytest.mark.slow
def test_inputs_are_matched_by_content_and_records_are_never_clobbered(tmp_path, frame_path):
    """Before: an input with the same name and size but other content was accepted; a rerun of a finished
    shard rewrote its record with rows: 0."""
    from dim_featurizer.stream import featurize_to_parts

    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu")
    data = tmp_path / "in" / "f.json.gz"
    data.parent.mkdir()
    shutil.copy(frame_path, data)
    out = tmp_path / "out"
    featurize_to_parts([data], out, featurizer, chunk_size=100, pbar=False)
    again = featurize_to_parts([data], out, featurizer, chunk_size=100, pbar=False)
    record = json.loads((out / "shards" / "shard-0-of-1.json").read_text())
    assert again.written == [] and record["rows"] == 300 and record["skipped"] == [0, 1, 2]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same name, same size, other content
    data.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="other settings.*inputs"):
        featurize_to_parts([data], out, featurizer, chunk_size=100, pbar=False)


# -- weights ---------------------------------------------------------------------------------------------


def test_every_bundled_config_records_its_weights_hash():
    """Before: only the manifest knew the hashes, so a local or Hub-cache copy was never checked."""
    from dim_featurizer.config import ModelConfig
    from dim_featurizer.weights import bundled_names, bundled_root, sha256

    for name in bundled_names():
        config = ModelConfig.from_json_file(bundled_root() / name / "config.json")
        assert config.weights_sha256 == sha256(bundled_root() / name / "model.safetensors"), name


def test_a_misspelled_weights_name_suggests_the_closest(capsys):
    assert featurize_main(["--weights", "dim-mp2018r2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'dim-mp2018-r2'?" in err and len(err.strip().splitlines()) == 1


# -- training runs ---------------------------------------------------------------------------------------


def train_args(sample_dir, tmp_path, *extra):
    data, split = str(sample_dir / "mp2018_e_form_gap.json.gz"), str(sample_dir / "mp2018_folds.json")
    return ["fit", data, "--split", split, "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--limit", "60",
            "--batch-sites", "300", "--val-fraction", "0.2", "--cache-dir", str(tmp_path / "cache"),
            "--no-progress", "--device", "cpu", *extra]  # fmt: skip


@pytest.mark.slow
def test_a_run_is_never_overwritten(sample_dir, tmp_path, capsys):
    """Before: dim-train fit without --resume silently replaced an existing run."""
    from dim_featurizer.train.cli import main

    assert main(train_args(sample_dir, tmp_path)) == 0
    log = (tmp_path / "run" / "log.csv").read_text()
    capsys.readouterr()
    assert main(train_args(sample_dir, tmp_path, "--lr", "0.001")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already holds a run" in err and "lr: 0.0001 there, 0.001 now" in err
    assert (tmp_path / "run" / "log.csv").read_text() == log
    assert main(train_args(sample_dir, tmp_path, "--lr", "0.001", "--overwrite")) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["train_config"]["lr"] == 0.001


@pytest.mark.slow
def test_run_json_keeps_the_segment_of_a_killed_run(sample_dir, tmp_path, monkeypatch):
    """Before: run.json was written only when fit returned, so a killed segment left no record."""
    from dim_featurizer.train.cli import main
    from dim_featurizer.train.loop import Trainer

    evaluate, calls = Trainer.evaluate, []

    def killed_in_epoch_two(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return evaluate(self)

    monkeypatch.setattr(Trainer, "evaluate", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        main(train_args(sample_dir, tmp_path, "--epochs", "3"))
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [s["epochs"] for s in record["segments"]] == [[1, 1]] and record["epochs_done"] == 1
    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    assert main(train_args(sample_dir, tmp_path, "--epochs", "3", "--resume")) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [s["epochs"] for s in record["segments"]] == [[1, 1], [2, 3]]


# -- one line, never a traceback --------------------------------------------------------------------------


def one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, sample_dir):
    """An empty frame, a truncated gzip frame, and a frame cut off in its data."""
    folder = tmp_path_factory.mktemp("damaged")
    (folder / "empty.json").write_text("")
    raw = (sample_dir / "mp2018_e_form_gap.json.gz").read_bytes()
    (folder / "truncated.json.gz").write_bytes(raw[: len(raw) // 2])
    text = gzip.decompress(raw).decode()
    (folder / "cut.json").write_text(text[: len(text) // 2])
    return folder


@pytest.mark.parametrize("name", ["empty.json", "truncated.json.gz", "cut.json", "missing.json"])
def test_dim_featurize_bad_inputs_are_one_line(damaged, capsys, name, tmp_path):
    """Before: an empty or truncated frame raised ijson.IncompleteJSONError with a traceback."""
    err = one_line_error(capsys, featurize_main([str(damaged / name), *UNTRAINED, "-o", str(tmp_path / "x.csv")]))
    assert name in err


def test_dim_featurize_refuses_an_unknown_output_type(capsys, tmp_path):
    """Before: -o x.xlsx wrote CSV text into x.xlsx."""
    err = one_line_error(capsys, featurize_main([*UNTRAINED, "-o", str(tmp_path / "x.xlsx")]))
    assert ".csv, .csv.gz, .parquet" in err and not (tmp_path / "x.xlsx").exists()


@pytest.mark.parametrize("name", ["truncated.json.gz", "cut.json", "missing.json"])
def test_dim_train_bad_inputs_are_one_line(damaged, capsys, tmp_path, name):
    """Before: dim-train raised a traceback for a missing data path and a truncated frame."""
    from dim_featurizer.train.cli import main

    args = ["fit", str(damaged / name), "--run-dir", str(tmp_path / "run"), "--no-progress", "--device", "cpu"]
    assert name in one_line_error(capsys, main(args))


@pytest.mark.slow
def test_dim_train_resume_with_other_settings_is_one_line(sample_dir, tmp_path, capsys):
    from dim_featurizer.train.cli import main

    assert main(train_args(sample_dir, tmp_path, "--epochs", "1")) == 0
    capsys.readouterr()
    err = one_line_error(capsys, main(train_args(sample_dir, tmp_path, "--beta", "0.5", "--resume")))
    assert "other settings" in err and "beta" in err


def test_dim_bench_bad_inputs_are_one_line(tmp_path, capsys):
    from dim_featurizer.bench.cli import main

    missing = ["--data-dir", str(tmp_path / "nothing"), "--tasks", "phonons", "--no-progress"]
    assert "nothing" in one_line_error(capsys, main([*missing, "--out", str(tmp_path / "o")]))
    assert "nothing" in one_line_error(capsys, main(["finetune", *missing[:4], "--out", str(tmp_path / "o")]))
    err = one_line_error(capsys, main(["probe", str(tmp_path / "f.json"), "--run-dir", str(tmp_path / "r")]))
    assert "--split is required" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--tasks", "nonsense"])
    assert exit_info.value.code == 2 and "invalid choice" in one_line_error(capsys, 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "script", ["dim_featurizer.cli", "dim_featurizer.train.cli", "dim_featurizer.bench.cli"], ids=lambda s: s
)
def test_console_scripts_print_no_traceback(damaged, tmp_path, script):
    """The installed commands, as a user runs them: one stderr line and a non-zero status."""
    args = {
        "dim_featurizer.cli": [str(damaged / "cut.json"), "--no-progress"],
        "dim_featurizer.train.cli": ["fit", str(damaged / "cut.json"), "--run-dir", str(tmp_path / "r")],
        "dim_featurizer.bench.cli": ["--data-dir", str(tmp_path / "none"), "--tasks", "phonons"],
    }[script]
    run = run_python(["-m", script, *args], timeout=300)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]


COMMANDS = ["cli", "train.cli", "bench.cli", "bench.finetune", "bench.devprobe", "bench.sweep"]


@pytest.mark.parametrize("module", [f"dim_featurizer.{m}" for m in COMMANDS])
def test_every_option_has_help_and_shows_its_default(module):
    """Before: --help showed no defaults, and --alpha, --beta, --permutation... had no help at all."""
    import argparse
    from importlib import import_module

    parser = import_module(module).build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    for p in parsers:
        text = p.format_help()
        options = [a for a in p._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
        for action in options:
            assert action.help, f"{p.prog} {action.option_strings or action.dest} has no help"
        assert "(default:" in text or not any(a.option_strings for a in options), p.prog


# -- the regressor ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_task():
    data = load_sample("phonons").iloc[:30]
    return data[["structure"]], data["last phdos peak"]


def quick(**options):
    from dim_featurizer import DIMRegressor

    return DIMRegressor(weights="untrained", device="cpu", max_epochs=3, patience=2, **options)


def test_regressor_two_dimensional_y_is_named(small_task):
    """Before: a 2-D y said 'y has 40 values'."""
    X, y = small_task
    with pytest.raises(ValueError, match=r"one target per structure .* shape \(30, 2\)"):
        quick().fit(X, np.c_[y, y])


def test_regressor_aligns_y_by_id_and_says_so(small_task):
    """Before: a y Series in another order than X was used by position, silently."""
    X, y = small_task
    reference = quick().fit(X, y).predict(X)
    with pytest.warns(UserWarning, match="aligned to them by id"):
        shuffled = quick().fit(X, y.iloc[::-1]).predict(X)
    np.testing.assert_allclose(shuffled, reference, rtol=1e-6)
    with pytest.raises(ValueError, match="does not hold the structures' ids"):
        quick().fit(X, y.set_axis([f"other-{i}" for i in range(len(y))]))


def test_regressor_verbose_logs_each_epoch_and_plots_its_history(small_task, capsys):
    """Before: fit printed nothing for minutes, and there was no verbose option."""
    import matplotlib

    matplotlib.use("Agg")
    X, y = small_task
    model = quick(verbose=1).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == len(model.history_) and "validation MAE" in lines[0] and "training loss" in lines[0]
    assert quick().get_params()["verbose"] == 0
    ax = model.plot_history()
    assert ax.get_xlabel() == "epoch" and len(ax.lines) >= 2


# -- plain words -----------------------------------------------------------------------------------------


def test_supported_elements_and_the_message_for_others(examples):
    """Before: 'Fr has no value for Density in the site-feature tables' did not say what is supported."""
    from pymatgen.core import Lattice, Structure

    from dim_featurizer.errors import UnsupportedElementError

    elements = supported_elements()
    assert {"H", "O", "Fe", "U", "Xe"} <= set(elements) and "Fr" not in elements and len(elements) > 80
    francium = Structure(Lattice.cubic(5.0), ["Fr", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(UnsupportedElementError, match=r"Fr is not supported.*supported_elements\(\)"):
        DeepInfoMaxFeaturizer(weights="untrained", pbar=False).featurize(francium)


def test_featurize_dataframe_follows_the_featurizers_pbar(capsys):
    """Before: featurize_dataframe showed a bar although the featuriser was built with pbar=False."""
    frame = load_sample("phonons").iloc[:5]
    DeepInfoMaxFeaturizer(weights="untrained", pbar=False).featurize_dataframe(frame, "structure")
    assert "%|" not in capsys.readouterr().err


def test_a_missing_optional_dependency_names_its_extra(monkeypatch):
    import sys

    from dim_featurizer.cluster import featurize_dask

    monkeypatch.setitem(sys.modules, "dask.bag", None)
    with pytest.raises(ImportError, match=r"pip install 'dim_featurizer\[dask\]'"):
        featurize_dask([], DeepInfoMaxFeaturizer(weights="untrained"))


# -- inputs people have ----------------------------------------------------------------------------------


def test_csv_with_a_cif_column_poscar_and_extended_xyz(tmp_path, examples, capsys):
    """Before: CSV tables of CIF text and extended-XYZ files could not be read."""
    pytest.importorskip("ase")
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor

    names = ["NaCl", "Si", "GaAs"]
    table = pd.DataFrame(
        {"name": names, "cif": [examples[n].to(fmt="cif") for n in names], "source": ["icsd", "mp", None]}
    )
    table.to_csv(tmp_path / "table.csv", index=False)
    args = [str(tmp_path / "table.csv"), "--column", "cif", "--id-column", "name", "--keep-columns", "source"]
    assert featurize_main([*args, *UNTRAINED, "-o", str(tmp_path / "a.csv")]) == 0
    out = pd.read_csv(tmp_path / "a.csv", index_col="id")
    assert list(out.index) == names and list(out.columns[:2]) == ["formula", "source"]
    assert out.loc["NaCl", "formula"] == "NaCl" and out.loc["Si", "source"] == "mp" and out["error"].isna().all()
    write(tmp_path / "frames.extxyz", [AseAtomsAdaptor.get_atoms(examples[n]) for n in names], format="extxyz")
    examples["NaCl"].to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    xyz = [str(tmp_path / "frames.extxyz"), str(tmp_path / "POSCAR")]
    assert featurize_main([*xyz, *UNTRAINED, "-o", str(tmp_path / "b.csv")]) == 0
    other = pd.read_csv(tmp_path / "b.csv", index_col="id")
    assert list(other.index) == ["frames#0", "frames#1", "frames#2", "POSCAR"]
    features = pd.concat([out, other]).filter(like="DIM_")
    np.testing.assert_allclose(features.loc["frames#0"], features.loc["NaCl"], atol=1e-5)
    np.testing.assert_allclose(features.loc["POSCAR"], features.loc["NaCl"], atol=1e-5)


def test_the_streaming_bar_knows_its_total(frame_path, tmp_path, sample_dir):
    """Before: the streaming bar showed no total, and loading a large frame showed no progress."""
    from dim_featurizer.readers import count_entries

    assert count_entries([frame_path]) == 300
    folder = tmp_path / "cifs"
    folder.mkdir()
    for path in example_files():
        shutil.copy(path, folder)
    assert count_entries([folder, frame_path]) == 308
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert count_entries([tmp_path / "no.csv"]) is None
