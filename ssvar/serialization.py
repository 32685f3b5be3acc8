"""Loading checkpoint and weight files a user supplies, safely.

Every ``torch.load`` of a file that came from outside (``checkpoint=`` of a backbone,
``init_backbone_from``, TimeBalance's teachers, ``ssvar predict-videos --ckpt``, ``--ckpt_path``)
goes through :func:`load_file`, which uses ``torch.load(weights_only=True)``: tensors, numbers,
strings, lists and dicts only. Unpickling a plain pickle can run any code, so a file that needs
more than that (an old checkpoint that pickled a whole ``nn.Module``, an ``argparse.Namespace`` in
its hyperparameters, ...) is **refused** with a one-line error, and nothing in it runs.

To load such a file from a source you trust, opt in explicitly, with a warning each time:
``SSVAR_ALLOW_PICKLE=1`` in the environment (covers every loader, the CLI included), or
``allow_pickle=True`` where a function takes it. Better, convert the file once to a plain state
dict (``torch.save(obj["state_dict"], "weights.pt")``) and drop the opt-in.

Errors are :class:`CheckpointError` (a ``ValueError``) with a one-line message naming the file and
what is wrong; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import os
import pickle
import warnings
from typing import Any

__all__ = [
    "ALLOW_PICKLE_ENV",
    "CheckpointError",
    "CheckpointNotFoundError",
    "check_checkpoint_path",
    "load_file",
    "read_lightning_checkpoint",
]

ALLOW_PICKLE_ENV = "SSVAR_ALLOW_PICKLE"


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used; the message is one line naming it."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The file does not exist (also a ``FileNotFoundError``)."""


def _allow_pickle_from_env() -> bool:
    return os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower() in ("1", "true", "yes")


def _safe_globals() -> list:
    """Types beyond plain containers that Lightning checkpoints may hold and that are safe to
    rebuild (no code runs): ``pathlib`` paths (callback state such as a checkpoint folder)."""
    import pathlib

    return [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]


def load_file(
    path: str | os.PathLike, *, map_location: Any = "cpu", allow_pickle: bool | None = None, what: str = "checkpoint"
) -> Any:
    """``torch.load`` of a user-supplied file with ``weights_only=True``.

    Args:
        path: the file.
        map_location: as for ``torch.load``.
        allow_pickle: load a file that needs full unpickling (which can run code) after a
            warning; ``None`` reads ``$SSVAR_ALLOW_PICKLE``.
        what: the word used in error messages (``"checkpoint"``, ``"weights file"``, ...).

    Raises:
        CheckpointError: missing file, a folder, a file that is no PyTorch file or is truncated,
            or one that needs unpickling of code (without the opt-in).
    """
    import torch

    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"{what} {path} is a folder, not a file")
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"{what} {path} does not exist")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes)")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _first_line(e)
        if allow_pickle is None:
            allow_pickle = _allow_pickle_from_env()
        if not allow_pickle:
            raise CheckpointError(
                f"{what} {path} was refused: it is not a plain weights file ({detail}); unpickling it could run "
                f"code. If you trust where it comes from, set {ALLOW_PICKLE_ENV}=1 to load it anyway"
            ) from None
    except Exception as e:  # truncated zip, random bytes, text, another program's format
        raise CheckpointError(
            f"{what} {path} is not a readable PyTorch file (corrupt or from another program?): {_first_line(e)}"
        ) from None
    warnings.warn(
        f"{what} {path} is loaded with full unpickling ({ALLOW_PICKLE_ENV} / allow_pickle): this runs any code the "
        "file contains; convert it to a plain state dict once to avoid this",
        UserWarning,
        stacklevel=2,
    )
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{what} {path} could not be loaded: {_first_line(e)}") from None


def read_lightning_checkpoint(
    path: str | os.PathLike, *, map_location: Any = "cpu", allow_pickle: bool | None = None
) -> dict:
    """:func:`load_file` of a checkpoint written by Lightning (``ssvar fit``): a dict with a
    ``state_dict``; anything else is a :class:`CheckpointError` saying so."""
    obj = load_file(path, map_location=map_location, allow_pickle=allow_pickle)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        kind = f"a dict with keys {sorted(obj)[:6]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(
            f"checkpoint {os.fspath(path)} is not a Lightning checkpoint (it holds {kind}, no 'state_dict')"
        )
    return obj


def check_checkpoint_path(path: str | os.PathLike) -> None:
    """Fail early with one line when ``path`` is not a usable Lightning checkpoint. The tensors
    are memory-mapped, not read, so this costs little even for large files."""
    import torch

    try:
        obj = load_file(path, map_location="cpu", what="checkpoint") if not _is_zip(path) else _load_mmap(path, torch)
    except CheckpointError:
        raise
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        kind = f"a dict with keys {sorted(obj)[:6]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(
            f"checkpoint {os.fspath(path)} is not a Lightning checkpoint (it holds {kind}, no 'state_dict')"
        )


def _is_zip(path) -> bool:
    import zipfile

    return os.path.isfile(path) and os.path.getsize(path) > 0 and zipfile.is_zipfile(path)


def _load_mmap(path, torch) -> Any:
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(os.fspath(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        # Anything odd (or refused): the full loader gives the precise one-line message.
        return load_file(path, map_location="cpu")


def _first_line(e: BaseException) -> str:
    """The informative part of an exception, on one line."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if m:
        return f"it needs the Python object {m.group(1)}"
    m = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
    if m:
        return m.group(1).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
