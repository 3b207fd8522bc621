"""Reconstruction tests run torch single-threaded: their tensors are small, and on a shared 2-core
machine intra-op threading costs more in synchronisation than it gains (measured 4x slower)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
