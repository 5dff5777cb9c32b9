"""The encoder: architecture per docs/method.md §2, configs, strict safetensors I/O."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dim_featurizer.batching import collate
from dim_featurizer.config import EncodingConfig, ModelConfig
from dim_featurizer.encoding import encode_structure
from dim_featurizer.errors import WeightsError
from dim_featurizer.model import SiteNetEncoder, cpp_compiler, untrained_encoder
from dim_featurizer.weights import load_pretrained, save_pretrained, sha256

needs_cxx = pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")


@pytest.fixture(scope="module")
def batch(real_structures):
    return collate([encode_structure(s) for s in real_structures[:10]])


def reference_local(encoder, batch):
    """docs/method.md §2 written out literally: build B_ij = [h_i, h_a(ij), e_ij] and apply the blocks; each
    further attention block reads h_i + s_i of the block before."""
    lo = encoder.local
    h = lo.embed_sites(batch.site_features)
    d = (batch.distances - lo.distance_mean) / lo.distance_std
    e = lo.distance_embed(d.unsqueeze(-1))
    s = None
    for layer in [lo, *lo.more]:
        h = h if s is None else h + s
        b = torch.cat([h.unsqueeze(1).expand(-1, e.shape[1], -1), h[batch.neighbor_index], e], dim=-1)
        logits = layer.attention_out(layer.attention_pre(b)).squeeze(-1).masked_fill(~batch.mask, float("-inf"))
        values = layer.value_out(layer.value_pre(b))
        s = (torch.softmax(logits, -1).unsqueeze(-1) * values).sum(1)
    return lo.mu(s), lo.logvar(s)


def trained_like_encoder(seed: int = 3, layers: int = 1) -> SiteNetEncoder:
    """An untrained encoder whose LayerNorm scales and shifts are not the identity (as after training), so
    that folding them into the neighbouring layers is tested."""
    encoder = untrained_encoder(ModelConfig(attention_layers=layers), seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1.0 + 0.5 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=generator))
    return encoder


@pytest.mark.parametrize("layers", [1, 2])
def test_fast_path_equals_literal_architecture(batch, layers):
    encoder = trained_like_encoder(layers=layers)
    with torch.no_grad():
        mu, logvar = encoder.local(batch)
        ref_mu, ref_logvar = reference_local(encoder, batch)
    torch.testing.assert_close(mu, ref_mu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logvar, ref_logvar, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_fast_path_has_the_literal_architectures_gradients(batch, layers):
    encoder = trained_like_encoder(layers=layers)
    grads = []
    for local in (encoder.local, lambda b: reference_local(encoder, b)):
        encoder.zero_grad()
        mu, logvar = local(batch)
        (mu.square().mean() + logvar.tanh().sum()).backward()
        grads.append({n: p.grad.clone() for n, p in encoder.local.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-4, rtol=1e-4, msg=name)


def test_shapes_and_noise_free_embedding(batch):
    encoder = untrained_encoder()
    out = encoder(batch)
    assert out.local_mu.shape == (len(batch.site_features), 32)
    assert out.global_mu.shape == (10, 128) and out.global_logvar.shape == (10, 128)
    torch.testing.assert_close(encoder.embed(batch), out.global_mu.detach())
    torch.testing.assert_close(encoder.embed(batch), encoder.embed(batch), atol=0, rtol=0)


def test_pair_chunking_does_not_change_results(batch):
    small = untrained_encoder(ModelConfig(max_pairs=97))
    large = untrained_encoder(ModelConfig(max_pairs=10**7))  # chunks of CACHE_PAIRS
    torch.testing.assert_close(small.embed(batch), large.embed(batch), atol=1e-5, rtol=1e-5)


def test_compiled_pair_kernel_is_used_only_without_gradients_and_for_sizes_of_two_or_more(batch):
    from dim_featurizer.model import pair_environments

    shapes = []

    def spy(*args):
        shapes.append(tuple(args[1].shape))
        return pair_environments(*args)

    encoder = trained_like_encoder()
    with torch.no_grad():
        eager = encoder.local(batch)[0]
    encoder.local.compiled_pairs = spy
    with torch.no_grad():
        torch.testing.assert_close(encoder.local(batch)[0], eager, atol=0, rtol=0)
        assert shapes and all(min(shape) >= 2 for shape in shapes)
        shapes.clear()
        one = collate([encode_structure(s) for s in real_structures_with_one_site()])
        encoder.local(one)
    assert not shapes  # a single-site, single-atom batch stays eager: no recompile for size 1
    encoder.local(batch)[0].sum().backward()
    assert not shapes  # training (gradients on) always runs eager
    encoder.local.compile_pairs(False)
    assert encoder.local.compiled_pairs is None


def real_structures_with_one_site():
    from pymatgen.core import Lattice, Structure

    return [Structure(Lattice.cubic(8.0), ["Cs"], [[0, 0, 0]])]


def test_compiling_without_a_cpp_compiler_is_one_clear_error(monkeypatch):
    import dim_featurizer.model as model

    monkeypatch.setattr(model.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        untrained_encoder().local.compile_pairs()


@pytest.mark.slow
@needs_cxx
def test_compiled_network_gives_the_eager_vectors(real_structures):
    from dim_featurizer import DeepInfoMaxFeaturizer

    structures = [*real_structures[:40], *real_structures_with_one_site()]
    eager = DeepInfoMaxFeaturizer(device="cpu", pbar=False).featurize_many(structures, pbar=False)
    compiled = DeepInfoMaxFeaturizer(device="cpu", pbar=False, compile_network=True)
    assert compiled.runner().model.local.compiled_pairs is not None
    np.testing.assert_allclose(compiled.featurize_many(structures, pbar=False), eager, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@needs_cxx
def test_compiled_pair_kernel_with_gradients_gives_the_eager_gradients(batch):
    encoder = trained_like_encoder()
    grads = []
    for compiled in (False, True):
        encoder.local.compile_pairs(compiled, with_gradients=True)
        encoder.zero_grad()
        mu, logvar = encoder.local(batch)
        (mu.square().mean() + logvar.tanh().sum()).backward()
        grads.append({n: p.grad.clone() for n, p in encoder.local.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-4, rtol=1e-4, msg=name)


def test_global_gradient_never_reaches_local_encoder(batch):
    encoder = untrained_encoder()
    encoder(batch).global_mu.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in encoder.local.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.global_.parameters())


def test_config_round_trip(tmp_path):
    config = ModelConfig(global_dim=64, encoding=EncodingConfig(max_atoms=80, oxidation="guess"))
    assert ModelConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    (tmp_path / "c.json").write_text(config.to_json())
    assert ModelConfig.from_json_file(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**config.as_dict(), "heads": 4})
    with pytest.raises(ValueError, match="oxidation"):
        EncodingConfig(oxidation="bond-valence")
    with pytest.raises(ValueError, match="attention_layers"):
        ModelConfig(attention_layers=0)


def test_second_attention_block_adds_parameters_and_keeps_the_first_blocks_names(tmp_path, batch):
    one, two = untrained_encoder(), untrained_encoder(ModelConfig(attention_layers=2))
    added = set(two.state_dict()) - set(one.state_dict())
    assert set(one.state_dict()) < set(two.state_dict()) and added and all(k.startswith("local.more.0.") for k in added)
    # Same seed, same first block: the extra block is drawn after it.
    torch.testing.assert_close(two.local.attention_pre[0].weight, one.local.attention_pre[0].weight)
    assert not torch.allclose(one.embed(batch), two.embed(batch))
    save_pretrained(two, tmp_path)
    loaded = load_pretrained(tmp_path)
    assert loaded.config.attention_layers == 2
    torch.testing.assert_close(loaded.embed(batch), two.embed(batch), atol=0, rtol=0)


def test_save_load_round_trip(tmp_path, batch):
    encoder = untrained_encoder(seed=7)
    save_pretrained(encoder, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    loaded = load_pretrained(tmp_path)
    assert replace(loaded.config, weights_sha256=None) == encoder.config
    assert loaded.config.weights_sha256 == sha256(tmp_path / "model.safetensors")  # recorded, and checked
    torch.testing.assert_close(loaded.embed(batch), encoder.embed(batch), atol=0, rtol=0)


def _rewrite(tmp_path, mutate):
    from safetensors.torch import load_file, save_file

    save_pretrained(untrained_encoder(), tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    mutate(state)
    save_file(state, str(tmp_path / "model.safetensors"))
    _record_sha(tmp_path)


def _record_sha(folder, config=None):
    """Record the file's new sha256 in config.json, as a deliberate re-save would."""
    config = config or ModelConfig.from_json_file(folder / "config.json")
    config = replace(config, weights_sha256=sha256(folder / "model.safetensors"))
    (folder / "config.json").write_text(config.to_json())


