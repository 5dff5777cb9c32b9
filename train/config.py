"""Pretraining hyper-parameters: a plain, serialisable dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Options that change how fast a run goes, not what it learns: a run may resume with other values.
SPEED_OPTIONS = ("compile",)


@dataclass
class TrainConfig:
    """Pretraining hyper-parameters (none chosen by looking at a label).

    The defaults are the recipe of the shipped default weights (``dim-mp2018-r4``, the proxy sweep's v30):
    the authors' per-site (d+1)⁻² local weighting, supercell false permutations, the label-free
    reconstruction terms (the site features' element properties and Magpie's element table), the authors'
    optimiser settings, 128-wide embeddings and 10 epochs (docs/method.md §3.8).

    Attributes:
        epochs: most epochs.
        lr: AdamW learning rate (the authors' code: 1e-4; the paper: 8.12e-4).
        weight_decay: AdamW weight decay.
        batch_sites: unique sites per batch (the paper's 1,200).
        val_fraction: share of the training ids held out for validation.
        seed: seeds the split, the order, every false sample and the noise.
        alpha, beta: JS and KL weights (1, 0.1).
        only_other: the Fig. 11 ablation: only "other" false samples.
        patience: stop after this many epochs without a validation gain of ``min_delta``.
        min_delta: the smallest validation-loss fall that counts as a gain.
        checkpoint_every: steps between checkpoints within an epoch.
        grad_clip: gradient-norm clip (0: none).
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        model: ModelConfig fields that differ from its defaults, as a dict (``hidden`` 128 here; the
            standardisation is filled from the data).
        local_weighting: ``"uniform"``, the plain mean of the local JS terms over
            every real pair of a batch; or ``"distance"``, the authors' code:
            each pair weighted by (d + 1)⁻² (donor distances for donated
            geometry), a weighted mean per site, then the mean over each
            crystal's sites and over crystals (docs/method.md §3.2).
        permutation: the global false permutation: ``"sites"`` shuffles species
            among the primitive sites; ``"supercell"`` shuffles them over the
            supercell atoms other than the unique sites themselves, one
            permutation per crystal, as the authors' code does (§3.5).
        reconstruction: weight of a label-free term in which two small decoders
            predict each centre site's standardised element properties from μ_i
            and the crystal's mean of them from μ_G (0: off).
        local_sample: ``"neighbour"``, a local sample is (neighbour's site
            features, distance); ``"pair"``, the paper's "two atoms and a
            distance", adds the centre atom's features (§3.4).
        amsgrad, eps: AdamW options (the authors' code used amsgrad and eps 1e-7).
        masked_sites: weight of masked-site prediction (0: off): 15% of the unique sites of each batch have
            their site features replaced by the standardisation mean (element and oxidation state hidden,
            wherever the site appears in the supercell), and a decoder predicts their standardised element
            properties from the masked μ_i, that is from the environment alone (label-free).
        jitter: augmented true samples (0: off): the largest per-crystal displacement scale σ_c, Å, of a
            thermally jittered, 1%-strained view of each crystal whose representations must recognise the
            clean crystal's pairs and environments as their own (``objective.jittered_view``; paper §4.5).
        shell_reconstruction: weight of a label-free term in which a decoder predicts each site's first shell
            from μ_i: the shell's mean standardised element properties, the log of its coordination number and
            the nearest-neighbour distance (``objective.first_shell``; 0: off).
        element_reconstruction: weight of a label-free term in which decoders predict each site's 22 Magpie
            element properties (valence-shell counts, ground-state volume, band gap and moment of the element, ...)
            from μ_i and the crystal's Magpie statistics of them (mean, mean absolute deviation, minimum,
            maximum) from μ_G (``targets.magpie_targets``; 0: off).
        vacancies: add a fourth synthetic false crystal, the crystal with one supercell atom removed
            (``samples.false_vacancy``; the paper's chemistry-aware false samples), to the global term.
        compile: run the encoder's per-pair work through ``torch.compile``, forward and backward
            (``LocalEncoder.compile_pairs``): a speed option; the objective is unchanged.
        anchor: weight λ of an L2-SP penalty, λ/2 · Σ(θ − θ₀)² over the encoder's weights, that pulls them
            toward their seeded initialisation θ₀ (the score networks and decoders are free); 0 for off.
            It keeps what the random start already carried (docs/method.md §3.9); it is not part of the
            validation loss.
        substitutions: hypothetical crystals added per training crystal, each with its elements swapped
            within their periodic-table groups (``substitution.substituted_copies``); 0 for none.
    """

    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_sites: int = 1200
    val_fraction: float = 0.05
    seed: int = 0
    alpha: float = 1.0
    beta: float = 0.1
    only_other: bool = False
    patience: int = 4
    min_delta: float = 1e-3
    checkpoint_every: int = 50
    grad_clip: float = 0.0
    amp: bool = True
    model: dict = field(default_factory=lambda: {"hidden": 128})
    local_weighting: str = "distance"
    permutation: str = "supercell"
    reconstruction: float = 1.0
    local_sample: str = "neighbour"
    amsgrad: bool = True
    eps: float = 1e-7
    masked_sites: float = 0.0
    jitter: float = 0.0
    shell_reconstruction: float = 0.0
    element_reconstruction: float = 1.0
    vacancies: bool = False
    compile: bool = False
    anchor: float = 0.0
    substitutions: int = 0

    def __post_init__(self) -> None:
        choices = {
            "local_weighting": ("uniform", "distance"),
            "permutation": ("sites", "supercell"),
            "local_sample": ("neighbour", "pair"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.substitutions < 0:
            raise ValueError(f"substitutions must be 0 (none) or positive, got {self.substitutions!r}")
        for name in (
            "reconstruction",
            "masked_sites",
            "jitter",
            "shell_reconstruction",
            "element_reconstruction",
            "anchor",
        ):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise ValueError(f"{name} must be 0 (off) or positive, got {getattr(self, name)!r}")
