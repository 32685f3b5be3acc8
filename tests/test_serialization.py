"""Safe loading of user-supplied files (issue 18): weights_only everywhere, a refused crafted file
runs nothing, an explicit opt-in that warns; one-line errors for bad checkpoint files."""

from __future__ import annotations

import builtins

import pytest
import torch

from ssvar.components.weights import load_weights, read_state_dict
from ssvar.models import Tiny3D
from ssvar.serialization import CheckpointError, load_file, read_lightning_checkpoint


class _Exploit:
    """Unpickling this calls ``open(marker, "w")``: any callable could be there instead."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _crafted(tmp_path, name="evil.ckpt"):
    marker = tmp_path / "code_ran"
    path = tmp_path / name
    state = Tiny3D(width=4).state_dict()
    torch.save({"state_dict": state, "payload": _Exploit(str(marker))}, path)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize(
    "load",
    [
        lambda p: Tiny3D(width=4, checkpoint=str(p)),
        lambda p: Tiny3D(width=4).load_checkpoint(str(p)),
        lambda p: read_state_dict(str(p)),
        lambda p: load_weights(Tiny3D(width=4), str(p), ""),
        lambda p: read_lightning_checkpoint(p),
    ],
    ids=["backbone_checkpoint_arg", "load_checkpoint", "read_state_dict", "load_weights", "read_lightning_checkpoint"],
)
def test_crafted_file_is_refused_and_nothing_runs(tmp_path, load, monkeypatch):
    monkeypatch.delenv("SSVAR_ALLOW_PICKLE", raising=False)
    path, marker = _crafted(tmp_path)
    with pytest.raises(CheckpointError, match="refused") as e:
        load(path)
    assert not marker.exists(), "unpickling ran code"
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "SSVAR_ALLOW_PICKLE" in msg
    assert "needs the Python object io.open" in msg  # names what it refused


def test_opt_in_loads_old_pickled_files_with_a_warning(tmp_path, monkeypatch):
    path, marker = _crafted(tmp_path)
    with pytest.warns(UserWarning, match="full unpickling"):
        obj = load_file(path, allow_pickle=True)
    assert "state_dict" in obj and marker.exists()  # really unpickled: that is what the opt-in means
    marker.unlink()
    monkeypatch.setenv("SSVAR_ALLOW_PICKLE", "1")
    with pytest.warns(UserWarning, match="SSVAR_ALLOW_PICKLE"):
        Tiny3D(width=4, checkpoint=str(path))


def test_plain_state_dicts_and_lightning_checkpoints_load(tmp_path):
    net = Tiny3D(width=4)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    torch.save(
        {
            "state_dict": {f"backbone.{k}": v for k, v in net.state_dict().items()},
            "epoch": 3,
            "hyper_parameters": {"lr": 0.1, "backbone": {"class_path": "ssvar.models.Tiny3D"}},
        },
        tmp_path / "l.ckpt",
    )
    other = Tiny3D(width=4, checkpoint=str(tmp_path / "w.pt"))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    assert load_weights(Tiny3D(width=4), str(tmp_path / "l.ckpt"), "backbone.") > 0


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "text", "truncated", "random"])
def test_bad_files_give_one_line_naming_the_file(tmp_path, case):
    path = tmp_path / "x.ckpt"
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": Tiny3D(width=4).state_dict()}, good)
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("model: {class_path: x}\n")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "random":
        path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError) as e:
        read_lightning_checkpoint(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    if case == "missing":
        assert isinstance(e.value, FileNotFoundError)


def test_a_file_from_another_program_is_not_a_lightning_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        read_lightning_checkpoint(path)