def test_strict_loading_missing_tensor(tmp_path):
    _rewrite(tmp_path, lambda s: s.pop("global_.mu.weight"))
    with pytest.raises(WeightsError, match="global_.mu.weight"):
        load_pretrained(tmp_path)


def test_strict_loading_extra_tensor(tmp_path):
    _rewrite(tmp_path, lambda s: s.__setitem__("decoder.weight", torch.zeros(3)))
    with pytest.raises(WeightsError, match="decoder.weight"):
        load_pretrained(tmp_path)


def test_strict_loading_wrong_shape(tmp_path):
    save_pretrained(untrained_encoder(), tmp_path)
    _record_sha(tmp_path, replace(SiteNetEncoder().config, global_dim=64))
    with pytest.raises(WeightsError, match="do not match"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_corrupt_weights_file_is_named(tmp_path, damage):
    save_pretrained(untrained_encoder(), tmp_path)
    path = tmp_path / "model.safetensors"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 64)
    else:  # a torch pickle under the safetensors name is refused, never unpickled
        torch.save(untrained_encoder().state_dict(), path)
    with pytest.raises(WeightsError, match="model.safetensors"):
        load_pretrained(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(WeightsError, match="config.json"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("where", ["local", "hub-cache"])
def test_a_flipped_byte_in_the_tensors_is_refused_with_both_hashes(tmp_path, where):
    """Local folders and Hub-cache snapshots are checked like bundled ones (before: loaded silently)."""
    folder = tmp_path / ("mine" if where == "local" else "snapshots/abc")
    save_pretrained(untrained_encoder(seed=3), folder)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the tensor data: the file still parses
    path.write_bytes(bytes(data))
    expected = ModelConfig.from_json_file(folder / "config.json").weights_sha256
    with pytest.raises(WeightsError) as info:
        load_pretrained(folder)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and expected in message and sha256(path) in message


def test_a_folder_without_a_recorded_hash_is_refused(tmp_path):
    save_pretrained(untrained_encoder(), tmp_path)
    config = ModelConfig.from_json_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(replace(config, weights_sha256=None).to_json())
    with pytest.raises(WeightsError, match="records no weights_sha256"):
        load_pretrained(tmp_path)


def test_mish_is_torchs_mish_in_value_and_gradient():
    from dim_featurizer.model import mish

    x = torch.cat(
        [torch.randn(10_000) * 4, torch.tensor([-100.0, -30.0, 0.0, 19.9, 20.0, 21.0, 50.0, 88.0, 89.0, 1e3, 1e30])]
    )
    np.testing.assert_allclose(mish(x), F.mish(x), atol=2e-6, rtol=1e-6)
    x = x[x.abs() < 1e3]  # the gradient's closed form clamps at 20
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    mish(a).sum().backward()
    F.mish(b).sum().backward()
    np.testing.assert_allclose(a.grad, b.grad, atol=2e-6)
