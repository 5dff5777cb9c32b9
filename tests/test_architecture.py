"""The shape of the code base: public interfaces between modules, one-way imports, artefacts apart from source."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ("dim_featurizer", "train", "benchmarks", "tutorials")


def python_files(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (ROOT / r).rglob("*.py"))


def private_names_defined(tree: ast.AST) -> set[str]:
    """Underscore names a module defines: functions, classes, attributes, variables and arguments."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_uses(path: Path, tree: ast.AST) -> list[tuple[int, str]]:
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            uses.append((node.lineno, node.attr))
        if isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            uses += [(node.lineno, n) for n in names if n.startswith("_") and not n.startswith("__")]
    return uses


def test_no_module_uses_another_modules_private_names():
    trees = {p: ast.parse(p.read_text()) for p in python_files(*CODE)}
    defined = {p: private_names_defined(t) for p, t in trees.items()}
    owners: dict[str, set[Path]] = {}
    for path, names in defined.items():
        for name in names:
            owners.setdefault(name, set()).add(path)
    bad = [
        f"{path.relative_to(ROOT)}:{line} uses {name} (defined in "
        f"{', '.join(str(o.relative_to(ROOT)) for o in sorted(owners[name]))})"
        for path, tree in trees.items()
        for line, name in private_uses(path, tree)
        if name in owners and name not in defined[path]
    ]
    assert not bad, "\n".join(bad)


def test_the_private_name_check_can_fail(tmp_path):
    a = ast.parse("class A:\n    def _secret(self):\n        return 1\n")
    b = ast.parse("from m import A\nA()._secret()\n")
    assert "_secret" in private_names_defined(a)
    assert (2, "_secret") in private_uses(tmp_path / "b.py", b) and "_secret" not in private_names_defined(b)


def imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved against ``package``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(x for x in (base, node.module or "") if x)
            out.add(module)
            out |= {f"{module}.{a.name}" for a in node.names}
    return out


def test_train_never_imports_the_benchmark_harness():
    imports = {
        p.name: imported_modules(ast.parse(p.read_text()), "dim_featurizer.train") for p in python_files("train")
    }
    bad = [name for name, modules in imports.items() if any(m.startswith("dim_featurizer.bench") for m in modules)]
    assert not bad, f"train/ imports dim_featurizer.bench: {bad}"


def test_only_the_harness_reads_labels():
    """The development probe lives beside the benchmark harness: train/ has no label-reading module."""
    assert not (ROOT / "train" / "devprobe.py").exists()
    assert (ROOT / "dim_featurizer" / "bench" / "devprobe.py").is_file()


def test_inference_modules_import_no_training_code():
    light = [p for p in python_files("dim_featurizer") if "bench" not in p.parts and p.name != "sweep.py"]
    bad = [
        str(p.relative_to(ROOT))
        for p in light
        if any(
            m.startswith(("dim_featurizer.train", "dim_featurizer.bench"))
            for m in imported_modules(ast.parse(p.read_text()), "dim_featurizer")
        )
    ]
    assert not bad


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def test_no_tracked_file_is_a_copy_of_another():
    seen: dict[str, Path] = {}
    copies = []
    for path in tracked_files():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:
            copies.append(f"{path.relative_to(ROOT)} = {seen[digest].relative_to(ROOT)}")
        seen.setdefault(digest, path)
    assert not copies, copies


def test_finished_runs_keep_no_checkpoint_and_no_weights_copy():
    for run in sorted(p.parent for p in (ROOT / "runs").glob("*/run.json")):
        record = json.loads((run / "run.json").read_text())
        in_progress = record["stop_reason"].startswith("interrupted")
        if not in_progress:
            assert not (run / "checkpoint.pt").exists(), run.name
            assert not (run / "best").exists(), run.name
        for kept in ("log.csv", "launch.sh"):
            assert (run / kept).is_file(), f"{run.name} has no {kept}"
        excluded = record["data"]["excluded_ids"]
        assert all(" " in reason for reason in excluded), f"{run.name}: excluded ids not grouped by reason"
        assert sum(len(ids.split()) for ids in excluded.values()) == record["data"]["excluded"]


