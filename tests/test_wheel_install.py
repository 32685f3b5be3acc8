"""A pip-installed user can run ssvar (issue 18): the wheel is built from the sources, installed
into a fresh virtual environment outside the repository, and the demo runs by name from there at
tiny size. Offline: the new environment reaches the already-installed dependencies through a
``.pth`` file; ssvar itself comes only from the wheel (checked)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_cli import REPO, _tiny_synth_args


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv's bin folder, the wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building never writes into the repository
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "ssvar", src / "ssvar", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        tmp,
    )
    wheel = next(dist.glob("ssvar-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp)
    py = venv / "bin" / "python"
    purelib = Path(
        _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).stdout.strip()
    )
    # Dependencies from this interpreter's site-packages (appended after the venv's own: the
    # wheel's ssvar wins over any editable install there).
    (purelib / "zz_ssvar_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp
    )
    return venv / "bin", wheel


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "SSVAR_CACHE": str(tmp / "cache"), "MPLBACKEND": "Agg"}


def test_wheel_holds_configs_and_license(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    assert "ssvar/configs/demo.yaml" in names and "ssvar/configs/methods/fixmatch.yaml" in names
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "ssvar" / "configs").rglob("*.yaml")}
    assert shipped <= set(names)
    assert any(n.endswith("LICENSE") for n in names)


def test_installed_ssvar_runs_the_demo_by_name(installed, tmp_path):
    bindir, _ = installed
    env = _env(tmp_path)
    where = _run([str(bindir / "python"), "-c", "import ssvar; print(ssvar.__file__)"], tmp_path, env).stdout
    assert str(bindir.parent) in where  # the wheel's ssvar, not the repository's
    assert _run([str(bindir / "ssvar"), "--version"], tmp_path, env).stdout.startswith("ssvar ")
    assert "demo" in _run([str(bindir / "ssvar"), "configs", "list"], tmp_path, env).stdout
    res = _run([str(bindir / "ssvar"), "fit", "--config", "demo", *_tiny_synth_args(tmp_path / "synth"),
                "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
                "--trainer.enable_progress_bar", "false"], tmp_path, env)
    assert "test/acc1_" in res.stdout
    assert (tmp_path / "runs" / "demo" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_installed_recipe_composes_its_fragments_and_copies_out(installed, tmp_path):
    """A paper recipe made of fragments resolves from the wheel by name, and its copy works alone."""
    bindir, _ = installed
    env = _env(tmp_path)
    name = "fixmatch_r3d18_8xb8-8x8x1_ucf101-s1-10pct"
    listed = "labeled_list: data/ucf101/splits/ucf101_train_10_percent_labeled_split_1_rawframes.txt"
    assert listed in _run([str(bindir / "ssvar"), "fit", "--config", name, "--print_config"], tmp_path, env).stdout
    _run([str(bindir / "ssvar"), "configs", "copy", name, "mine.yaml"], tmp_path, env)
    assert "__base__" not in (tmp_path / "mine.yaml").read_text()
    assert (
        listed in _run([str(bindir / "ssvar"), "fit", "--config", "mine.yaml", "--print_config"], tmp_path, env).stdout
    )
