"""The notebooks cannot drift: their scripts run top to bottom on tiny settings (SSVAR_QUICK=1),
and every committed .ipynb is exactly jupytext's conversion of its .py script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "examples").glob("*.py"))
# figures each script must leave under runs/ (looked at by hand at full settings)
FIGURES = {
    "quickstart.py": [
        "pseudo_label_curves.png",
        "tsne.png",
        "test_confusion_matrix_2x1.png",
        "test_per_class_accuracy_2x1.png",
    ],
    "own_videos.py": ["pseudo_label_curves.png", "test_tsne.png", "test_confusion_matrix_2x1.png"],
}


def test_every_script_has_a_notebook():
    assert {p.stem for p in SCRIPTS} == {p.stem for p in (REPO / "examples").glob("*.ipynb")}
    assert set(FIGURES) <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_notebook_is_the_scripts_conversion(script):
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    expected = jupytext.read(script)
    committed = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    got = [(c.cell_type, c.source) for c in committed.cells]
    want = [(c.cell_type, c.source) for c in expected.cells]
    assert got == want, f"regenerate it: jupytext --to ipynb {script.relative_to(REPO)}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_runs_on_tiny_settings(script, tmp_path):
    env = {**os.environ, "SSVAR_QUICK": "1", "SSVAR_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("SSVAR_VIDEO_DIR", None)
    res = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    made = {p.name for p in (tmp_path / "runs").rglob("*.png")}
    missing = [f for f in FIGURES.get(script.name, []) if f not in made]
    assert not missing, f"{script.name} did not write {missing} (wrote {sorted(made)})"
    if script.name in FIGURES:
        assert "prob" in res.stdout  # a prediction table or JSON was printed
