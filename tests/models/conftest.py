"""Model tests run many small ops: one intra-op thread is much faster than two on a loaded
2-core machine."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small ops on a shared 2-core machine: one intra-op thread is many times faster than two.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