def test_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 4)]
    for folder in ("dim_featurizer", "dim_featurizer/bench", "train"):
        for path in sorted((ROOT / folder).glob("*.py")):
            if path.name != "__init__.py":
                assert f"`{path.name}`" in layout, f"README layout does not name {folder}/{path.name}"
    for name in re.findall(r"`([\w/]+\.py)`", layout):
        assert list(ROOT.glob(f"**/{name}")), f"README layout names {name}, which does not exist"


def test_trainer_defaults_are_the_default_weights_recipe():
    """``dim-train fit`` with no objective options reproduces the shipped default's options."""
    from dataclasses import asdict

    from dim_featurizer.train.config import SPEED_OPTIONS, TrainConfig

    from dim_featurizer.weights import default_weights

    run = json.loads((ROOT / "runs" / default_weights() / "run.json").read_text())
    recipe = {k: v for k, v in asdict(TrainConfig()).items() if k not in SPEED_OPTIONS}
    record = {k: v for k, v in run["train_config"].items() if k not in SPEED_OPTIONS}
    assert set(record) <= set(recipe) and {k: recipe[k] for k in record} == record
    # Options added after the run was made default to off, so the run's recipe is still what they give.
    assert all(recipe[k] in (False, 0.0) for k in set(recipe) - set(record)), set(recipe) - set(record)


def launched_config(launch: Path) -> dict:
    """The TrainConfig (as a dict) that a run's ``launch.sh`` asks ``dim-train fit`` for, today."""
    import shlex
    from dataclasses import asdict

    from dim_featurizer.train.cli import build_parser, run_options

    text = re.sub(r"\\\n", " ", launch.read_text())
    line = next(line for line in text.splitlines() if "dim-train fit" in line and not line.startswith("#"))
    words = shlex.split(line.split("dim-train fit", 1)[1].replace("$DATA", "data"))
    return asdict(run_options(build_parser().parse_args(["fit", *words]))["config"])


@pytest.mark.parametrize("run", sorted(p.parent.name for p in (ROOT / "runs").glob("*/launch.sh")))
def test_launch_scripts_state_their_runs_recipe(run):
    """Each run's ``launch.sh`` still gives the options its run.json records, whatever the trainer's defaults."""
    from dim_featurizer.train.config import SPEED_OPTIONS

    recipe = launched_config(ROOT / "runs" / run / "launch.sh")
    record = json.loads((ROOT / "runs" / run / "run.json").read_text())["train_config"]
    from dim_featurizer.config import ModelConfig

    for config in (recipe, record):  # {} and {"hidden": 64} are the same network
        config["model"] = ModelConfig(**config.get("model", {})).architecture()
    differ = {k: (record[k], recipe[k]) for k in record if k not in SPEED_OPTIONS and recipe[k] != record[k]}
    assert not differ, f"{run}: run.json against launch.sh today: {differ}"
    # Options added after the run must be off in its launch.sh, as they were when it ran.
    later = {k: recipe[k] for k in set(recipe) - set(record) - set(SPEED_OPTIONS) if recipe[k] not in (False, 0.0)}
    assert not later, f"{run}: launch.sh turns on options its run did not have: {later}"


def test_shape_options_override_the_recipe_and_record_only_what_differs():
    from dim_featurizer.train.cli import build_parser, run_options

    def model(*words: str) -> dict:
        return run_options(build_parser().parse_args(["fit", "data.json", "--run-dir", "r", *words]))["config"].model

    assert model() == {"hidden": 128}  # the default weights' recipe
    assert model("--hidden", "64") == {"hidden": 64}
    assert model("--global-dim", "64") == {"hidden": 128, "global_dim": 64}
    assert model("--attention-layers", "1") == {"hidden": 128}  # the recipe's own value: nothing recorded
