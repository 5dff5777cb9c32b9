"""The documentation holds together: method references resolve, CI runs the README's test command."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, run_python

REFERENCE = re.compile(r"method\.md\s+§(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?")


def _sections() -> set[str]:
    text = (ROOT / "docs" / "method.md").read_text()
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[ .]", text, flags=re.M))


def test_every_method_reference_resolves():
    sections = _sections()
    assert {"1", "1.1", "1.7", "2", "3", "3.2", "4"} <= sections
    files = [*ROOT.glob("*.md"), *ROOT.glob("dim_featurizer/**/*.py"), *ROOT.glob("train/*.py")]
    files += [*ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("results/**/*.md")]
    found = 0
    for path in files:
        for match in REFERENCE.finditer(path.read_text()):
            found += 1
            for ref in filter(None, match.groups()):
                assert ref in sections, f"{path.relative_to(ROOT)} cites docs/method.md §{ref}, which has no heading"
    assert found >= 10
    assert "METHOD.md" not in "".join(p.read_text() for p in files if p.name != "test_docs.py")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert blocks[1].strip() == ci


@pytest.mark.slow
def test_readme_python_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)\n```", readme, flags=re.S))
    run = run_python(["-c", code], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(300, 130)" in run.stdout and "3-fold MAE:" in run.stdout


def test_readme_weights_section_matches_results_and_the_default_weights():
    import json

    import pandas as pd

    from dim_featurizer.bench.report import headline_markdown
    from dim_featurizer.bench.tasks import UNITS
    from dim_featurizer.weights import WEIGHTS_NAME, bundled_root, default_weights, sha256

    readme = (ROOT / "README.md").read_text()
    headline = (ROOT / "results" / "headline.md").read_text().strip()
    assert headline == headline_markdown(pd.read_csv(ROOT / "results" / "summary.csv"), UNITS)
    assert headline in readme
    benchmarked = json.loads((ROOT / "results" / "run.json").read_text())["weights"]["dim"]
    assert benchmarked["name"] == default_weights(), "the default weights changed: rerun dim-bench"
    assert benchmarked["model_sha256"] == sha256(bundled_root() / default_weights() / WEIGHTS_NAME)


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in (ROOT / "results").glob("finetune*/comparison.md")))
def test_finetune_readme_shows_the_generated_comparison(folder):
    folder = ROOT / "results" / folder
    assert (folder / "comparison.md").read_text() in (folder / "README.md").read_text()
