"""The Site-Net encoder with Deep InfoMax heads (docs/method.md §2).

Only the encoder lives here: it is what the featuriser runs. The score
networks and losses used in pretraining live in ``dim_featurizer.train``.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dim_featurizer.batching import Batch
from dim_featurizer.config import ModelConfig
from dim_featurizer.elements import element_table, supported_atomic_numbers

#: Most (site, neighbour) pairs per chunk of :meth:`LocalEncoder.environments`: ~4 MB per (pairs, 2h) tensor.
CACHE_PAIRS = 8192


class _MishFunction(torch.autograd.Function):
    """Mish with the closed forms below: forward and backward together are 4x faster than ``F.mish`` on CPU."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(torch.clamp(x, max=20.0))
        d = e * (e + 2.0) + 2.0  # n + 2
        ctx.save_for_backward(x, e, d)
        return x * (1.0 - 2.0 / d)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, e, d = ctx.saved_tensors
        # d/dx x·tanh(softplus(x)) = tanh(softplus(x)) + x·sech²(softplus(x))·σ(x) = n/(n+2) + 4x·e(e+1)/(n+2)²
        return grad * ((1.0 - 2.0 / d) + x * 4.0 * e * (e + 1.0) / (d * d))


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish, x·tanh(softplus(x)), computed as x − 2x/((1 + eˣ)² + 1).

    The same function as ``F.mish`` (within 1e-6 in float32; where eˣ overflows the result is x, as it
    should be), but ``F.mish`` is not vectorised well on CPU: this is ~2x faster without gradients (five
    passes, no temporaries but one) and 4x faster forward and backward together.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _MishFunction.apply(x)
    d = torch.exp(x).add_(1.0).square_().add_(1.0)
    return torch.addcdiv(x, x, d, value=-2.0)


class Mish(nn.Module):
    """:func:`mish` as a module (no parameters: state dicts are those of ``nn.Mish``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply :func:`mish`."""
        return mish(x)


def block(n_in: int, n_out: int) -> nn.Sequential:
    """Linear → Mish → LayerNorm, the network's building block."""
    return nn.Sequential(nn.Linear(n_in, n_out), Mish(), nn.LayerNorm(n_out))


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for an integer index of any shape; its backward (index_add) is ~2x faster on CPU."""
    return torch.index_select(table, 0, index.reshape(-1)).view(*index.shape, table.shape[-1])


def default_feature_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of the element table over supported elements; oxidation state (0, 1).

    The data-free standardisation of an untrained encoder; pretraining
    replaces it with statistics of its training sites.
    """
    table = element_table()[supported_atomic_numbers()]
    mean = np.append(table.mean(axis=0), 0.0)
    std = np.append(table.std(axis=0), 1.0)
    return tuple(mean.tolist()), tuple(std.tolist())


@dataclass
class EncoderOutput:
    """Encoder outputs for a batch of N sites in C crystals.

    Attributes:
        local_mu, local_logvar: (N, local_dim) μ_i and log σ²_i.
        global_mu, global_logvar: (C, global_dim) μ_G and log σ²_G.
    """

    local_mu: torch.Tensor
    local_logvar: torch.Tensor
    global_mu: torch.Tensor
    global_logvar: torch.Tensor


