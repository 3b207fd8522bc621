"""Device choice and torch.distributed set-up for `torchrun` (one process per GPU).

With WORLD_SIZE > 1 in the environment the process group is initialised (NCCL on CUDA, gloo on
CPU), each rank trains on its slice of every global batch (StepBatchSampler), the objective is
wrapped in DistributedDataParallel, and only rank 0 writes files. Otherwise a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(request: str, local_rank: int = 0) -> torch.device:
    """drrkit's one device rule (drrkit.render.base.resolve_device: 'auto' → CUDA when available,
    'cuda' without a GPU is an error), plus the local rank's GPU for a bare 'cuda'."""
    from drrkit.render.base import resolve_device as resolve

    try:
        request = resolve(request)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    if request.startswith("cuda"):
        return torch.device(request if ":" in request else f"cuda:{local_rank}")
    return torch.device("cpu")


def init_distributed(device_request: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0, resolve_device(device_request))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device("cuda" if device_request.startswith("cuda") else device_request, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def mean_across_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    if not info.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
