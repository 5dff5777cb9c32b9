"""Find, verify and load encoder weights; save them in Hugging Face Hub layout.

A weights folder holds ``config.json`` (a :class:`ModelConfig`) and
``model.safetensors`` (the encoder's state dict). Only safetensors are ever
read: no pickle, so a weights file cannot run code.

Sources, tried in this order for a name:

1. ``"untrained"``: a seeded random initialisation (no file); or
   ``"untrained:<weights>"``: the same, with the architecture, standardisation,
   encoding and readout of ``<weights>`` (any other name below): the
   like-for-like random control of those weights.
2. bundled: a folder under the package's ``bundled_weights`` (the repository's
   ``weights/``), each file checked against ``manifest.json`` (sha256).
3. a local directory.
4. a Hub repository ``owner/name`` through ``huggingface_hub``, pinned to a
   40-hex commit ``revision``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

from dim_featurizer.config import ENCODING_VERSION, ModelConfig
from dim_featurizer.errors import WeightsError
from dim_featurizer.files import write_atomically, write_text
from dim_featurizer.model import SiteNetEncoder, untrained_encoder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
MANIFEST_NAME = "manifest.json"
UNTRAINED = "untrained"
#: Prefix of ``"untrained:<weights>"``: a random network shaped like ``<weights>``.
UNTRAINED_LIKE = UNTRAINED + ":"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class WeightsInfo:
    """Where loaded weights came from.

    Attributes:
        source: ``"untrained"``, ``"bundled"``, ``"local"`` or ``"hub"``.
        name: what was asked for.
        path: folder the files were read from (None for untrained).
        revision: Hub commit, when from the Hub.
    """

    source: str
    name: str
    path: str | None = None
    revision: str | None = None

    @property
    def model_sha256(self) -> str | None:
        """The sha256 of the ``model.safetensors`` the weights were loaded from (None for untrained weights)."""
        return sha256(Path(self.path) / WEIGHTS_NAME) if self.path else None

    def record(self, seed: int | None = None) -> dict[str, str | int | None]:
        """Where the weights came from, as JSON-ready data for manifests, results and saved models.

        Args:
            seed: the untrained initialisation's seed (recorded for untrained weights only).

        Returns:
            ``{"name", "source", "revision", "model_sha256", "seed"}``.
        """
        return {
            "name": self.name,
            "source": self.source,
            "revision": self.revision,
            "model_sha256": self.model_sha256,
            "seed": seed if self.source == UNTRAINED else None,
        }

    def __str__(self) -> str:
        """One line for logs: ``'dim-mp2018-r2' (bundled)``, with the Hub revision when there is one."""
        revision = f" @ {self.revision[:12]}" if self.revision else ""
        return f"{self.name!r} ({self.source}{revision})"

    def as_dict(self) -> dict[str, str | None]:
        """Return a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, str | None]) -> WeightsInfo:
        """Build from :meth:`as_dict` output."""
        return cls(**d)


def bundled_root() -> Path:
    """Return the folder holding the bundled weights and their manifest."""
    return Path(str(resources.files("dim_featurizer.bundled_weights")))


def read_manifest(root: str | Path | None = None) -> dict:
    """Return a weights root's manifest (default: the bundled one): ``{name: {"files": {filename: sha256}, ...}}``."""
    path = Path(root or bundled_root()) / MANIFEST_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


def default_weights() -> str:
    """Return the name loaded when none is given: the manifest's default, else untrained."""
    return read_manifest().get("_default", UNTRAINED)


def bundled_names() -> list[str]:
    """Return the names of the bundled weights."""
    return sorted(k for k in read_manifest() if not k.startswith("_"))


