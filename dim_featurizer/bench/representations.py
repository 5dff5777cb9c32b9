"""The representations compared, and a resumable on-disk feature cache."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from dim_featurizer import DeepInfoMaxFeaturizer
from dim_featurizer.config import ModelConfig
from dim_featurizer.parts import PartStore
from dim_featurizer.weights import (
    CARD_NAME,
    CONFIG_NAME,
    UNTRAINED,
    UNTRAINED_LIKE,
    bundled_names,
    bundled_root,
    default_weights,
    read_manifest,
)


class MagpieFromStructure:
    """matminer's Magpie composition features (``ElementProperty.from_preset("magpie")``) of a structure."""

    def __init__(self) -> None:
        from matminer.featurizers.composition import ElementProperty

        self.inner = ElementProperty.from_preset("magpie")
        self.inner.set_n_jobs(1)

    def feature_labels(self) -> list[str]:
        return self.inner.feature_labels()

    def featurize_many(self, structures, ignore_errors=True, pbar=False):
        return self.inner.featurize_many([s.composition for s in structures], ignore_errors=ignore_errors, pbar=pbar)


class CHGNetFeatures:
    """CHGNet's crystal feature vector (``predict_structure(..., return_crystal_feas=True, task="e")``), the
    peer that users of universal potentials reach for; the ``chgnet`` package ships its weights
    (``pip install 'dim_featurizer[peers]'``).

    Not label-free: CHGNet was trained on Materials Project energies, forces, stresses and magnetic
    moments (MPtrj), so it has likely seen the mp2018 test crystals, or relaxations of them. Report it
    beside DIM with that said.
    """

    def __init__(self, batch_size: int = 64) -> None:
        try:
            from chgnet.model import CHGNet
        except ImportError as e:
            raise ImportError("the chgnet peer needs CHGNet: pip install 'dim_featurizer[peers]'") from e
        self.model = CHGNet.load(use_device="cpu", verbose=False)
        self.batch_size = batch_size

    def feature_labels(self) -> list[str]:
        if not hasattr(self, "width_"):  # the model's crystal feature width, read off one tiny crystal
            from pymatgen.core import Lattice, Structure

            probe = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            self.width_ = len(self.model.predict_structure(probe, task="e", return_crystal_feas=True)["crystal_fea"])
        return [f"CHGNet_{i}" for i in range(self.width_)]

    def featurize_many(self, structures, ignore_errors=True, pbar=False):
        """One row per structure; a structure CHGNet cannot read gets a NaN row (never dropped)."""
        width = len(self.feature_labels())
        rows = []
        for start in range(0, len(structures), self.batch_size):
            chunk = list(structures[start : start + self.batch_size])
            try:
                out = self.model.predict_structure(chunk, task="e", return_crystal_feas=True, batch_size=len(chunk))
                rows += [list(map(float, o["crystal_fea"])) for o in (out if isinstance(out, list) else [out])]
            except Exception:  # noqa: BLE001 - retry one by one, a failing structure gets NaN
                for structure in chunk:
                    try:
                        o = self.model.predict_structure(structure, task="e", return_crystal_feas=True)
                        rows.append(list(map(float, o["crystal_fea"])))
                    except Exception:  # noqa: BLE001
                        if not ignore_errors:
                            raise
                        rows.append([float("nan")] * width)
        return rows


class Concatenation:
    """Several representations side by side (e.g. ``dim+magpie``, what a practitioner tries next).

    The harness reads each part from its own feature cache; ``featurize_many``
    computes them directly, one row per structure (NaN where a part failed).
    """

    def __init__(self, parts: tuple[str, ...]) -> None:
        self.parts = parts

    def members(self) -> list[object]:
        """A fresh featuriser per part, in order."""
        return [make_featurizer(name) for name in self.parts]

    def feature_labels(self) -> list[str]:
        return [label for member in self.members() for label in member.feature_labels()]

    def featurize_many(self, structures, ignore_errors=True, pbar=False):
        rows = [m.featurize_many(structures, ignore_errors=ignore_errors, pbar=pbar) for m in self.members()]
        return np.hstack([np.asarray(r, dtype=float) for r in rows]).tolist()


def _matminer(name: str) -> Callable[[], object]:
    def make():
        from matminer.featurizers import structure

        featurizer = structure.OrbitalFieldMatrix(flatten=True) if name == "ofm" else structure.XRDPowderPattern()
        featurizer.set_n_jobs(1)
        return featurizer

    return make


MATMINER: dict[str, Callable[[], object]] = {
    "ofm": _matminer("ofm"),
    "xrd": _matminer("xrd"),
    "magpie": MagpieFromStructure,
}