def pair_environments(
    distance_terms: torch.Tensor,
    inverse: torch.Tensor,
    neighbor: torch.Tensor,
    neighbor_index: torch.Tensor,
    center: torch.Tensor,
    rows: torch.Tensor,
    mask: torch.Tensor,
    heads: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The per-pair part of one attention block, for R rows of M pairs: the attention-weighted sum of values.

    Args:
        distance_terms: (D, 2h) both heads' first-layer terms of each distinct distance.
        inverse: (R, M) index of each pair's distance in ``distance_terms``.
        neighbor, center: (S, 2h) both heads' first-layer terms of each site as neighbour and as centre
            (the centre's carries the biases).
        neighbor_index: (R, M) index in ``neighbor`` of each pair's neighbour.
        rows: (R,) index in ``center`` of each row's central site.
        mask: (R, M) True for real neighbours.
        heads: the attention head's folded (weight (1, h), bias (1,)) and the value block's folded
            (weight (h, h), bias (h,)) (see :meth:`LocalEncoder.environments`).

    Returns:
        (R, h) the weighted sums, before the value block's final LayerNorm affine.
    """
    attention_weight, attention_bias, value_weight, value_bias = heads
    h = value_weight.shape[0]
    x = gather_rows(distance_terms, inverse)
    x += gather_rows(neighbor, neighbor_index)
    x += gather_rows(center, rows).unsqueeze(1)
    # Mish, then both heads' normalisation, on the contiguous (R, M, 2, h) tensor at once.
    x = F.layer_norm(mish(x).unflatten(-1, (2, h)), (h,))
    logits = F.linear(x[..., 0, :], attention_weight, attention_bias).squeeze(-1)
    logits = logits.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    values = F.layer_norm(mish(F.linear(x[..., 1, :], value_weight, value_bias)), (h,))
    return torch.einsum("rm,rmh->rh", weights, values)


def cpp_compiler() -> str | None:
    """The C++ compiler ``torch.compile`` would build CPU kernels with ($CXX, g++, c++ or clang++), or None."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    return next((path for name in [*names, "g++", "c++", "clang++"] if (path := shutil.which(name))), None)


@functools.cache
def compiled_pair_environments() -> Callable[..., torch.Tensor]:
    """:func:`pair_environments` through ``torch.compile`` (dynamic shapes; one compile per process, ~30 s
    on CPU, then faster: the elementwise passes fuse; see benchmarks/speed_cpu.txt). One shared object,
    so every encoder reuses it."""
    return torch.compile(pair_environments, dynamic=True)


class Attention(nn.Module):
    """The parameters of one attention block: weights from block(3h → h) → Linear(h → 1), values from
    block(3h → h) → block(h → h), both on B_ij = [h_i, h_a(ij), e_ij] (applied in split form by
    :meth:`LocalEncoder.environments`)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.attention_pre = block(3 * hidden, hidden)
        self.attention_out = nn.Linear(hidden, 1)
        self.value_pre = block(3 * hidden, hidden)
        self.value_out = block(hidden, hidden)


class LocalEncoder(nn.Module):
    """Site embeddings, attention blocks over each site's environment, and μ_i, log σ²_i.

    The first block's parameters sit on the encoder itself (the paper's single block, whose state-dict
    names every weights file has); further blocks (``config.attention_layers`` > 1) are in ``more``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        h = config.hidden
        self.hidden = h
        self.max_pairs = config.max_pairs
        self.site_embed = block(config.n_site_features, h)
        self.distance_embed = block(1, h)
        first = Attention(h)
        self.attention_pre, self.attention_out = first.attention_pre, first.attention_out
        self.value_pre, self.value_out = first.value_pre, first.value_out
        self.more = nn.ModuleList(Attention(h) for _ in range(config.attention_layers - 1))
        self.mu = nn.Linear(h, config.local_dim)
        self.logvar = nn.Linear(h, config.local_dim)
        self.register_buffer("feature_mean", torch.tensor(config.feature_mean), persistent=False)
        self.register_buffer("feature_std", torch.tensor(config.feature_std), persistent=False)
        self.distance_mean = float(config.distance_mean)
        self.distance_std = float(config.distance_std)
        #: The compiled pair kernel used without gradients, or None (eager); see :meth:`compile_pairs`.
        self.compiled_pairs: Callable[..., torch.Tensor] | None = None
        self.compiled_with_gradients = False

    def compile_pairs(self, enabled: bool = True, with_gradients: bool = False) -> None:
        """Run the per-pair work through ``torch.compile`` when gradients are off (inference), or not.

        ``with_gradients`` also uses it when they are on (training: the backward pass is compiled too).
        The values agree with the eager ones to 1e-5 (tested); the first batch of a process pays the compile.
        """
        if enabled and self.feature_mean.device.type == "cpu" and not cpp_compiler():
            raise ValueError(
                "torch.compile on CPU needs a C++ compiler (g++, clang++ or $CXX) and none is on PATH: "
                "install one, or leave compiling off"
            )
        self.compiled_pairs = compiled_pair_environments() if enabled else None
        self.compiled_with_gradients = enabled and with_gradients

    def embed_sites(self, site_features: torch.Tensor) -> torch.Tensor:
        """(S, 9) raw site features → (S, hidden) embeddings h."""
        return self.site_embed((site_features - self.feature_mean) / self.feature_std)

    def environments(
        self,
        sites: torch.Tensor,
        rows: torch.Tensor,
        neighbor_index: torch.Tensor,
        distances: torch.Tensor,
        mask: torch.Tensor,
        layer: Attention | None = None,
    ) -> torch.Tensor:
        """Attention-pooled environment vectors s_i.

        Args:
            sites: (S, hidden) site embeddings, the table both indices point into.
            rows: (R,) index of each environment's central site in ``sites``.
            neighbor_index: (R, M) index in ``sites`` of each neighbour's species.
            distances: (R, M) distances, Å.
            mask: (R, M) True for real neighbours.
            layer: the :class:`Attention` block to apply (default the first, on the encoder itself).

        Returns:
            (R, hidden) s_i. Rows are processed in chunks of at most
            ``max_pairs`` pairs (``CACHE_PAIRS`` without gradients), so memory
            stays bounded for huge cells.
        """
        h = self.hidden
        layer = self if layer is None else layer
        pre = (layer.attention_pre[0], layer.value_pre[0])
        weight = torch.cat([m.weight for m in pre])  # (2h, 3h): both heads at once
        bias = torch.cat([m.bias for m in pre])
        # Linear([h_i, h_j, e]) = W_i h_i + W_j h_j + W_e e: project each site once, not per pair.
        center = F.linear(sites, weight[:, :h], bias)
        neighbor = F.linear(sites, weight[:, h : 2 * h])
        # Each head's LayerNorm affine (γ, β) is folded into the linear layer after it, and the value
        # block's own affine is applied after the attention sum (the weights sum to 1): per pair, only
        # the parameter-free normalisations remain.
        attention_norm, value_norm = layer.attention_pre[2], layer.value_pre[2]
        attention_weight = layer.attention_out.weight * attention_norm.weight
        attention_bias = layer.attention_out.bias + layer.attention_out.weight @ attention_norm.bias
        value_linear, value_out_norm = layer.value_out[0], layer.value_out[2]
        value_weight = value_linear.weight * value_norm.weight
        value_bias = value_linear.bias + value_linear.weight @ value_norm.bias
        width = max(1, distances.shape[1])
        # Without gradients, small chunks keep the per-pair tensors in cache between their ~20 elementwise
        # passes; with them, every intermediate is kept for the backward pass anyway.
        chunk = self.max_pairs if torch.is_grad_enabled() else min(self.max_pairs, CACHE_PAIRS)
        step = max(1, chunk // width)
        pairs = self.compiled_pairs if self.compiled_with_gradients or not torch.is_grad_enabled() else None
        out = []
        for start in range(0, len(rows), step):
            stop = start + step
            # e_ij depends on d_ij alone: embed each distinct distance once.
            values, inverse = torch.unique(distances[start:stop], return_inverse=True)
            d = (values - self.distance_mean) / self.distance_std
            args = (
                F.linear(self.distance_embed(d.unsqueeze(-1)), weight[:, 2 * h :]),
                inverse,
                neighbor,
                neighbor_index[start:stop],
                center,
                rows[start:stop],
                mask[start:stop],
                (attention_weight, attention_bias, value_weight, value_bias),
            )
            # The compiled kernel is traced for sizes ≥ 2; sizes 0 and 1 would each cost a fresh compile.
            use = pairs if pairs is not None and min(*inverse.shape, len(values)) >= 2 else pair_environments
            out.append(use(*args))
        if not out:
            return sites.new_zeros((0, h))
        return torch.cat(out) * value_out_norm.weight + value_out_norm.bias

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (μ_i, log σ²_i), each (N, local_dim), for every unique site in the batch."""
        sites = self.embed_sites(batch.site_features)
        rows = torch.arange(len(sites), device=sites.device)
        graph = (rows, batch.neighbor_index, batch.distances, batch.mask)
        s = self.environments(sites, *graph)
        for layer in self.more:
            # Each site's embedding takes in its environment, so the next block reads one shell further.
            sites = sites + s
            s = self.environments(sites, *graph, layer=layer)
        return self.mu(s), self.logvar(s)


class GlobalEncoder(nn.Module):
    """Per-site MLP on μ_i, mean over each crystal's sites, then μ_G and log σ²_G."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pre = nn.Sequential(block(config.local_dim, config.hidden), block(config.hidden, config.global_hidden))
        self.post = block(config.global_hidden, config.hidden)
        self.mu = nn.Linear(config.hidden, config.global_dim)
        self.logvar = nn.Linear(config.hidden, config.global_dim)

    def pool(self, local_mu: torch.Tensor, crystal_index: torch.Tensor, n_crystals: int) -> torch.Tensor:
        """(C, global_hidden) mean over each crystal's sites of the per-site MLP on detached μ_i."""
        x = self.pre(local_mu.detach())
        total = x.new_zeros((n_crystals, x.shape[1])).index_add_(0, crystal_index, x)
        count = torch.bincount(crystal_index, minlength=n_crystals).clamp_min(1).to(x.dtype)
        return total / count.unsqueeze(1)

    def forward(
        self, local_mu: torch.Tensor, crystal_index: torch.Tensor, n_crystals: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, local_dim) μ_i and (N,) crystal index → (C, global_dim) μ_G and log σ²_G.

        μ_i is detached: global gradients never reach the local encoder.
        """
        hidden = self.post(self.pool(local_mu, crystal_index, n_crystals))
        return self.mu(hidden), self.logvar(hidden)


class SiteNetEncoder(nn.Module):
    """Local and global encoders together; ``embed`` gives the feature vectors μ_G."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        config = config or ModelConfig()
        if config.feature_mean is None or config.feature_std is None:
            mean, std = default_feature_stats()
            config = replace(config, feature_mean=config.feature_mean or mean, feature_std=config.feature_std or std)
        self.config = config
        self.local = LocalEncoder(config)
        self.global_ = GlobalEncoder(config)

    def forward(self, batch: Batch) -> EncoderOutput:
        """Run both encoders on a batch."""
        local_mu, local_logvar = self.local(batch)
        global_mu, global_logvar = self.global_(local_mu, batch.crystal_index, batch.n_crystals)
        return EncoderOutput(local_mu, local_logvar, global_mu, global_logvar)

    def represent(self, batch: Batch) -> torch.Tensor:
        """(C, feature_width) the noise-free feature vector of each crystal, with gradients (fine-tuning):
        μ_G, or the pooled layer when ``config.readout`` is ``"pooled"``."""
        local_mu, _ = self.local(batch)
        if self.config.readout == "pooled":
            return self.global_.pool(local_mu, batch.crystal_index, batch.n_crystals)
        return self.global_(local_mu, batch.crystal_index, batch.n_crystals)[0]

    @torch.no_grad()
    def embed(self, batch: Batch) -> torch.Tensor:
        """:meth:`represent` without gradients: the featuriser's vectors."""
        return self.represent(batch)

    @torch.no_grad()
    def readouts(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every representation of a batch, for probes: ``local_mu`` (N, local_dim), ``global_mu`` and
        ``global_logvar`` (C, global_dim), and ``pooled`` (C, global_hidden), the mean-pooled layer before
        the global bottleneck."""
        local_mu, _ = self.local(batch)
        pooled = self.global_.pool(local_mu, batch.crystal_index, batch.n_crystals)
        hidden = self.global_.post(pooled)
        return {
            "local_mu": local_mu,
            "global_mu": self.global_.mu(hidden),
            "global_logvar": self.global_.logvar(hidden),
            "pooled": pooled,
        }


def untrained_encoder(config: ModelConfig | None = None, seed: int = 0) -> SiteNetEncoder:
    """A seeded random initialisation: the paper's untrained control.

    The global RNG state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SiteNetEncoder(config)
