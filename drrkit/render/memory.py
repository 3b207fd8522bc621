"""Batch sizes bounded by the memory a renderer can actually see."""

from __future__ import annotations

import psutil

# Fraction of free memory a batch may take; the rest is left for the volume, the store writer and
# whatever else shares the device.
MEMORY_FRACTION = 0.5


def free_bytes(device: str) -> int:
    """Free memory on `device`: CUDA free memory from the driver, or available host RAM."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return int(psutil.virtual_memory().available)


def batch_size_for(bytes_per_view: int, device: str, cap: int, floor: int = 1) -> int:
    """Largest batch whose estimated working set fits in MEMORY_FRACTION of free memory."""
    budget = free_bytes(device) * MEMORY_FRACTION
    return int(max(floor, min(cap, budget // max(1, bytes_per_view))))


def peak_bytes(device: str) -> int | None:
    """Peak allocated bytes on a CUDA device since the last reset (None on CPU)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    return None
