"""Streaming featurisation: parquet parts, shards and their merge, kill and resume, every input kind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile

import numpy as np
import pandas as pd
import pytest

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.cli import main
from dim_featurizer.errors import FeaturizationError
from dim_featurizer.readers import Entry, iter_entries
from dim_featurizer.stream import (
    chunk_key,
    featurize_to_parts,
    finished_parts,
    merge_parts,
    parse_shard,
    part_store,
    read_parts,
)

UNTRAINED = ["--weights", "untrained", "--device", "cpu", "--no-progress"]


def read_paths(inputs, column="structure", id_column=None) -> pd.Series:
    """Every structure of the inputs, read now, as a Series indexed by id."""
    entries = list(iter_entries(inputs, column, id_column))
    return pd.Series([e.load() for e in entries], index=pd.Index([e.id for e in entries], name="id"), dtype=object)


@pytest.fixture(scope="module")
def frame_path(sample_dir):
    return sample_dir / "mp2018_e_form_gap.json.gz"


@pytest.fixture(scope="module")
def reference(frame_path):
    """Vectors of the whole sample in one in-memory call, the baseline every streamed run must equal."""
    structures = read_paths([frame_path])
    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu", pbar=False)
    return pd.DataFrame(featurizer.transform(structures), index=structures.index, columns=featurizer.feature_labels())


def assert_same_vectors(table: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert list(table.index) == list(reference.index)
    np.testing.assert_allclose(table[reference.columns].to_numpy(), reference.to_numpy(), atol=1e-5)


@pytest.mark.slow
def test_shards_merge_into_the_single_process_vectors(tmp_path, frame_path, reference, capsys):
    out = tmp_path / "out"
    for shard in ("2/3", "0/3", "1/3"):  # any order
        assert main([str(frame_path), "--out-dir", str(out), "--chunk-size", "40", "--shard", shard, *UNTRAINED]) == 0
    # 300 entries in chunks of 40: 8 parts; shard i owns chunks k % 3 == i.
    records = {p.name: json.loads(p.read_text()) for p in (out / "shards").glob("*.json")}
    assert sorted(records["shard-1-of-3.json"]["written"]) == [1, 4, 7]
    assert all(r["n_entries"] == 300 and r["n_chunks"] == 8 for r in records.values())
    assert_same_vectors(read_parts(out), reference)
    assert_same_vectors(pd.read_parquet(out / "parts").set_index("id"), reference)  # one parquet dataset
    assert main(["--merge", str(out), "-o", str(tmp_path / "all.parquet")]) == 0
    assert_same_vectors(pd.read_parquet(tmp_path / "all.parquet").set_index("id"), reference)
    assert merge_parts(out, tmp_path / "all.csv") == 300
    assert_same_vectors(pd.read_csv(tmp_path / "all.csv", index_col=0), reference)
    assert "merged 300 rows" in capsys.readouterr().err


def test_missing_shard_is_named_and_other_settings_are_refused(tmp_path, frame_path):
    out = tmp_path / "out"
    assert main([str(frame_path), "--out-dir", str(out), "--chunk-size", "100", "--shard", "0/2", *UNTRAINED]) == 0
    with pytest.raises(FileNotFoundError, match=r"1 of 3 parts missing \(chunks \[1\]\).*shard\(s\) 1/2"):
        finished_parts(out)
    assert main(["--merge", str(out), "-o", str(tmp_path / "x.parquet")]) == 1
    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu")
    with pytest.raises(ValueError, match="chunk_size: folder has 100, this run 50"):
        featurize_to_parts([frame_path], out, featurizer, chunk_size=50, pbar=False)
    other_seed = DeepInfoMaxFeaturizer(weights="untrained", seed=1, device="cpu")
    with pytest.raises(ValueError, match="other settings.*weights"):
        featurize_to_parts([frame_path], out, other_seed, chunk_size=100, pbar=False)


@pytest.mark.slow
def test_crash_keeps_finished_parts_and_resume_never_redoes_them(tmp_path, frame_path, reference, monkeypatch):
    import dim_featurizer.stream as stream

    out, featurizer = tmp_path / "out", DeepInfoMaxFeaturizer(weights="untrained", device="cpu")
    real, calls = stream.featurize_entries, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "featurize_entries", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        featurize_to_parts([frame_path], out, featurizer, chunk_size=50, pbar=False)
    done = sorted((out / "parts").iterdir())
    assert [p.name for p in done] == ["part-000000.parquet", "part-000001.parquet"]
    stamps = {p: p.stat().st_mtime_ns for p in done}
    monkeypatch.setattr(stream, "featurize_entries", real)
    report = featurize_to_parts([frame_path], out, featurizer, chunk_size=50, pbar=False)
    # The record counts every part of the shard, not only those this run wrote.
    assert report.skipped == [0, 1] and report.written == [2, 3, 4, 5] and report.rows == 300
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert_same_vectors(read_parts(out), reference)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path, frame_path, reference):
    """A real kill -9: every part on disk is whole, and the rerun finishes only the rest."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "dim_featurizer.cli", str(frame_path), "--out-dir", str(out)]
    process = subprocess.Popen([*command, "--chunk-size", "8", *UNTRAINED], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any((out / "parts").glob("part-*.parquet")):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted((out / "parts").glob("part-*.parquet"))
    assert 1 <= len(done) < 38, "the run must be killed part-way for this test to mean anything"
    for p in done:
        assert len(pd.read_parquet(p)) == 8  # whole, never half-written
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done}
    assert main([str(frame_path), "--out-dir", str(out), "--chunk-size", "8", *UNTRAINED]) == 0
    assert all((p.stat().st_ino, p.stat().st_mtime_ns) == stamp for p, stamp in stamps.items())
    record = json.loads((out / "shards" / "shard-0-of-1.json").read_text())
    assert sorted(record["skipped"]) == sorted(int(p.stem.split("-")[1]) for p in done)
    assert_same_vectors(read_parts(out), reference)


