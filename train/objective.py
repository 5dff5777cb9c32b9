"""Deep InfoMax objectives: score networks, Jensen-Shannon and KL losses (docs/method.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from dim_featurizer.batching import Batch
from dim_featurizer.elements import ELEMENT_PROPERTIES
from dim_featurizer.model import Mish, SiteNetEncoder, gather_rows, mish

from .samples import TrainingSample
from .targets import CRYSTAL_STATISTICS, MAGPIE_PROPERTIES, crystal_statistics, magpie_targets

SCORE_DIM = 128
LOCAL_SAMPLE_HIDDEN = 64


class ScoreNet(nn.Module):
    """Linear → Mish → Linear into the shared 128-d score space."""

    def __init__(self, n_in: int, hidden: int = SCORE_DIM, n_out: int = SCORE_DIM) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_in, hidden)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(mish(self.hidden(x)))


#: Neighbours within this factor of the nearest-neighbour distance form the first shell.
SHELL_FACTOR = 1.2
#: Share of a batch's unique sites hidden by masked-site prediction.
MASK_FRACTION = 0.15
#: Standard deviation of the isotropic strain of an augmented (jittered) view.
STRAIN = 0.01
#: Shortest distance (Å) a jittered pair may reach.
MIN_JITTERED_DISTANCE = 0.1


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)), mean over dimensions and rows."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).mean()


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I) drawn from ``generator``."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + (0.5 * logvar).exp() * eps


def jittered_view(batch: Batch, jitter: float, generator: torch.Generator | None) -> Batch:
    """A thermally jittered, slightly strained view of ``batch``: an augmented *true* sample (paper §4.5).

    Each crystal draws its own displacement scale σ_c ~ U(0, ``jitter``) Å and an isotropic strain
    ε_c ~ N(0, :data:`STRAIN`²); every (site, atom) distance becomes d(1 + ε_c) + √2·σ_c·z, z ~ N(0, 1),
    the spread of the distance between two atoms each displaced by N(0, σ_c²) along the bond (pairs are
    jittered independently: a view of the distances, not a re-encoded geometry). Self pairs and padding
    stay 0; no distance falls below :data:`MIN_JITTERED_DISTANCE`.
    """
    d = batch.distances
    n = batch.n_crystals
    sigma = jitter * torch.rand(n, generator=generator, device=d.device, dtype=d.dtype)
    strain = 1.0 + STRAIN * torch.randn(n, generator=generator, device=d.device, dtype=d.dtype)
    noise = torch.randn(d.shape, generator=generator, device=d.device, dtype=d.dtype)
    row = batch.crystal_index
    moved = d * strain[row].unsqueeze(1) + (2.0**0.5) * sigma[row].unsqueeze(1) * noise
    return replace(batch, distances=torch.where(d > 0, moved.clamp_min(MIN_JITTERED_DISTANCE), d))


def first_shell(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's nearest-neighbour distance (N,), Å (inf for a site with no other atom), and its first shell:
    (N, M) 0/1 weights of every other atom within :data:`SHELL_FACTOR` × that distance."""
    d, real = batch.distances, batch.mask & (batch.distances > 1e-6)
    nearest = torch.where(real, d, torch.inf).min(dim=1).values
    return nearest, (real & (d <= SHELL_FACTOR * nearest.unsqueeze(1))).to(d.dtype)


def _scatter_mean(values: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    total = values.new_zeros(n).index_add_(0, index, values)
    return total / torch.bincount(index, minlength=n).clamp_min(1).to(values.dtype)


@dataclass
class Losses:
    """Scalar losses of one step; ``total`` is what is minimised."""

    local_js: torch.Tensor
    local_kl: torch.Tensor
    global_js: torch.Tensor
    global_kl: torch.Tensor
    reconstruction: torch.Tensor
    masked: torch.Tensor
    shell: torch.Tensor
    elements: torch.Tensor
    total: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in self.__dict__.items()}


