"""Weight sources: untrained, bundled (sha256 manifest), local folder, Hub cache (offline)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import run_python

from dim_featurizer import weights as W
from dim_featurizer.errors import WeightsError
from dim_featurizer.model import untrained_encoder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_untrained_is_seeded():
    a, info = W.load_weights("untrained", seed=1)
    b, _ = W.load_weights("untrained", seed=1)
    c, _ = W.load_weights("untrained", seed=2)
    assert info.source == "untrained"
    assert _same(a, b) and not _same(a, c)
    state = torch.random.get_rng_state()
    W.load_weights("untrained", seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_untrained_like_takes_the_shape_and_standardisation_of_other_weights(tmp_path):
    from dataclasses import replace

    from dim_featurizer.config import ModelConfig

    wide = replace(ModelConfig(), hidden=96, readout="pooled", distance_mean=3.0, distance_std=1.5)
    trained = untrained_encoder(wide, seed=7)
    W.save_pretrained(trained, tmp_path / "wide")
    control, info = W.load_weights(f"untrained:{tmp_path / 'wide'}", seed=1)
    assert info.source == "untrained" and info.name == f"untrained:{tmp_path / 'wide'}"
    assert control.config.hidden == 96 and control.config.readout == "pooled"
    assert control.config.distance_std == 1.5 and control.config.pretraining is None
    assert _same(control, untrained_encoder(replace(wide, weights_sha256=None), seed=1))  # fresh, seeded
    assert not _same(control, trained)
    with pytest.raises(WeightsError, match="names no weights"):
        W.load_weights("untrained:")
    with pytest.raises(WeightsError, match="nowhere"):
        W.load_weights("untrained:nowhere")


def test_local_directory(tmp_path):
    encoder = untrained_encoder(seed=4)
    W.save_pretrained(encoder, tmp_path / "mine")
    loaded, info = W.load_weights(tmp_path / "mine")
    assert info.source == "local" and _same(loaded, encoder)


@pytest.fixture
def fake_bundle(tmp_path, monkeypatch):
    root = tmp_path / "bundle"
    W.save_pretrained(untrained_encoder(seed=9), root / "toy")
    files = {name: W.sha256(root / "toy" / name) for name in ("config.json", "model.safetensors")}
    (root / "manifest.json").write_text(json.dumps({"_default": "toy", "toy": {"files": files}}))
    monkeypatch.setattr(W, "bundled_root", lambda: root)
    return root


def test_bundled_weights_are_checked_against_manifest(fake_bundle):
    assert W.bundled_names() == ["toy"] and W.default_weights() == "toy"
    loaded, info = W.load_weights()
    assert info.source == "bundled" and _same(loaded, untrained_encoder(seed=9))
    path = fake_bundle / "toy" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a tensor
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        W.load_weights("toy")


def test_error_names_every_source(tmp_path):
    with pytest.raises(WeightsError) as info:
        W.load_weights("someone/model", revision="main")
    message = str(info.value)
    assert "bundled:" in message and "local directory:" in message and "Hugging Face Hub:" in message
    assert "40-hex commit" in message
    with pytest.raises(WeightsError, match="not an 'owner/name' repo id"):
        W.load_weights(str(tmp_path / "nowhere" / "deeper" / "x"))


def make_hub_cache(cache, repo_id, commit, folder):
    """Lay out a huggingface_hub cache as the library writes it: blobs, refs, snapshots."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        blob = W.sha256(path)
        (repo / "blobs" / blob).write_bytes(path.read_bytes())
        os.symlink(os.path.join("..", "..", "blobs", blob), snapshot / path.name)


HUB_SCRIPT = """
import sys, torch
from dim_featurizer.weights import load_weights
model, info = load_weights(sys.argv[1], revision=sys.argv[2], cache_dir=sys.argv[3])
assert info.source == "hub", info
torch.save(model.state_dict(), sys.argv[4])
print(info.path)
"""


@pytest.mark.slow
@pytest.mark.parametrize("offline", [True, False])
def test_hub_code_path_against_a_local_cache(tmp_path, offline):
    encoder = untrained_encoder(seed=11)
    W.save_pretrained(encoder, tmp_path / "src")
    make_hub_cache(tmp_path / "cache", "dimtest/site-net-dim", COMMIT, tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # any network attempt fails at once, locally
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    out = tmp_path / "state.pt"
    args = ["dimtest/site-net-dim", COMMIT, str(tmp_path / "cache"), str(out)]
    run = run_python(["-c", HUB_SCRIPT, *args], env=env)
    assert run.returncode == 0, run.stderr
    assert COMMIT in run.stdout
    state = torch.load(out, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in encoder.state_dict().items())
    # A commit that is not in the cache is reported with every source tried.
    args[1] = "f" * 40
    run = run_python(["-c", HUB_SCRIPT, *args], env=env)
    assert run.returncode != 0 and "Hugging Face Hub:" in run.stderr and "bundled:" in run.stderr
    assert "is not in the Hub cache" in run.stderr  # said at once, not after the library's retries
    assert ("HF_HUB_OFFLINE is set" if offline else "cannot connect to http://127.0.0.1:9") in run.stderr


@pytest.mark.slow
def test_publish_fails_fast_with_the_reason(tmp_path):
    W.save_pretrained(untrained_encoder(), tmp_path / "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    cmd = ["-m", "dim_featurizer.train.cli", "publish", tmp_path / "w", "--repo-id", "a/b"]
    run = run_python(cmd, env=env, timeout=120)
    assert run.returncode == 1 and "it lacks README.md" in run.stderr
    (tmp_path / "w" / "README.md").write_text("card\n")
    run = run_python(cmd, env=env, timeout=120)
    assert run.returncode == 1 and "no Hub token" in run.stderr
    run = run_python(cmd, env=env | {"HF_TOKEN": "hf_x"}, timeout=120)
    assert run.returncode == 1 and "cannot connect to http://127.0.0.1:9" in run.stderr, run.stderr[-2000:]
