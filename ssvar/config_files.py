"""The configs shipped inside the package (``ssvar/configs/``), usable by name.

``ssvar fit --config demo`` (or ``demo.yaml``, ``ssvar:demo``) uses the shipped demo; fragments go
by their folder: ``--config ssvar:methods/fixmatch``, ``--config trainer/csv``. A path to an
existing file always wins over a name; the ``ssvar:`` prefix insists on the shipped one.

    ssvar configs list                 # every shipped config, with its first comment line
    ssvar configs copy demo my.yaml    # copy one out to edit (never overwrites without --force)
    ssvar configs path methods/fixmatch

In a clone of the repository ``examples/configs`` points at the same files.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

__all__ = ["config_dir", "config_path", "list_configs", "resolve_config_args", "describe_config"]

PREFIX = "ssvar:"
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")


def config_dir() -> Path:
    """The folder of the shipped configs (inside the installed package)."""
    return Path(__file__).resolve().parent / "configs"


def list_configs() -> list[str]:
    """Names of every shipped config (``demo``, ``methods/fixmatch``, ...), sorted."""
    root = config_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def config_path(name: str) -> Path:
    """The file of the shipped config ``name`` (with or without ``ssvar:`` and ``.yaml``).

    Raises ``FileNotFoundError`` naming the closest names when there is none."""
    bare = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    bare = bare[: -len(".yaml")] if bare.endswith(".yaml") else bare
    if _NAME.match(bare) and ".." not in bare.split("/"):
        p = config_dir() / f"{bare}.yaml"
        if p.is_file():
            return p
    import difflib

    close = difflib.get_close_matches(bare, list_configs(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(f"no shipped config named {name!r}{hint} (ssvar configs list)")


def _resolve(value: str) -> str:
    if value.startswith(PREFIX):
        return str(config_path(value))
    if os.path.exists(value) or not _NAME.match(value):  # a file, or inline YAML: as given
        return value
    try:
        return str(config_path(value))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--config {value}: no such file, and no shipped config of that name (ssvar configs list)"
        ) from None


def resolve_config_args(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config``/``-c`` value that names a shipped config replaced by its path.

    Raises ``SystemExit(2)`` with a one-line message when a value is neither a file nor a shipped name."""
    out = list(argv)
    for i, a in enumerate(out):
        try:
            if a in ("--config", "-c") and i + 1 < len(out):
                out[i + 1] = _resolve(out[i + 1])
            elif a.startswith("--config="):
                out[i] = "--config=" + _resolve(a.split("=", 1)[1])
        except FileNotFoundError as e:
            sub = argv[0] if argv and not argv[0].startswith("-") else ""
            print(f"ssvar {sub}: {e}" if sub else f"ssvar: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return out


def describe_config(path: Path) -> str:
    """The first comment line of a config (its one-line description)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                if text and not text.startswith("ssvar "):
                    return text
            elif line.strip():
                break
    return ""


def __getattr__(name: str):
    if name == "configs_main":  # the command moved to the CLI layer; kept importable from here
        from ssvar.commands import configs_main

        return configs_main
    raise AttributeError(f"module 'ssvar.config_files' has no attribute {name!r}")