def control_shape(config: ModelConfig, readout: str | None = None) -> str:
    """What an untrained control must share with the weights of ``config``: architecture, input
    standardisation, encoding and readout (``readout`` overrides the config's), as one JSON string."""
    shape = {**config.architecture(), "readout": readout or config.readout, "encoding": config.encoding.as_dict()}
    for name in ("feature_mean", "feature_std"):  # None: the element table's (an untrained network's)
        values = getattr(config, name)
        shape[name] = None if values is None else [round(float(v), 6) for v in values]
    return json.dumps(shape, sort_keys=True)


def control_columns() -> dict[str, str]:
    """Each pretrained DIM column of :func:`representations` with its untrained control column.

    The control of weights ``name`` is ``untrained:<name>``: seeded random weights with their architecture,
    input standardisation, encoding and readout. ``dim-untrained`` is the default's. Weights that share all
    four share one control: the first such column's (``<name>-untrained``). ``dim+magpie``'s is
    ``dim-untrained+magpie``.
    """
    default, manifest = default_weights(), read_manifest()
    columns, served = {}, {}
    if default == UNTRAINED:
        served[control_shape(ModelConfig())] = "dim-untrained"
    for name in [default, *bundled_names()] if default != UNTRAINED else bundled_names():
        column = "dim" if name == default else name
        if column in columns:
            continue
        config = ModelConfig.from_json_file(bundled_root() / name / CONFIG_NAME)
        shape = control_shape(config, manifest.get(name, {}).get("readout"))
        columns[column] = served.setdefault(shape, "dim-untrained" if column == "dim" else f"{name}-untrained")
    if "dim" in columns:
        columns["dim+magpie"] = "dim-untrained+magpie"
    return columns


def representations() -> dict[str, Callable[[], object]]:
    """Every representation the harness compares, by name, from the weights manifest.

    ``dim`` is the package's default weights, ``dim-untrained`` their seeded random control
    (``untrained:<default>``), every other bundled weights folder appears under its own name (e.g.
    ``dim-mp2018-ablation``), with its own control ``<name>-untrained`` beside it unless an earlier
    column's control serves (:func:`control_columns`), then matminer's ``ofm``, ``xrd`` and
    ``magpie``, ``dim+magpie`` (both side by side) and its control ``dim-untrained+magpie``, and, when
    the ``chgnet`` package is installed, ``chgnet``.
    """
    default = default_weights()
    reps: dict[str, Callable[[], object]] = {}
    controls = control_columns()
    if default == UNTRAINED:
        reps["dim-untrained"] = partial(DeepInfoMaxFeaturizer, weights=UNTRAINED, pbar=False)
    for column, control in controls.items():
        if "+" in column:
            continue
        name = default if column == "dim" else column
        reps[column] = partial(DeepInfoMaxFeaturizer, weights=name, pbar=False)
        if control not in reps:
            # The control reads the same layer as its weights, or the comparison would mix two things.
            readout = read_manifest()[name].get("readout")
            reps[control] = partial(DeepInfoMaxFeaturizer, weights=UNTRAINED_LIKE + name, pbar=False, readout=readout)
    reps |= MATMINER
    if "dim" in reps:
        reps["dim+magpie"] = partial(Concatenation, ("dim", "magpie"))
    # Its control: does pretraining add to Magpie, or would any structure vector do?
    reps["dim-untrained+magpie"] = partial(Concatenation, ("dim-untrained", "magpie"))
    if importlib.util.find_spec("chgnet") is not None:  # an optional peer: [peers]
        reps["chgnet"] = CHGNetFeatures
    return reps


def make_featurizer(name: str) -> object:
    """A fresh featuriser for representation ``name``."""
    reps = representations()
    if name not in reps:
        raise ValueError(f"unknown representation {name!r}; choose from {list(reps)}")
    return reps[name]()


def dim_members(name: str) -> dict[str, DeepInfoMaxFeaturizer]:
    """The DIM featurisers representation ``name`` runs, by representation name (none for matminer's or CHGNet)."""
    featurizer = make_featurizer(name)
    if isinstance(featurizer, Concatenation):
        return {key: member for part in featurizer.parts for key, member in dim_members(part).items()}
    return {name: featurizer} if isinstance(featurizer, DeepInfoMaxFeaturizer) else {}


