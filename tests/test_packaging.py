"""A normal (non-editable) wheel install carries the bundled weights, examples and train subpackage."""

from __future__ import annotations

import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, run_python

CHECK = """
import json, sys
from pathlib import Path
import dim_featurizer
from dim_featurizer import DeepInfoMaxFeaturizer, example_structures
from dim_featurizer.weights import bundled_names, bundled_root, default_weights, load_weights
import dim_featurizer.train
venv = Path(sys.prefix)
for module in (dim_featurizer, dim_featurizer.train):
    assert venv in Path(module.__file__).resolve().parents, module.__file__
assert venv in bundled_root().resolve().parents, bundled_root()
structures = list(example_structures().values())
assert len(structures) == 8
for name in bundled_names():
    model, info = load_weights(name)
    assert info.source == "bundled", info
rows = DeepInfoMaxFeaturizer(pbar=False).featurize_many(structures, pbar=False)
from dim_featurizer.examples import load_sample
assert venv in Path(load_sample.__code__.co_filename).resolve().parents
assert len(load_sample("phonons")) == 300 and len(load_sample("mp2018")) == 300
print(json.dumps({"default": default_weights(), "bundled": bundled_names(), "n": len(rows)}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)]
    subprocess.run(cmd, check=True, capture_output=True)
    return next(out.glob("dim_featurizer-*.whl"))


@pytest.mark.slow
def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "dim_featurizer/bundled_weights/manifest.json" in names
    assert "dim_featurizer/train/__init__.py" in names
    assert sum(n.startswith("dim_featurizer/examples/") and n.endswith(".cif") for n in names) == 8
    assert "dim_featurizer/examples/sample_data/mp2018_folds.json" in names
    assert "dim_featurizer/bench/cli.py" in names
    assert not any(n.startswith(("train/", "weights/", "tests/")) for n in names)  # no clashing top-level names


def _venv_seeing_this_environment(env_dir):
    """A fresh venv whose own site-packages come first, then this environment's (for the dependencies).

    ``system_site_packages=True`` would link the base interpreter instead, which
    lacks the dependencies when the tests run inside a virtual environment.
    The ``.pth`` only adds paths: this environment's editable install of
    dim_featurizer (its own ``.pth`` hook) is not activated in the new venv.
    """
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {
        site.getusersitepackages(),
        *site.getsitepackages(),
        *(sysconfig.get_paths()[k] for k in ("purelib", "platlib")),
    }
    Path(purelib, "_dependencies.pth").write_text("\n".join(sorted(p for p in ours if Path(p).is_dir())) + "\n")
    return python


@pytest.mark.slow
def test_bundled_weights_load_from_an_installed_wheel(wheel, tmp_path):
    python = _venv_seeing_this_environment(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    run = run_python(["-c", CHECK], cwd=tmp_path, python=python)
    assert run.returncode == 0, run.stderr[-3000:]
    assert '"n": 8' in run.stdout


@pytest.mark.slow
def test_importing_the_featuriser_stays_light():
    code = (
        "import sys, dim_featurizer.featurizer, dim_featurizer.cli\n"
        "from dim_featurizer import DeepInfoMaxFeaturizer, example_structures\n"
        "DeepInfoMaxFeaturizer(weights='untrained', pbar=False).featurize(example_structures()['Si'])\n"
        "heavy = ('dim_featurizer.train', 'dim_featurizer.bench', 'matplotlib')\n"
        "print([m for m in sys.modules if m.startswith(heavy)])\n"
    )
    run = run_python(["-c", code])
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
