"""Dask clusters for corpus jobs: a local one drrkit starts (loopback only), or an existing one.

On a CUDA machine the local cluster runs one worker process per GPU, each pinned to its GPU with
CUDA_VISIBLE_DEVICES; on a CPU machine N worker processes share the cores (torch threads split
evenly). Each worker runs `threads` tasks at once so that one CT decodes and another's images are
written while a third renders (the renderer itself is serialised per worker, see worker.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dask


@dataclass(frozen=True)
class ClusterSpec:
    workers: int = 1  # local worker processes (ignored with scheduler)
    scheduler: str | None = None  # address of an existing Dask scheduler
    threads_per_worker: int = 0  # concurrent CT tasks per worker (0 = auto, see worker_threads)
    retries: int = 2  # times a CT may lose its worker before it is marked failed
    gpus: int = 0  # local CUDA devices to pin workers to (0 = CPU cluster)


def worker_threads(spec: ClusterSpec, n_workers: int) -> int:
    """CT tasks a local worker runs at once. CPU workers: 2 (one decodes while one renders; the
    cores already go to torch's threads). GPU workers: the cores shared out between them, because
    decoding a compressed CT costs ~1 CPU-second while its views take milliseconds on the GPU, so
    the GPU is fed only when many CTs decode at once."""
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
    with dask.config.set({"distributed.scheduler.allowed-failures": spec.retries,
                          "distributed.worker.daemon": False}):
        cluster = _local_cluster(spec)
    return Client(cluster, set_as_default=False)


def _local_cluster(spec: ClusterSpec):
    from distributed import Nanny, Scheduler, SpecCluster

    cores = os.cpu_count() or 1
    if spec.gpus:
        names = [f"gpu{i}" for i in range(spec.gpus)]
        envs = [{"CUDA_VISIBLE_DEVICES": str(i)} for i in range(spec.gpus)]
    else:
        names = [f"cpu{i}" for i in range(spec.workers)]
        envs = [{"CUDA_VISIBLE_DEVICES": ""} for _ in names]
    torch_threads = str(max(1, cores // len(names)))
    workers = {
        name: {"cls": Nanny, "options": {
            "nthreads": worker_threads(spec, len(names)), "host": "127.0.0.1", "name": name,
            "env": {**env, "OMP_NUM_THREADS": torch_threads, "DRRKIT_TORCH_THREADS": torch_threads},
            "memory_limit": 0, "silence_logs": 40}}
        for name, env in zip(names, envs)
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