def check_pretraining(featurizer: DeepInfoMaxFeaturizer, test_ids: list[str]) -> None:
    """Refuse DIM weights whose recorded pretraining read a label or a test id, or that record nothing.

    Reads the ``pretraining`` record of the weights' ``config.json`` (data,
    not the card's prose), and refuses a model card that names one of the
    task's test ids.

    Raises:
        ValueError: naming the weights and what their record says (or lacks).
    """
    runner = featurizer.runner()
    info = runner.info
    if info.source == "untrained":
        return
    record = runner.model.config.pretraining
    if record is None:
        raise ValueError(f"weights {info.name!r} record no pretraining facts in their config.json; refusing them")
    if record.get("labels_read") != []:
        raise ValueError(f"weights {info.name!r} record labels read in pretraining: {record.get('labels_read')!r}")
    if record.get("test_ids_read") != 0:
        raise ValueError(f"weights {info.name!r} record test ids read in pretraining: {record.get('test_ids_read')!r}")
    if record.get("selection_test_ids_read", 0) != 0:
        raise ValueError(f"weights {info.name!r} were selected with test ids: {record['selection_test_ids_read']!r}")
    card = Path(info.path) / CARD_NAME
    text = card.read_text() if card.is_file() else ""
    leaked = [i for i in test_ids if f"`{i}`" in text or f" {i} " in text or f" {i}," in text]
    if leaked:
        raise ValueError(f"the card of {info.name!r} names test ids, e.g. {leaked[:3]}")


def representation_key(name: str, featurizer: object) -> str:
    """A cache key: the representation's name plus, for DIM, its parameters and weights file hash
    (a concatenation: its parts' keys joined by ``+``)."""
    if isinstance(featurizer, Concatenation):
        return "+".join(representation_key(part, make_featurizer(part)) for part in featurizer.parts)
    if isinstance(featurizer, DeepInfoMaxFeaturizer):
        weights = featurizer.runner().info.model_sha256 or f"seed{featurizer.seed}"
        params = json.dumps(featurizer.get_params(), sort_keys=True, default=str)
        return f"{name}-{hashlib.sha256((weights + params).encode()).hexdigest()[:12]}"
    return name


def weights_used(featurizer: DeepInfoMaxFeaturizer) -> dict[str, str | int | None]:
    """Which weights a DIM featuriser runs (:meth:`WeightsInfo.record`: name, source, revision, sha256, seed)."""
    return featurizer.runner().info.record(seed=featurizer.seed)


def _featurize_chunk(name: str, structures: pd.Series, parts: PartStore) -> pd.DataFrame:
    """Featurise one chunk (NaN rows for failures) and store it as its own part, keyed by its ids."""
    rows = make_featurizer(name).featurize_many(list(structures), ignore_errors=True, pbar=False)
    ids = np.asarray(structures.index, dtype=str)
    features = np.asarray(rows, dtype=np.float64)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    parts.write(digest, lambda p: np.savez(p, ids=ids, features=features))
    return pd.DataFrame(features, index=ids)


def cached_features(
    name: str, structures: pd.Series, cache_dir: str | Path, chunk: int = 200, pbar: bool = True, n_jobs: int = 1
) -> pd.DataFrame:
    """Features of ``structures`` (indexed by id) for one representation, computing only what is missing.

    Each chunk is stored as its own ``.npz`` part (no pickle) of a :class:`~dim_featurizer.parts.PartStore`,
    named by a hash of its ids, so a killed run keeps every finished chunk and parallel workers never
    collide. Failed rows are NaN (never dropped).

    Args:
        name: a key of :func:`representations`.
        structures: pymatgen structures indexed by id.
        cache_dir: folder holding one sub-folder per representation key.
        chunk: structures per stored part.
        pbar: show a progress bar over chunks.
        n_jobs: chunks featurised in parallel (joblib processes).

    Returns:
        One row per structure, in the order of ``structures`` (a concatenation: its parts' columns in order,
        renumbered).
    """
    featurizer = make_featurizer(name)
    if isinstance(featurizer, Concatenation):
        blocks = [cached_features(part, structures, cache_dir, chunk, pbar, n_jobs) for part in featurizer.parts]
        both = pd.concat(blocks, axis=1)
        both.columns = range(both.shape[1])
        return both
    parts = PartStore(Path(cache_dir) / representation_key(name, featurizer), ".npz")
    stored = []
    for part in parts.paths():
        with np.load(part, allow_pickle=False) as z:
            stored.append(pd.DataFrame(z["features"], index=z["ids"]))
    have = pd.concat(stored) if stored else pd.DataFrame()
    missing = structures[~structures.index.isin(have.index)]
    chunks = [missing.iloc[i : i + chunk] for i in range(0, len(missing), chunk)]
    done = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_featurize_chunk)(name, part, parts) for part in chunks
    )
    new = list(tqdm(done, total=len(chunks), desc=name, disable=not pbar))
    have = pd.concat([have, *new])
    return have.loc[list(structures.index)]
