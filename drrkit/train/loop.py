"""The X-WIN training loop: read it top to bottom.

    train(cfg, stores, out, real_dir=...)            a new run
    train(None, [], out, resume=True)                continue it exactly from checkpoints/last.pt

Each step: the step's batch of CTs (context + targets + actions, with MIM masks) and of real
radiographs → weighted losses (objective.py) → AdamW step with the step's lr and weight decay →
EMA update of the target encoder. Everything random is a function of (seed, step) or restored
from the checkpoint, so a resumed run computes the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from itertools import repeat
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from drrkit.config import to_dict
from drrkit.train.checkpoint import save_checkpoint, set_rng_state, rng_state
from drrkit.train.config import TrainConfig
from drrkit.train.data import ProjectionViews, StepBatchSampler
from drrkit.train.distributed import DistInfo, barrier, init_distributed, mean_across_ranks, shutdown
from drrkit.train.masks import MaskCollator
from drrkit.train.metrics import MetricsLog
from drrkit.train.model import build_xwin
from drrkit.train.objective import LOSS_NAMES, XWinObjective
from drrkit.train.real import RealRadiographs
from drrkit.train.run import RunInputs, load_split, prepare_run, write_run_files
from drrkit.train.schedule import make_schedule


def make_loader(dataset, cfg: TrainConfig, batch_size: int, start_step: int, info: DistInfo, stream: int):
    """An endless loader of the steps start_step, start_step+1, ... for this rank."""
    sampler = StepBatchSampler(len(dataset), batch_size, cfg.seed, start_step, info.rank, info.world_size, stream)
    collate = MaskCollator(cfg.masks, cfg.model.grid, cfg.seed, stream)
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      pin_memory=info.device.type == "cuda", persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(cfg.seed))  # keep the global RNG untouched


def param_groups(model: torch.nn.Module) -> list[dict]:
    """AdamW groups: weight decay on weights; none on biases and norm parameters (1-D)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.ndim > 1], "wd_exclude": False},
            {"params": [p for p in trainable if p.ndim <= 1], "wd_exclude": True, "weight_decay": 0.0}]


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train(cfg: TrainConfig | None, stores, out, real_dir=None, resume: bool = False, stop_at: int | None = None,
          device: str | None = None, on_step: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume) an X-WIN run in folder `out`; returns the run summary. `stop_at` ends
    this invocation at that global step (checkpointed); `device` overrides run.device."""
    out = Path(out)
    cfg, inputs, payload = prepare_run(out, cfg, stores, real_dir, resume)
    cfg = cfg.with_overrides(device=device)
    info = init_distributed(cfg.run.device)
    try:
        return _train(cfg, inputs, out, payload, info, stop_at, on_step)
    finally:
        shutdown(info)


def _train(cfg, inputs: RunInputs, out: Path, payload, info: DistInfo, stop_at, on_step) -> dict:
    device = info.device
    # -- data: CTs split by CT (split.json), simulated and real loaders positioned at the start step
    train_cts, val_cts = load_split(out, cfg, inputs, fresh=payload is None, write=info.is_main)
    start = payload["step"] if payload else 0
    sim_iter, real_iter = _batches(cfg, inputs, train_cts, start, info)
    schedule = make_schedule(cfg.optim, len(train_cts), cfg.data.batch_size * info.world_size)
    stop = min(schedule.total_steps, stop_at or schedule.total_steps)
    if info.is_main:
        write_run_files(out, cfg, inputs, schedule, info.world_size, device)

    # -- model, objective (DDP-wrapped when distributed), optimizer; restored when resuming
    model, objective, optimizer = _model(cfg, inputs, schedule, payload, info)
    metrics = MetricsLog(out / "metrics.jsonl")
    if info.is_main:  # drop records written after the last checkpoint (or by a run that never made one)
        metrics.truncate_after(start)

    # -- the loop
    last = {}
    for step in range(start, stop):
        t0 = time.perf_counter()
        sim, real = next(sim_iter), next(real_iter)
        sim, real = to_device(sim, device), (to_device(real, device) if real is not None else None)
        losses = train_step(objective, model, optimizer, schedule, step, sim, real, cfg.optim.grad_clip)
        done = step + 1
        if done % cfg.run.log_every == 0 or done == stop:
            n_images = sim["context"].size(0) * (1 + sim["targets"].size(1)) + (len(real["image"]) if real else 0)
            values = mean_across_ranks({k: float(v.detach()) for k, v in losses.items()}, info)
            last = {"step": done, **values, "lr": schedule.lr(step), "wd": schedule.weight_decay(step),
                    "momentum": schedule.momentum(step),
                    "images_per_s": n_images * info.world_size / (time.perf_counter() - t0)}
            if info.is_main:
                metrics.append(last)
            if on_step:
                on_step({**last, "total_steps": schedule.total_steps, "stop": stop})
        if done % cfg.run.checkpoint_every == 0 or done == stop:
            if info.is_main:
                save_checkpoint(out, {"step": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                      "rng": rng_state(), "config": cfg.to_dict(), "schedule": schedule.to_dict(),
                                      "inputs": to_dict(vars(inputs))}, cfg.run.keep_checkpoints)
                metrics.plot(out / "loss_curve.png", LOSS_NAMES)
            barrier(info)

    summary = {"run": str(out), "start_step": start, "end_step": max(start, stop), "total_steps": schedule.total_steps,
               "finished": stop >= schedule.total_steps, "last": last, "n_train_cts": len(train_cts),
               "n_val_cts": len(val_cts), "real_dir": inputs.real_dir, "device": str(device),
               "world_size": info.world_size, "target_init_share": schedule.init_share(max(start, stop))}
    if info.is_main:
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def train_step(objective, model, optimizer, schedule, step: int, sim: dict, real: dict | None,
               grad_clip: float) -> dict:
    """One optimizer step at global step `step`: schedule → losses → AdamW → EMA of f'."""
    for group in optimizer.param_groups:
        group["lr"] = schedule.lr(step)
        if not group["wd_exclude"]:
            group["weight_decay"] = schedule.weight_decay(step)
    device_type = sim["context"].device.type
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device_type == "cuda"):
        losses = objective(sim, real)
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    model.update_target_encoder(schedule.momentum(step))  # f' ← m f' + (1 − m) f
    return losses


def _batches(cfg, inputs: RunInputs, train_cts, start: int, info: DistInfo):
    """Endless iterators of simulated batches and of real batches (None when there are none)."""
    sim_data = ProjectionViews(train_cts, cfg.data, cfg.model.img_size, cfg.seed)
    sim_iter = iter(make_loader(sim_data, cfg, cfg.data.batch_size, start, info, stream=0))
    if not inputs.real_dir:
        return sim_iter, repeat(None)
    real_data = RealRadiographs.from_folder(inputs.real_dir, cfg.model.img_size, cfg.data.intensity)
    return sim_iter, iter(make_loader(real_data, cfg, cfg.data.real_batch_size, start, info, stream=1))


def _model(cfg, inputs: RunInputs, schedule, payload, info: DistInfo):
    """(model, objective, optimizer), restored from the checkpoint `payload` when resuming."""
    device = info.device
    model = build_xwin(cfg.model, cfg.seed).to(device)
    objective = XWinObjective(model, cfg.loss).train()
    optimizer = torch.optim.AdamW(param_groups(model), lr=schedule.lr(0), betas=cfg.optim.betas)
    if payload:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"])
    if info.distributed:
        some_off = min(objective.weights.values()) == 0 or not inputs.real_dir
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=some_off)
    return model, objective, optimizer
