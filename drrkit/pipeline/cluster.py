"""Dask clusters for corpus jobs: a local one drrkit starts (loopback only), or an existing one.

A local cluster runs `workers` processes. On a CUDA machine they are pinned to the GPUs round-robin
with CUDA_VISIBLE_DEVICES, several per GPU when there are more workers than GPUs: reading and
decompressing a CT costs ~0.35 CPU-seconds while its 61 views take ~15 ms on the fused kernel, so
one GPU is fed by several decoding processes (the read path now releases the GIL, so threads of
one process read in parallel too; how much of rendering and writing holds it is not measured).
Each process renders with its own CUDA context; their kernels share the GPU by time-slicing, and
each serialises its own renders (worker.py). On a CPU machine the processes share the cores
(torch threads split evenly). Each worker runs `threads` tasks at once so that one CT decodes
and another's images are written while a third renders. Workers start with glibc settings that
keep freed memory for the next CT (allocator.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dask

from drrkit.pipeline.allocator import worker_environ


@dataclass(frozen=True)
class ClusterSpec:
    workers: int = 1  # local worker processes (ignored with scheduler); on CUDA shared round-robin by the GPUs
    scheduler: str | None = None  # address of an existing Dask scheduler
    threads_per_worker: int = 0  # concurrent CT tasks per worker (0 = auto, see worker_threads)
    retries: int = 2  # times a CT may lose its worker before it is marked failed
    gpus: int = 0  # local CUDA devices to pin workers to (0 = CPU cluster), at most `workers`


# Processes per GPU that `auto_workers` allows for each 4 GiB of the GPU's memory: a worker holds
# a CUDA context (~0.5 GB) and one CT being rendered (~1.1 GB peak for 512x512x300 at 256^2 fp32,
# benchmarks/results/render-h200.json).
GPU_GIB_PER_WORKER = 4


def auto_workers(gpus: int, gpu_memory_gib: float | None = None) -> int:
    """`--workers auto`: half the cores as processes (each decodes CTs while others render), at
    least one per GPU, and on CUDA no more per GPU than its memory holds (GPU_GIB_PER_WORKER)."""
    n = max(1, (os.cpu_count() or 1) // 2)
    if gpus:
        per_gpu = max(1, n // gpus)
        if gpu_memory_gib:
            per_gpu = min(per_gpu, max(1, int(gpu_memory_gib // GPU_GIB_PER_WORKER)))
        n = per_gpu * gpus
    return n


def worker_threads(spec: ClusterSpec, n_workers: int) -> int:
    """CT tasks a local worker runs at once. GPU workers: the cores shared out between them, at
    least 2 (one decodes while one renders or writes). CPU workers: 2 (their cores already go to
    torch's threads)."""
    if spec.threads_per_worker:
        return spec.threads_per_worker
    if spec.gpus:
        return max(2, (os.cpu_count() or 1) // n_workers)
    return 2


def start_client(spec: ClusterSpec):
    """A connected distributed.Client. Local schedulers bind to 127.0.0.1 only."""
    from distributed import Client

    if spec.scheduler:
        return Client(spec.scheduler, set_as_default=False)
    # allowed-failures is how often a task may be on a worker that dies before KilledWorker.
    # pre-spawn-environ: set before each worker process starts, when glibc reads it (allocator.py).
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **worker_environ()}
    with dask.config.set({"distributed.scheduler.allowed-failures": spec.retries,
                          "distributed.worker.daemon": False,
                          "distributed.nanny.pre-spawn-environ": spawn_env}):
        cluster = _local_cluster(spec)
    return Client(cluster, set_as_default=False)


def worker_layout(spec: ClusterSpec) -> list[tuple[str, dict, int]]:
    """(name, environment, task threads) of each local worker process. On CUDA worker k runs on
    GPU k mod gpus (names gpu0, gpu1, gpu0.1, gpu1.1, ...); torch threads split the cores."""
    if spec.gpus:
        n = max(spec.workers, spec.gpus)
        names = [f"gpu{k % spec.gpus}" + (f".{k // spec.gpus}" if k >= spec.gpus else "") for k in range(n)]
        devices = [str(k % spec.gpus) for k in range(n)]
    else:
        names = [f"cpu{i}" for i in range(spec.workers)]
        devices = [""] * len(names)
    torch_threads = str(max(1, (os.cpu_count() or 1) // len(names)))
    threads = worker_threads(spec, len(names))
    return [(name, {"CUDA_VISIBLE_DEVICES": dev, "OMP_NUM_THREADS": torch_threads,
                    "DRRKIT_TORCH_THREADS": torch_threads}, threads) for name, dev in zip(names, devices)]


def _local_cluster(spec: ClusterSpec):
    from distributed import Nanny, Scheduler, SpecCluster

    workers = {
        name: {"cls": Nanny, "options": {"nthreads": nthreads, "host": "127.0.0.1", "name": name, "env": env,
                                         "memory_limit": 0, "silence_logs": 40}}
        for name, env, nthreads in worker_layout(spec)
    }
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": None,
                                               "dashboard": False}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40, name="drrkit")


def close_client(client) -> None:
    """Close the client, and the cluster if drrkit started it."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
