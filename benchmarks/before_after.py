"""Featurisation's network and encoding, this checkout against an earlier commit, in one process.

Loads ``dim_featurizer/model.py`` and ``dim_featurizer/encoding.py`` as they were at ``--commit`` (through
``git show``) beside today's, then, on the same mp2018 test crystals (seed 0, as benchmarks/speed.py):

- encodes every structure with both encodings (one core, checks included) and checks the arrays are identical;
- runs the same batches through both networks (the same weights loaded into each), for each weights and
  readout, best of ``--repeats``, and reports the largest difference between their vectors.

Rounds alternate old and new, so a shared machine's drift hits both alike. Writes
``before_after_<commit>.txt`` beside this script.

    python benchmarks/before_after.py --commit d21f443
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dim_featurizer import encoding as new_encoding
from dim_featurizer.batching import collate, plan_batches
from dim_featurizer.console import Parser, ScriptHelp
from dim_featurizer.provenance import hardware
from dim_featurizer.readers import default_data_dir, read_frame, read_split
from dim_featurizer.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]


def old_module(commit: str, path: str, name: str):
    """The module at ``path`` as it was at ``commit``, imported under ``name``."""
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True).stdout
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_bytes(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timed(function, *args):
    start = time.perf_counter()
    out = function(*args)
    return time.perf_counter() - start, out


def main() -> None:
    p = Parser(description=__doc__, formatter_class=ScriptHelp)
    p.add_argument("--commit", default="d21f443", help="the earlier commit")
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="where mp2018 lives")
    p.add_argument("--n", type=int, default=1000, help="test crystals")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds; the best of each is kept")
    p.add_argument("--weights", nargs="+", default=["dim-mp2018-r2", "dim-mp2018"], help="weights to compare")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    old_encoding = old_module(args.commit, "dim_featurizer/encoding.py", "old_encoding")
    old_model = old_module(args.commit, "dim_featurizer/model.py", "old_model")

    test = read_split(args.data_dir / "mp2018_folds.json")["test"]
    ids = np.random.default_rng(0).choice(test, size=min(args.n, len(test)), replace=False)
    structures = list(read_frame(args.data_dir / "mp2018_e_form_gap.json.gz", ids)["structure"])
    config = load_weights(args.weights[0])[0].config.encoding

    def encode_all(module):
        return [module.encode_structure(s, config) for s in structures]

    seconds = {"old": [], "new": []}
    for _ in range(args.repeats):
        for label, module in (("old", old_encoding), ("new", new_encoding)):
            t, crystals = timed(encode_all, module)
            seconds[label].append(t)
            if label == "old":
                reference = crystals
    same = all(
        np.array_equal(a.distances, b.distances) and np.array_equal(a.site_features, b.site_features)
        for a, b in zip(reference, crystals)
    )
    before, after = min(seconds["old"]), min(seconds["new"])
    lines = [
        f"{len(structures)} mp2018 test crystals (seed 0); {args.commit} against this checkout; {hardware()}; "
        f"{args.threads} torch thread(s); best of {args.repeats} alternating rounds; {time.strftime('%Y-%m-%d')}",
        "",
        f"encode_structure on every structure: before {before:.2f} s, after {after:.2f} s, {before / after:.2f}x; "
        f"arrays identical: {same}",
        "",
        f"{'weights':16s} {'readout':10s} {'before s':>9s} {'after s':>8s} {'before/after':>13s} {'max |diff|':>11s}",
    ]
    plan = plan_batches([c.n_sites for c in crystals], 1200, widths=[c.n_atoms for c in crystals])
    batches = [collate([crystals[i] for i in b]) for b in plan]
    for weights in args.weights:
        new, _ = load_weights(weights)
        old = old_model.SiteNetEncoder(new.config)
        old.load_state_dict(new.state_dict())
        for readout in ("global_mu", "pooled"):
            times = {"old": [], "new": []}
            vectors = {}
            for _ in range(args.repeats):
                for label, network in (("old", old), ("new", new)):
                    network.config = replace(new.config, readout=readout)
                    network.eval()
                    with torch.inference_mode():
                        t, out = timed(lambda n=network: torch.cat([n.embed(b) for b in batches]))
                    times[label].append(t)
                    vectors[label] = out
            before, after = min(times["old"]), min(times["new"])
            diff = float((vectors["old"] - vectors["new"]).abs().max())
            lines.append(f"{weights:16s} {readout:10s} {before:9.2f} {after:8.2f} {before / after:12.2f}x {diff:11.1e}")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / f"before_after_{args.commit}.txt").write_text(text)


if __name__ == "__main__":
    main()
