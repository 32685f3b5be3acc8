"""The ``ssvar`` command: one table of subcommands, each imported only when it runs.

``ssvar --help`` lists them; ``ssvar COMMAND --help`` gives a command's options. Only the
training commands (``fit``, ``validate``, ``test``, ``predict``: LightningCLI, in
:mod:`ssvar.lightning_cli`) import Lightning, so the others start in well under a second.

To add a subcommand, add one row to :data:`COMMANDS`: its name, a one-line help and
``"module:function"``, a function taking the arguments after the name and returning the exit
status. The argument parsers of the non-Lightning commands live in :mod:`ssvar.commands`; the
library modules they call take plain arguments.
"""

from __future__ import annotations

import importlib
import sys
from typing import NamedTuple

from ssvar import __version__


class Command(NamedTuple):
    help: str
    target: str  # "module:function"; the function takes argv (after the name), returns an exit status
    lightning: bool = False  # LightningCLI subcommand: the target gets the name as argv[0]


COMMANDS: dict[str, Command] = {
    "fit": Command(
        "train a method from a config (`--config demo`; `ssvar fit --help` lists every option)",
        "ssvar.lightning_cli:main",
        True,
    ),
    "validate": Command("validation metrics of a trained checkpoint (--ckpt_path)", "ssvar.lightning_cli:main", True),
    "test": Command("multi-view test accuracy of a trained checkpoint (--ckpt_path)", "ssvar.lightning_cli:main", True),
    "predict": Command(
        "predict a data module's test list from a checkpoint; writes predictions.csv", "ssvar.lightning_cli:main", True
    ),
    "predict-videos": Command(
        "top-k classes of video files or folders from a checkpoint (--ckpt)", "ssvar.commands:predict_videos_main"
    ),
    "splits": Command("make and verify class-balanced labelled split lists", "ssvar.commands:splits_main"),
    "check-videos": Command("list unreadable or too-short videos under a folder", "ssvar.commands:check_videos_main"),
    "prepare-videos": Command(
        "re-encode videos for fast training (resize, constant frame rate)", "ssvar.commands:prepare_videos_main"
    ),
    "configs": Command("list the shipped configs, or copy one out to edit", "ssvar.commands:configs_main"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    rows = "\n".join(f"  {name:<{width}}{cmd.help}" for name, cmd in COMMANDS.items())
    return (
        "usage: ssvar [-h] [--version] COMMAND [ARGS ...]\n\n"
        "Semi-supervised video action recognition on PyTorch Lightning.\n\n"
        f"commands:\n{rows}\n\n"
        "options:\n  -h, --help  show this message and exit\n  --version   print the version and exit\n\n"
        "`ssvar COMMAND --help` shows a command's options. Shipped configs go by name:\n"
        "`ssvar fit --config demo` (see `ssvar configs list`)."
    )


def _load(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssvar`` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(_usage(), file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if name in ("-V", "--version", "version"):
        print(f"ssvar {__version__}")
        return 0
    cmd = COMMANDS.get(name)
    if cmd is None:
        print(f"ssvar: unknown command {name!r}; choose from {', '.join(COMMANDS)} (ssvar --help)", file=sys.stderr)
        return 2
    try:
        func = _load(cmd.target)
    except ModuleNotFoundError as e:
        if e.name and cmd.target.split(":")[0].startswith(e.name):  # the command's own module is missing
            print(f"ssvar {name}: not available in this installation ({e})", file=sys.stderr)
            return 2
        raise
    status = func([name, *rest] if cmd.lightning else rest)
    return int(status or 0)


def run_cli(args: list[str] | None = None, run: bool = True):
    """LightningCLI entry, usable from Python and tests (``args`` as on the command line);
    see :func:`ssvar.lightning_cli.run_cli`."""
    from ssvar.lightning_cli import run_cli as _run_cli

    return _run_cli(args, run=run)


def __getattr__(name: str):
    if name == "SsvarCLI":  # the LightningCLI subclass, imported on demand (it imports Lightning)
        from ssvar.lightning_cli import SsvarCLI

        return SsvarCLI
    raise AttributeError(f"module 'ssvar.cli' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
