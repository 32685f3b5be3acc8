"""A weights file that holds no state dict is refused with the file's name."""

from __future__ import annotations

import pytest
import torch

from ssvar.models import Tiny3D
from ssvar.serialization import CheckpointError


@pytest.mark.parametrize("prefix", ["", "backbone."])
def test_a_file_holding_a_bare_tensor_is_a_checkpoint_error(tmp_path, prefix):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match=r"tensor\.pt holds a Tensor, not a state dict"):
        Tiny3D(width=4).load_checkpoint(str(path), prefix=prefix)
