"""The README's commands run as written (issue 18): its set-up command's `ssvar fit --config demo`
and the follow-up block (test from the last checkpoint, predict a video, resume, predict the test
list) are read from README.md itself and run in order, as subprocesses in a fresh folder, with
only tiny-size arguments appended. Changing the README's commands changes what runs here."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import REPO, _tiny_synth_args

README = REPO / "README.md"


def readme_setup_fit() -> list[str]:
    """The `ssvar fit ...` at the end of the README's first (install + demo) command."""
    first = next(ln for ln in README.read_text().splitlines() if "pip install" in ln and "ssvar fit" in ln)
    return shlex.split(first[first.index("ssvar fit"):])


def readme_block(name: str) -> list[list[str]]:
    """The commands of the README block between the ``<name>:start`` / ``<name>:end`` markers."""
    text = README.read_text()
    m = re.search(rf"<!-- {name}:start.*?-->\s*```bash\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert m, f"README.md lost its {name} block"
    return [shlex.split(ln, comments=True) for ln in m.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def readme_follow_up_commands() -> list[list[str]]:
    """The follow-up block: test from the last checkpoint, predict, resume."""
    return readme_block("readme-commands")


def _tiny(cmd: list[str], data_root: Path, epochs: int) -> list[str]:
    """Tiny-size arguments after the README's own (later arguments win)."""
    if cmd[1] in ("fit", "validate", "test", "predict"):
        return cmd + [
            *_tiny_synth_args(data_root),
            "--trainer.max_epochs",
            str(epochs),
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.enable_progress_bar",
            "false",
        ]
    return cmd


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert cmd[0] == "ssvar"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "ssvar.cli", *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


# Warnings that ask nothing of the user must not reach them.
NOISE = ("on_before_batch_transfer", "on_after_batch_transfer", "LeafSpec", "was deprecated", "Warning:", "Traceback")


def test_readme_block_holds_the_follow_up_commands():
    kinds = [(c[1], "--ckpt_path" in c) for c in readme_follow_up_commands()]
    assert ("test", True) in kinds and ("predict-videos", False) in kinds
    assert ("fit", True) in kinds and ("predict", True) in kinds
    assert readme_setup_fit()[:4] == ["ssvar", "fit", "--config", "demo"]


def test_readme_commands_run_as_written(tmp_path):
    data = tmp_path / "synth"
    work = tmp_path / "work"
    work.mkdir()
    res = _run(_tiny(readme_setup_fit(), data, 1), work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "test/acc1_" in res.stdout  # test_after_fit ran
    noisy = [n for n in NOISE if n in res.stderr]
    assert not noisy, f"the demo printed {noisy}:\n{res.stderr[-3000:]}"
    assert (work / "runs/demo/lightning_logs/version_0/checkpoints/last.ckpt").is_file()
    # the README's `clip.mp4`: any video of the data set
    shutil.copy(next(data.rglob("*.mp4")), work / "clip.mp4")
    epochs = 1
    for cmd in readme_follow_up_commands():
        if cmd[1] == "fit":
            epochs += 1  # resume: one more epoch than the run had
        res = _run(_tiny(cmd, data, epochs), work)
        assert res.returncode == 0, f"{shlex.join(cmd)}\n" + res.stdout[-2000:] + res.stderr[-3000:]
        assert "Traceback" not in res.stderr
        if cmd[1] == "predict-videos":
            assert "prob" in res.stdout and "clip.mp4" in res.stdout
        if cmd[1] == "predict":
            assert "predictions written to" in res.stdout
        if cmd[1] == "fit":
            assert "Restoring states from the checkpoint" in res.stdout + res.stderr
    assert list(work.rglob("predictions.csv"))


def test_readme_recipe_pretrain_then_start_from_it(tmp_path):
    # the self-supervised start: pretrain without labels, then the demo from the checkpoint the README names
    data, work = tmp_path / "synth", tmp_path / "work"
    work.mkdir()
    pretrain, start = readme_block("recipe-commands")
    assert pretrain[:4] == ["ssvar", "fit", "--config", "pretrain_tiny3d_synthetic"]
    res = _run(_tiny(pretrain, data, 1) + ["--model.init_args.num_frames", "4"], work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    ckpt = start[start.index("--model.init_args.init_backbone_from") + 1]
    assert (work / ckpt).is_file(), f"the README's checkpoint path {ckpt} was not written"
    res = _run(_tiny(start, data, 1), work)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "test/acc1_" in res.stdout and "Traceback" not in res.stderr


@pytest.mark.parametrize("name", ["demo"])
def test_readme_names_only_configs_that_exist(name):
    from ssvar.config_files import list_configs

    text = README.read_text()
    named = set(re.findall(r"--config (?:ssvar:)?([A-Za-z0-9_./-]+)", text))
    named = {n[:-5] if n.endswith(".yaml") else n for n in named if not n.startswith(("X", "my_", "CKPT"))}
    named = {n.removeprefix("examples/configs/") for n in named}
    missing = sorted(n for n in named if n not in list_configs())
    assert name in named and not missing, missing