def test_a_shard_reads_only_its_own_chunks(tmp_path, monkeypatch, examples):
    import dim_featurizer.stream as stream

    loaded: list[str] = []
    structures = list(examples.values())

    def entries(*args):
        for i in range(24):
            yield Entry(f"x{i}", lambda i=i: loaded.append(f"x{i}") or structures[i % len(structures)])

    monkeypatch.setattr(stream, "iter_entries", entries)
    monkeypatch.setattr(stream, "count_entries", lambda *args: 24)
    featurizer = DeepInfoMaxFeaturizer(weights="untrained", device="cpu")
    (tmp_path / "input").write_text("stands for the 24 entries")
    report = featurize_to_parts(
        [tmp_path / "input"], tmp_path / "out", featurizer, chunk_size=5, shard=(1, 2), pbar=False
    )
    assert report.written == [1, 3] and report.n_entries == 24 and report.n_chunks == 5
    assert loaded == [f"x{i}" for i in [*range(5, 10), *range(15, 20)]]


@pytest.mark.slow
def test_bad_entries_are_named_or_kept_as_nan_rows(tmp_path, frame_path):
    raw = json.loads(pd.read_json(frame_path, orient="split").to_json(orient="split"))
    position = raw["columns"].index("structure")
    raw["data"][70][position] = {"lattice": "not a lattice"}
    raw["data"][130][position]["sites"][0]["species"] = [{"element": "Xe", "occu": 0.5}]  # disordered
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    out = tmp_path / "out"
    # The dict reaches an encoding worker undecoded; its error names the entry and its id.
    named = rf"chunk 1 \(entries 50-99\): entry 20 \(id '{raw['index'][70]}'.*cannot read"
    with pytest.raises(FeaturizationError, match=named):
        featurize_to_parts([path], out, DeepInfoMaxFeaturizer(weights="untrained"), chunk_size=50, pbar=False)
    assert (
        part_store(out).done(chunk_key(0)) and not part_store(out).path(chunk_key(1)).exists()
    )  # finished work is kept
    code = main([str(path), "--out-dir", str(out), "--chunk-size", "50", "--ignore-errors", *UNTRAINED])
    assert code == 0
    table = read_parts(out)
    assert len(table) == 300 and table["error"].notna().sum() == 2
    assert "cannot read" in table.iloc[70]["error"] and np.isnan(table.iloc[70]["DIM_0"])
    assert "disordered" in table.iloc[130]["error"].lower()
    assert table.drop(index=table.index[[70, 130]])["DIM_0"].notna().all()


@pytest.mark.slow
def test_parquet_and_archive_inputs(tmp_path, examples, reference, frame_path):
    structures = read_paths([frame_path])
    frame = pd.DataFrame({"material": structures.index, "structure": [s.to_json() for s in structures]})
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / "out"
    args = [str(tmp_path / "in.parquet"), "--id-column", "material", "--out-dir", str(out), "--chunk-size", "128"]
    assert main([*args, *UNTRAINED]) == 0
    assert_same_vectors(read_parts(out), reference)
    # Ids from a stored pandas index; no id column given.
    frame.set_index("material").to_parquet(tmp_path / "indexed.parquet")
    assert [e.id for e in iter_entries([tmp_path / "indexed.parquet"])][:3] == list(reference.index[:3])
    with pytest.raises(KeyError, match="no column 'cif'"):
        next(iter_entries([tmp_path / "in.parquet"], column="cif"))

    # A struct column of pymatgen dicts (parquet cannot store empty dicts, so writers drop them).
    import pyarrow as pa
    import pyarrow.parquet as pq

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v != {}}
        return [strip(v) for v in value] if isinstance(value, list) else value

    table = pa.table({"id": list(examples), "structure": [strip(s.as_dict()) for s in examples.values()]})
    pq.write_table(table, tmp_path / "structs.parquet")
    structs = read_paths([tmp_path / "structs.parquet"], id_column="id")
    assert list(structs.index) == list(examples) and all(a.matches(b) for a, b in zip(structs, examples.values()))

    names = sorted(examples)
    with zipfile.ZipFile(tmp_path / "cifs.zip", "w") as archive:
        for name in names:
            archive.writestr(f"cifs/{name}.cif", examples[name].to(fmt="cif"))
    with tarfile.open(tmp_path / "cifs.tar.gz", "w:gz") as tar:
        for name in names:
            path = tmp_path / f"{name}.cif"
            path.write_text(examples[name].to(fmt="cif"))
            tar.add(path, arcname=f"{name}.cif")
    zipped = read_paths([tmp_path / "cifs.zip"])
    tarred = read_paths([tmp_path / "cifs.tar.gz"])
    assert list(zipped.index) == [f"cifs/{n}" for n in names] and list(tarred.index) == names
    assert all(a.matches(b) and a.matches(examples[n]) for a, b, n in zip(zipped, tarred, names))


def test_parse_shard():
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/2", "1", "a/b"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_kill_of_a_part_write_leaves_no_visible_part(tmp_path, monkeypatch):
    """The rename is the commit: a write that dies leaves neither the part nor its temporary file."""
    from dim_featurizer.files import write_atomically

    def dies_half_way(path):
        with open(path, "wb") as f:
            f.write(b"PAR1 half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "part-000000.parquet", dies_half_way)
    assert os.listdir(tmp_path) == []
