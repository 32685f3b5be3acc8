"""The CLI layer: argument parsing lives in ssvar.cli / ssvar.commands, the library takes plain arguments."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import ssvar
from ssvar.cli import COMMANDS

PACKAGE = Path(ssvar.__file__).parent
CLI_MODULES = {"cli.py", "commands.py"}
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "splits"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_library_modules_do_not_parse_arguments():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name not in CLI_MODULES and "argparse" in _imports(p)
    ]
    assert offenders == []


def test_every_plain_command_lives_in_the_cli_layer():
    for name, cmd in COMMANDS.items():
        module, func = cmd.target.split(":")
        assert module in ("ssvar.commands", "ssvar.lightning_cli"), name
        assert callable(getattr(importlib.import_module(module), func)), name


@pytest.mark.parametrize(
    "module, old, new",
    [
        ("ssvar.data.splits", "splits_main", "splits_main"),
        ("ssvar.data.check", "check_videos_main", "check_videos_main"),
        ("ssvar.data.prepare", "prepare_videos_main", "prepare_videos_main"),
        ("ssvar.predict", "predict_main", "predict_videos_main"),
        ("ssvar.config_files", "configs_main", "configs_main"),
    ],
)
def test_moved_commands_stay_importable_from_their_old_home(module, old, new):
    from ssvar import commands

    assert getattr(importlib.import_module(module), old) is getattr(commands, new)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        importlib.import_module(module).nope  # noqa: B018


def test_readers_are_reexported_from_splits():
    from ssvar.data import lists, splits

    for name in lists.__all__:
        assert getattr(splits, name) is getattr(lists, name), name
    assert set(lists.__all__) <= set(splits.__all__)


def test_read_official_split_reads_the_published_lists():
    from ssvar.data.lists import read_official_split, read_ucf101_list

    d = SHARED / "ucf101"
    if not (d / "trainlist01.txt").is_file():
        pytest.skip(f"shared split lists not found at {d}")
    train, test = read_official_split("ucf101", d, split=2)
    assert test is not None
    assert train.paths() == read_ucf101_list(d / "trainlist02.txt", d / "classInd.txt").paths()
    assert len(train) == 9586 and len(test) == 3734 and train.num_classes == 101
    with pytest.raises(ValueError, match="dataset must be one of ucf101, hmdb51, kinetics400, got 'ucf-101'"):
        read_official_split("ucf-101", d)


def test_splits_help_and_usage_errors_through_the_cli(capsys):
    from ssvar.cli import main

    assert main(["splits", "make", "--help"]) == 0
    assert "--test-fraction" in capsys.readouterr().out
    assert main(["splits", "make", "--dataset", "ucf101", "--percent", "1"]) == 2  # --out missing
    assert "--out" in capsys.readouterr().err
