"""The configs shipped inside the package (``ssvar/configs/``), usable by name.

``ssvar fit --config demo`` (or ``demo.yaml``, ``ssvar:demo``) uses the shipped demo; fragments go
by their folder: ``--config ssvar:methods/fixmatch``, ``--config trainer/csv``. A path to an
existing file always wins over a name; the ``ssvar:`` prefix insists on the shipped one.

    ssvar configs list                 # every shipped config, with its first comment line
    ssvar configs copy demo my.yaml    # copy one out to edit (never overwrites without --force)
    ssvar configs path methods/fixmatch

In a clone of the repository ``examples/configs`` points at the same files.

A config may be built from fragments: a top-level ``__base__`` list names YAML files (relative to
the file that names them, or ``ssvar:NAME`` for a shipped one), merged in order, the file's own
keys last::

    __base__: [paper/fixmatch_r3d18_8xb8-8x8x1.yaml, splits/ucf101-s1-10pct.yaml, schedules/180ep.yaml]
    trainer:
      default_root_dir: runs/fixmatch_r3d18_ucf101-s1-10pct

Mappings merge key by key (a mapping whose ``class_path`` changes is replaced whole); lists and
values are replaced. Fragments may name fragments. ``--config`` hands LightningCLI the merged
result, and ``ssvar configs copy`` writes it out as one self-contained file.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

__all__ = [
    "ConfigError", "config_dir", "config_path", "describe_config", "list_configs", "load_config",
    "resolve_config_args", "self_contained",
]

PREFIX = "ssvar:"
BASE_KEY = "__base__"
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
    bare = name.removeprefix(PREFIX)
    bare = bare.removesuffix(".yaml")
    if _NAME.match(bare) and ".." not in bare.split("/"):
        p = config_dir() / f"{bare}.yaml"
        if p.is_file():
            return p
    import difflib

    close = difflib.get_close_matches(bare, list_configs(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise FileNotFoundError(f"no shipped config named {name!r}{hint} (ssvar configs list)")


class ConfigError(ValueError):
    """A config file that cannot be composed (a missing fragment, a cycle, not a mapping)."""


def _read_yaml(path: Path):
    import yaml
    from jsonargparse import get_loader  # LightningCLI's YAML loader (same numbers, e.g. 1e-4)

    try:
        return get_loader("yaml")(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        same_class = not (isinstance(old, dict) and isinstance(value, dict) and "class_path" in old
                          and "class_path" in value and old["class_path"] != value["class_path"])
        out[key] = _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) and same_class else value
    if "class_path" in out:  # read first, wherever a fragment put it
        out = {"class_path": out.pop("class_path"), **out}
    return out


def _compose(path: Path, chain: tuple[Path, ...]) -> dict:
    path = Path(os.path.abspath(path))
    if path in chain:
        loop = " -> ".join(p.name for p in (*chain[chain.index(path) :], path))
        raise ConfigError(f"{chain[-1]}: {BASE_KEY} makes a cycle ({loop})")
    cfg = _read_yaml(path)
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping (key: value), found {type(cfg).__name__}")
    bases = cfg.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a list of file paths relative to this file")
    merged: dict = {}
    for base in bases:
        try:  # `ssvar:NAME` is a shipped config (a user's own recipe on a shipped fragment)
            fragment = config_path(base) if base.startswith(PREFIX) else path.parent / base
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: {BASE_KEY}: {e}") from None
        if not fragment.is_file():
            raise ConfigError(f"{path}: {BASE_KEY} names {base}, which does not exist ({fragment})")
        merged = _merge(merged, _compose(fragment, (*chain, path)))
    return _merge(merged, cfg)


def load_config(path: str | os.PathLike) -> dict:
    """The content of a config file with its ``__base__`` fragments merged in (what LightningCLI gets).

    Raises :class:`ConfigError` naming the file for a missing fragment or a cycle."""
    return _compose(Path(path), ())


def _has_bases(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as f:
        return any(line.startswith(BASE_KEY) for line in f)


def _resolve(value: str) -> str:
    if value.startswith(PREFIX):
        value = str(config_path(value))
    elif not os.path.exists(value) and _NAME.match(value):
        try:
            value = str(config_path(value))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"--config {value}: no such file, and no shipped config of that name (ssvar configs list)"
            ) from None
    if _has_bases(value):  # composed here: LightningCLI takes the merged config as text (JSON is YAML)
        return json.dumps(load_config(value))
    return value  # a plain file, or inline YAML: as given


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
        except (FileNotFoundError, ConfigError) as e:
            sub = argv[0] if argv and not argv[0].startswith("-") else ""
            print(f"ssvar {sub}: {e}" if sub else f"ssvar: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return out


def self_contained(path: Path) -> str:
    """The text of a config with its fragments merged in: its own leading comments, then the
    merged keys (what ``ssvar configs copy`` writes; it works without the fragments)."""
    text = path.read_text(encoding="utf-8")
    if not _has_bases(str(path)):
        return text
    header = []
    for line in text.splitlines():  # the file's own leading comments (paper, what differs from it)
        if not line.startswith("#"):
            break
        header.append(line)
    bases = _read_yaml(path)[BASE_KEY]
    bases = [bases] if isinstance(bases, str) else bases
    header.append(f"# (written by `ssvar configs copy` from {path.name} and its fragments {', '.join(bases)})")
    return "\n".join(header) + "\n" + _dump_yaml(load_config(path))


def _dump_yaml(cfg: dict) -> str:
    """Block YAML in the shipped configs' style: nested lists indented, lists of plain values inline."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False):
            return super().increase_indent(flow, False)

    def represent_list(dumper, data):
        inline = all(not isinstance(x, (dict, list)) for x in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=inline)

    Dumper.add_representer(list, represent_list)
    return yaml.dump(cfg, Dumper=Dumper, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)


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