class DeepInfoMax(nn.Module):
    """The encoder plus the four score networks; ``forward`` returns the step's losses.

    Args:
        encoder: the Site-Net encoder being pretrained.
        alpha, beta: weights of the JS and KL terms (1 and 0.1).
        only_other: use only the "other environment" / "other crystal"
            false samples (the paper's Fig. 11 ablation).
        local_weighting: ``"uniform"`` or ``"distance"`` (``TrainConfig.local_weighting``).
        local_sample: ``"neighbour"`` or ``"pair"`` (``TrainConfig.local_sample``).
        reconstruction: weight of the label-free reconstruction term; its two
            decoders exist only when it is positive, so older checkpoints load.
        masked_sites: weight of masked-site prediction (``TrainConfig.masked_sites``); its decoder exists
            only when it is positive.
        jitter: largest displacement scale (Å) of the augmented true samples (``TrainConfig.jitter``; 0: off).
        shell_reconstruction: weight of the first-shell reconstruction term (``TrainConfig.shell_reconstruction``);
            its decoder exists only when it is positive.
        element_reconstruction: weight of the Magpie element-table term (``TrainConfig.element_reconstruction``);
            its two decoders exist only when it is positive.
    """

    def __init__(
        self,
        encoder: SiteNetEncoder,
        alpha: float = 1.0,
        beta: float = 0.1,
        only_other: bool = False,
        local_weighting: str = "uniform",
        reconstruction: float = 0.0,
        local_sample: str = "neighbour",
        masked_sites: float = 0.0,
        jitter: float = 0.0,
        shell_reconstruction: float = 0.0,
        element_reconstruction: float = 0.0,
    ):
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.alpha, self.beta, self.only_other = alpha, beta, only_other
        self.local_weighting, self.reconstruction, self.local_sample_kind = (
            local_weighting,
            reconstruction,
            local_sample,
        )
        if reconstruction > 0:
            n = len(ELEMENT_PROPERTIES)
            self.local_decoder = nn.Sequential(nn.Linear(config.local_dim, 64), Mish(), nn.Linear(64, n))
            self.global_decoder = nn.Sequential(nn.Linear(config.global_dim, 64), Mish(), nn.Linear(64, n))
        self.masked_sites = masked_sites
        self.jitter = jitter
        self.shell_reconstruction = shell_reconstruction
        if shell_reconstruction > 0:  # the shell's mean element properties, log coordination number, d_nn
            n = len(ELEMENT_PROPERTIES) + 2
            self.shell_decoder = nn.Sequential(nn.Linear(config.local_dim, 64), Mish(), nn.Linear(64, n))
        self.element_reconstruction = element_reconstruction
        if element_reconstruction > 0:
            n = len(MAGPIE_PROPERTIES)
            self.element_decoder = nn.Sequential(nn.Linear(config.local_dim, 64), Mish(), nn.Linear(64, n))
            width = n * len(CRYSTAL_STATISTICS)
            self.composition_decoder = nn.Sequential(nn.Linear(config.global_dim, 128), Mish(), nn.Linear(128, width))
            # Not saved: rebuilt from matminer's tables, so checkpoints stay tensors of the networks only.
            self.register_buffer("magpie", torch.from_numpy(magpie_targets()), persistent=False)
        if masked_sites > 0:
            n = len(ELEMENT_PROPERTIES)
            self.masked_decoder = nn.Sequential(nn.Linear(config.local_dim, 64), Mish(), nn.Linear(64, n))
        self.local_rep = ScoreNet(config.local_dim)
        # Narrow hidden layer: this net runs on every pair four times (true + three false).
        # A local sample is (neighbour's site features, distance), or with local_sample="pair" the paper's
        # "two atoms and a distance": (neighbour, centre, distance).
        width = config.n_site_features * (2 if local_sample == "pair" else 1) + 1
        self.local_sample = ScoreNet(width, hidden=LOCAL_SAMPLE_HIDDEN)
        self.global_rep = ScoreNet(config.global_dim)
        self.global_sample = ScoreNet(config.local_dim)

    # -- local ---------------------------------------------------------------
    def _pair_scores(self, q, offset, sites, index, distance, centre=None) -> torch.Tensor:
        """T for pairs (site features of ``index``, ``distance``) against each row's representation.

        ``centre`` (rows × hidden), when given, is each row's centre atom already projected by its
        slice of the first layer. Uses T = r·(W₂ g + b₂) = (W₂ᵀ r)·g + r·b₂, so no pair goes through
        the 128×128 layer.
        """
        w = self.local_sample.hidden.weight
        lo = self.encoder.local
        d = (distance - lo.distance_mean) / lo.distance_std
        x = gather_rows(sites, index) + d.unsqueeze(-1) * w[:, -1] + self.local_sample.hidden.bias
        g = mish(x if centre is None else x + centre.unsqueeze(1))
        return torch.einsum("nh,nmh->nm", q, g) + offset.unsqueeze(1)

    def local_terms(self, sample: TrainingSample, mu: torch.Tensor, logvar: torch.Tensor, generator):
        """Per-pair JS terms.

        Returns:
            softplus(−T) of the real pairs (rows × neighbours), softplus(T) of
            each false kind stacked in front (other environment, then false
            geometry and false composition unless ``only_other``), and the
            mask of real pairs.
        """
        batch = sample.real
        rep = self.local_rep(reparameterise(mu, logvar, generator))
        q = rep @ self.local_sample.out.weight
        offset = rep @ self.local_sample.out.bias
        lo = self.encoder.local
        standard = (batch.site_features - lo.feature_mean) / lo.feature_std
        n = batch.site_features.shape[1]
        sites = F.linear(standard, self.local_sample.hidden.weight[:, :n])
        own = donor = None
        if self.local_sample_kind == "pair":
            own = F.linear(standard, self.local_sample.hidden.weight[:, n : 2 * n])
            donor = own[sample.donor_row]  # another environment brings its own centre atom
        rows = sample.donor_row.unsqueeze(1)
        donor_index = batch.neighbor_index[rows, sample.donor_col]
        donor_distance = batch.distances[rows, sample.donor_col]
        true = self._pair_scores(q, offset, sites, batch.neighbor_index, batch.distances, own)
        false = [self._pair_scores(q, offset, sites, donor_index, donor_distance, donor)]  # other environment
        if not self.only_other:
            false.append(self._pair_scores(q, offset, sites, batch.neighbor_index, donor_distance, own))  # geometry
            false.append(self._pair_scores(q, offset, sites, donor_index, batch.distances, own))  # composition
        return F.softplus(-true), torch.stack([F.softplus(t) for t in false]), batch.mask

    def local_loss(self, sample: TrainingSample, mu: torch.Tensor, logvar: torch.Tensor, generator) -> torch.Tensor:
        """Local JS: the plain mean over real pairs, or the (d + 1)⁻²-weighted mean per site, then crystals."""
        true_term, false_terms, mask = self.local_terms(sample, mu, logvar, generator)
        # Weighted sums, not term[mask]: boolean indexing's backward is not deterministic on CPU threads.
        mask = mask.to(true_term.dtype)
        if self.local_weighting == "uniform":
            return ((true_term + false_terms.mean(0)) * mask).sum() / mask.sum()
        batch = sample.real
        own = batch.distances
        donor = batch.distances[sample.donor_row.unsqueeze(1), sample.donor_col]
        # Distances behind each term: true, other environment, then false geometry and false composition.
        distances = [own, donor] + ([] if self.only_other else [donor, own])

        def site_mean(term: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            weight = mask / (d + 1.0) ** 2  # the self pair (d = 0) weighs 1
            return (term * weight).sum(1) / weight.sum(1)

        false = torch.stack([site_mean(t, d) for t, d in zip(false_terms, distances[1:])]).mean(0)
        per_site = site_mean(true_term, own) + false
        return _scatter_mean(per_site, batch.crystal_index, batch.n_crystals).mean()

    def reconstruction_loss(self, sample: TrainingSample, local_mu: torch.Tensor, global_mu: torch.Tensor):
        """MSE of the decoders: centre-site standardised element properties from μ_i, their crystal mean from μ_G.

        Gradients reach the local encoder through μ_i and the global encoder through μ_G (label-free).
        """
        batch, lo = sample.real, self.encoder.local
        n = len(ELEMENT_PROPERTIES)
        target = (batch.site_features[:, :n] - lo.feature_mean[:n]) / lo.feature_std[:n]
        crystal = torch.stack([_scatter_mean(target[:, k], batch.crystal_index, batch.n_crystals) for k in range(n)], 1)
        local = F.mse_loss(self.local_decoder(local_mu), target)
        return local + F.mse_loss(self.global_decoder(global_mu), crystal)

    def shell_loss(self, sample: TrainingSample, local_mu: torch.Tensor) -> torch.Tensor:
        """MSE of a decoder predicting each site's first shell from μ_i: the shell's mean standardised element
        properties, the log of its coordination number and the standardised nearest-neighbour distance.

        Sites with no other atom are left out. Label-free; gradients reach the local encoder through μ_i.
        """
        batch, lo = sample.real, self.encoder.local
        n = len(ELEMENT_PROPERTIES)
        nearest, shell = first_shell(batch)
        count = shell.sum(1).clamp_min(1)
        properties = (batch.site_features[:, :n] - lo.feature_mean[:n]) / lo.feature_std[:n]
        composition = (gather_rows(properties, batch.neighbor_index) * shell.unsqueeze(-1)).sum(1) / count[:, None]
        present = torch.isfinite(nearest)
        distance = torch.where(present, (nearest - lo.distance_mean) / lo.distance_std, 0.0)
        target = torch.cat([composition, count.log().unsqueeze(1), distance.unsqueeze(1)], 1)
        weight = present.to(target.dtype).unsqueeze(1)
        error = (self.shell_decoder(local_mu) - target).pow(2) * weight
        return error.sum() / (weight.sum().clamp_min(1) * target.shape[1])

    def element_loss(self, sample: TrainingSample, local_mu: torch.Tensor, global_mu: torch.Tensor) -> torch.Tensor:
        """MSE of two decoders: each site's standardised Magpie element properties from μ_i, and its crystal's
        Magpie statistics of them (mean, mean absolute deviation, minimum, maximum) from μ_G (label-free).

        Gradients reach the local encoder through μ_i and the global encoder through μ_G.
        """
        batch = sample.real
        z = batch.site_features[:, 0].round().long()  # the first site feature is the atomic number
        target = self.magpie.to(local_mu.dtype)[z]
        crystal = crystal_statistics(target, batch.crystal_index, batch.n_crystals)
        local = F.mse_loss(self.element_decoder(local_mu), target)
        return local + F.mse_loss(self.composition_decoder(global_mu), crystal)

    def masked_site_loss(self, sample: TrainingSample, generator: torch.Generator | None) -> torch.Tensor:
        """MSE of predicting hidden sites' standardised element properties from their environment.

        A fraction :data:`MASK_FRACTION` of the batch's unique sites (at least one) have their site features
        set to the standardisation mean, so every image of them in the supercells is hidden too; the local
        encoder runs on that batch and a decoder reads the hidden sites' μ_i. Label-free.
        """
        batch, lo = sample.real, self.encoder.local
        n_rows = batch.site_features.shape[0]
        draw = torch.rand(n_rows, generator=generator, device=batch.site_features.device)
        hidden = draw < MASK_FRACTION
        hidden[torch.argmin(draw)] = True
        features = torch.where(hidden.unsqueeze(1), lo.feature_mean.to(batch.site_features.dtype), batch.site_features)
        masked_mu, _ = lo(replace(batch, site_features=features))
        n = len(ELEMENT_PROPERTIES)
        target = (batch.site_features[:, :n] - lo.feature_mean[:n]) / lo.feature_std[:n]
        weight = hidden.to(target.dtype).unsqueeze(1)  # weighted sums: deterministic, unlike boolean indexing
        error = (self.masked_decoder(masked_mu) - target).pow(2) * weight
        return error.sum() / (weight.sum() * n)

    # -- global --------------------------------------------------------------
    @torch.no_grad()
    def _frozen_environments(self, batch) -> torch.Tensor:
        return self.encoder.local(batch)[0]

    def global_terms(
        self, sample: TrainingSample, local_mu: torch.Tensor, generator, environments: torch.Tensor | None = None
    ):
        """Per-crystal JS terms. μ_G is computed from ``local_mu``; its true samples are ``environments``
        (default ``local_mu`` itself; the clean crystal's when ``local_mu`` is of a jittered view).

        Returns:
            the real term (crystals,), the false terms (kinds × crystals: other
            crystal, then false polymorph, composition, permutation and (when on) vacancy unless
            ``only_other``), their weights (0 where a false sample equals the
            real crystal), and μ and log σ² of the global representation.
        """
        real = sample.real
        mu, logvar = self.encoder.global_(local_mu, real.crystal_index, real.n_crystals)
        rep = self.global_rep(reparameterise(mu, logvar, generator))
        n = real.n_crystals
        environments = (local_mu if environments is None else environments).detach()
        true = (rep[real.crystal_index] * self.global_sample(environments)).sum(-1)
        true_term = _scatter_mean(F.softplus(-true), real.crystal_index, n)
        # "Other crystal": crystal c scores the environments of other_crystal[c].
        owner = torch.empty_like(sample.other_crystal)
        owner[sample.other_crystal] = torch.arange(n, device=owner.device)
        row_owner = owner[real.crystal_index]
        other = (rep[row_owner] * self.global_sample(environments)).sum(-1)
        false_terms = [_scatter_mean(F.softplus(other), row_owner, n)]
        weights = [torch.ones(n, device=rep.device)]
        if not self.only_other:
            for kind, valid in zip(sample.false_crystals(), sample.valid):
                fake = self.global_sample(self._frozen_environments(kind))
                score = (rep[kind.crystal_index] * fake).sum(-1)
                false_terms.append(_scatter_mean(F.softplus(score), kind.crystal_index, n))
                weights.append(valid.to(rep.dtype))
        return true_term, torch.stack(false_terms), torch.stack(weights), mu, logvar

    def global_loss(
        self, sample: TrainingSample, local_mu: torch.Tensor, generator, environments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global JS over each crystal's environments, the global KL, and μ_G (arguments as :meth:`global_terms`)."""
        true_term, false_terms, weights, mu, logvar = self.global_terms(sample, local_mu, generator, environments)
        false_term = (false_terms * weights).sum(0) / weights.sum(0)
        return (true_term + false_term).mean(), gaussian_kl(mu, logvar), mu

    def forward(self, sample: TrainingSample, generator: torch.Generator | None = None) -> Losses:
        """All losses for one step: α·JS + β·KL at each level, summed, plus the reconstruction term when on.

        With ``jitter``, the representations come from a jittered view of each crystal and must recognise
        the clean crystal's own pairs (local) and environments (global) as true samples.
        """
        jittered = self.jitter > 0
        view = jittered_view(sample.real, self.jitter, generator) if jittered else sample.real
        local_mu, local_logvar = self.encoder.local(view)
        environments = self._frozen_environments(sample.real) if jittered else None
        local_js = self.local_loss(sample, local_mu, local_logvar, generator)
        local_kl = gaussian_kl(local_mu, local_logvar)
        global_js, global_kl, global_mu = self.global_loss(sample, local_mu, generator, environments)
        total = self.alpha * (local_js + global_js) + self.beta * (local_kl + global_kl)
        reconstruction = local_js.new_zeros(())
        if self.reconstruction > 0:
            reconstruction = self.reconstruction_loss(sample, local_mu, global_mu)
            total = total + self.reconstruction * reconstruction
        masked = local_js.new_zeros(())
        if self.masked_sites > 0:
            masked = self.masked_site_loss(sample, generator)
            total = total + self.masked_sites * masked
        shell = local_js.new_zeros(())
        if self.shell_reconstruction > 0:
            shell = self.shell_loss(sample, local_mu)
            total = total + self.shell_reconstruction * shell
        elements = local_js.new_zeros(())
        if self.element_reconstruction > 0:
            elements = self.element_loss(sample, local_mu, global_mu)
            total = total + self.element_reconstruction * elements
        return Losses(local_js, local_kl, global_js, global_kl, reconstruction, masked, shell, elements, total)