def sha256(path: str | Path) -> str:
    """Return the hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_pretrained(encoder: SiteNetEncoder, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``encoder`` into ``directory``, each atomically.

    Returns:
        The directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    write_atomically(directory / WEIGHTS_NAME, lambda target: save_file(state, str(target), metadata={"format": "pt"}))
    config = replace(encoder.config, weights_sha256=sha256(directory / WEIGHTS_NAME))
    write_text(directory / CONFIG_NAME, config.to_json())
    return directory


def register_weights(root: str | Path, name: str, default: bool = False) -> dict:
    """Record the weights folder ``root/name`` in ``root``'s manifest (sha256 of each file, readout).

    The manifest (``manifest.json``) is this module's format: ``{name: {"files": {filename: sha256},
    "readout": ...}, "_default": name}``. The bundled weights are checked against it on every load.

    Args:
        root: the weights root (the repository's ``weights/``).
        name: the folder to register.
        default: make it the package default.

    Returns:
        The manifest as written.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    folder = root / name
    manifest[name] = {
        "files": {f: sha256(folder / f) for f in (CONFIG_NAME, WEIGHTS_NAME)},
        "readout": ModelConfig.from_json_file(folder / CONFIG_NAME).readout,
    }
    if default:
        manifest["_default"] = name
    write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def load_pretrained(directory: str | Path, expected_sha256: str | None = None) -> SiteNetEncoder:
    """Load a weights folder strictly: the file's sha256 must be the one ``config.json`` records, and a
    missing, extra or mis-shaped tensor is an error.

    Raises:
        WeightsError: naming the folder or file and what is wrong with it (for a changed file, both hashes).

    ``expected_sha256`` checks the file against another record of its hash (a manifest's) instead of the
    config's, for folders saved before configs recorded one.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise WeightsError(f"{directory}: no {name}")
    try:
        config = ModelConfig.from_json_file(directory / CONFIG_NAME)
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{directory / CONFIG_NAME}: not a valid encoder config ({e})") from e
    expected = expected_sha256 or config.weights_sha256
    if expected is None:
        raise WeightsError(
            f"{directory / CONFIG_NAME} records no weights_sha256, so {WEIGHTS_NAME} cannot be verified; "
            "re-save the folder with dim_featurizer.weights.save_pretrained (or dim-train export)"
        )
    actual = sha256(directory / WEIGHTS_NAME)
    if actual != expected:
        source = "the manifest" if expected_sha256 else f"its {CONFIG_NAME}"
        raise WeightsError(
            f"{directory / WEIGHTS_NAME} has sha256 {actual}, but {source} records {expected}: "
            "the file is damaged or was changed"
        )
    try:
        state = load_file(str(directory / WEIGHTS_NAME))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{directory / WEIGHTS_NAME}: corrupt or truncated safetensors file ({e})") from e
    if config.encoding_version != ENCODING_VERSION:
        raise WeightsError(
            f"{directory / CONFIG_NAME}: made for encoding version {config.encoding_version}, but this "
            f"dim_featurizer encodes structures with version {ENCODING_VERSION}; use a matching release or retrain"
        )
    encoder = SiteNetEncoder(config)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{directory / WEIGHTS_NAME}: tensors do not match the config ({e})") from e
    return encoder.eval()


def _verify_bundled(name: str, entry: dict) -> Path:
    directory = bundled_root() / name
    for filename, expected in entry.get("files", {}).items():
        path = directory / filename
        if not path.is_file():
            raise WeightsError(f"bundled {name!r}: {filename} is missing from {directory}")
        actual = sha256(path)
        if actual != expected:
            raise WeightsError(f"bundled {name!r}: {path} has sha256 {actual}, the manifest says {expected}")
    return directory


def hub_unreachable(endpoint: str | None = None, timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached (offline mode, DNS, refused, timeout), or None when a TCP connection opens.

    A quick check before any download or upload, so that a machine without
    network fails in seconds instead of after huggingface_hub's retries.
    """
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = endpoint or constants.ENDPOINT
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"cannot connect to {endpoint} ({type(e).__name__}: {e})"
    return None


def _from_hub(repo_id: str, revision: str | None, cache_dir: str | None) -> Path:
    if revision is None or not _COMMIT.match(revision):
        raise WeightsError(
            f"Hub repository {repo_id!r} needs revision= pinned to a full 40-hex commit hash, got {revision!r}"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    def download(local_only: bool) -> Path:
        paths = [
            hf_hub_download(repo_id, f, revision=revision, cache_dir=cache_dir, local_files_only=local_only)
            for f in (CONFIG_NAME, WEIGHTS_NAME)
        ]
        return Path(paths[1]).parent

    try:
        return download(local_only=True)  # a commit never changes: a cached copy is the copy
    except LocalEntryNotFoundError:
        pass
    reason = hub_unreachable()
    if reason is not None:
        raise WeightsError(
            f"{repo_id}@{revision[:12]} is not in the Hub cache ({cache_dir or 'the default cache'}) and {reason}; "
            "download it once on a machine with network, or copy that cache here"
        )
    return download(local_only=False)


def load_weights(
    weights: str | os.PathLike | None = None,
    revision: str | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[SiteNetEncoder, WeightsInfo]:
    """Resolve ``weights`` through every source and load the encoder.

    Args:
        weights: ``"untrained"``, ``"untrained:<weights>"`` (a random network shaped like ``<weights>``), a
            bundled name, a local folder, or a Hub repo id ``owner/name``; None means :func:`default_weights`.
        revision: Hub commit hash (required for Hub repositories).
        seed: seed of the untrained initialisation.
        cache_dir: Hub cache folder (default: huggingface_hub's).

    Returns:
        (encoder in eval mode, :class:`WeightsInfo`; its source is ``"untrained"`` for both untrained forms).

    Raises:
        WeightsError: listing every source tried and why each failed.
    """
    name = str(default_weights() if weights is None else weights)
    if name == UNTRAINED:
        return untrained_encoder(seed=seed).eval(), WeightsInfo("untrained", name)
    if name.startswith(UNTRAINED_LIKE):
        like = name[len(UNTRAINED_LIKE) :]
        if not like:
            raise WeightsError(f"{name!r} names no weights to shape the untrained network like: 'untrained:<weights>'")
        shaped, _ = load_weights(like, revision, seed, cache_dir)
        # Everything but the trained parameters and the record of how they were made.
        config = replace(shaped.config, pretraining=None, weights_sha256=None)
        return untrained_encoder(config, seed=seed).eval(), WeightsInfo("untrained", name)
    tried: list[str] = []
    manifest = read_manifest()
    if name in manifest and not name.startswith("_"):
        directory = _verify_bundled(name, manifest[name])
        return load_pretrained(directory), WeightsInfo("bundled", name, str(directory))
    tried.append(f"bundled: no bundled weights named {name!r} (bundled: {bundled_names() or 'none'})")
    path = Path(name).expanduser()
    if path.is_dir():
        return load_pretrained(path), WeightsInfo("local", name, str(path))
    tried.append(f"local directory: {path} is not a directory")
    if _REPO_ID.match(name):
        try:
            directory = _from_hub(name, revision, None if cache_dir is None else str(cache_dir))
        except WeightsError as e:
            tried.append(f"Hugging Face Hub: {e}")
        except Exception as e:  # noqa: BLE001 - any Hub failure becomes one line of the report
            tried.append(f"Hugging Face Hub: {type(e).__name__}: {e}")
        else:
            return load_pretrained(directory), WeightsInfo("hub", name, str(directory), revision)
    else:
        tried.append(f"Hugging Face Hub: {name!r} is not an 'owner/name' repo id")
    close = difflib.get_close_matches(name, [*bundled_names(), UNTRAINED], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise WeightsError(f"could not load weights {name!r}{hint}; tried:\n  - " + "\n  - ".join(tried))
