"""Simulated projections for X-WIN: one sample = one CT's context view, N target views, N actions.

The context view is the CT's routine frontal projection: the stored view whose rotation is
closest to zero (yaw 0° in the X-WIN recipe). Targets are `n_targets` of the CT's other views,
drawn without replacement by a torch.Generator seeded by (seed, epoch, index), so an epoch's
samples are a pure function of the seed (exact resume, any worker count). An action is the
target's pose relative to the context ("direct" rotation in X-WIN terms): with action_dim 1 the
yaw in radians (absolute yaw, the context being at 0), with 3 the ZXY rotation difference, with 6
also the translation difference in units of 100 mm. Only CTs whose status is "done" are used.

Stores are opened lazily, once per process (DataLoader workers re-open after fork); no open
handle is ever pickled. `StepBatchSampler` turns a global step into the batch of that step.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from drrkit.store import StoreError, open_corpus
from drrkit.train.config import DataConfig
from drrkit.train.masks import mixed_seed
from drrkit.train.transforms import to_model_input

TRANSLATION_SCALE_MM = 100.0


@dataclass(frozen=True, eq=False)
class CTViews:
    """One rendered CT of a store: its rows, its frontal context row and its target candidates."""

    store: str
    ct_index: int
    ct_id: str
    source: str
    rows: np.ndarray  # all rows of the CT (V,)
    context: int  # row of the frontal view
    actions: np.ndarray  # (V, action_dim): pose of every row relative to the context row
    targets: np.ndarray  # positions (into rows) allowed as targets

    @property
    def key(self) -> str:
        return f"{self.store}::{self.ct_id}"


def relative_actions(rotations: np.ndarray, translations: np.ndarray, context: int, action_dim: int) -> np.ndarray:
    """Pose of each view relative to the context view, as the predictor's action vector."""
    rot = rotations - rotations[context]
    if action_dim == 1:
        return rot[:, :1]
    if action_dim == 3:
        return rot
    return np.concatenate([rot, (translations - translations[context]) / TRANSLATION_SCALE_MM], axis=1)


def target_positions(yaw_rel: np.ndarray, context_pos: int, cfg: DataConfig) -> np.ndarray:
    """Views allowed as targets: not the context, |yaw| within range, on the yaw step grid."""
    deg = np.degrees(yaw_rel)
    ok = np.abs(deg) <= cfg.max_abs_yaw_deg + 1e-6
    if cfg.target_yaw_step_deg:
        k = deg / cfg.target_yaw_step_deg
        ok &= np.abs(k - np.round(k)) < 1e-3
    ok[context_pos] = False
    return np.flatnonzero(ok)


def scan_store(path: str | Path, cfg: DataConfig, action_dim: int) -> list[CTViews]:
    """The done CTs of one store with their context views and target candidates."""
    corpus = open_corpus(path)
    table = corpus.ct_table()
    done = [i for i, row in enumerate(table) if row["status"] == "done"]
    if not done:
        raise StoreError(f"{corpus.path}: no CT with status 'done' ({len(table)} CTs in the store)")
    # Whole pose arrays in one read; rows of CTs that are not done hold NaN and are never used.
    rotations = np.asarray(corpus.root["rotation"][:], dtype=np.float64)
    translations = np.asarray(corpus.root["translation"][:], dtype=np.float64)
    out = []
    for i in done:
        rows = np.arange(len(corpus))[corpus.ct_rows(i)]
        rot, tra = rotations[rows], translations[rows]
        if not (np.isfinite(rot).all() and np.isfinite(tra).all()):
            raise StoreError(f"{corpus.path}: CT {table[i]['id']} is marked done but has non-finite poses")
        ctx = int(np.argmin(np.linalg.norm(rot, axis=1)))
        actions = relative_actions(rot, tra, ctx, action_dim).astype(np.float32)
        targets = target_positions(rot[:, 0] - rot[ctx, 0], ctx, cfg)
        if len(targets) < cfg.n_targets:
            raise StoreError(f"{corpus.path}: CT {table[i]['id']} has {len(targets)} views usable as targets "
                             f"(yaw step {cfg.target_yaw_step_deg}, |yaw| <= {cfg.max_abs_yaw_deg}°), "
                             f"n_targets is {cfg.n_targets}")
        out.append(CTViews(str(corpus.path), i, table[i]["id"], table[i]["source"], rows, ctx, actions, targets))
    return out


def split_cts(cts: list[CTViews], val_fraction: float, seed: int) -> tuple[list[CTViews], list[CTViews]]:
    """Seeded split by CT (never by view): (train, validation). At least one CT stays in train."""
    order = torch.randperm(len(cts), generator=torch.Generator().manual_seed(mixed_seed(seed, 7))).tolist()
    n_val = min(int(round(val_fraction * len(cts))), len(cts) - 1)
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return [cts[i] for i in train], [cts[i] for i in val]


def write_split(path: Path, train: list[CTViews], val: list[CTViews], seed: int, val_fraction: float) -> None:
    record = {"seed": seed, "val_fraction": val_fraction,
              "train": [[c.store, c.ct_id] for c in train], "val": [[c.store, c.ct_id] for c in val]}
    path.write_text(json.dumps(record, indent=1))


def read_split(path: Path) -> dict:
    return json.loads(Path(path).read_text())


class ProjectionViews(Dataset):
    """X-WIN training samples over one or more corpus stores (see module docstring).

    Index with an int (epoch 0) or a (step, epoch, index) key from `StepBatchSampler`; returns
    context (1, S, S), targets (N, 1, S, S), actions (N, action_dim), index, step."""

    def __init__(self, cts: list[CTViews], cfg: DataConfig, img_size: int, seed: int):
        if not cts:
            raise ValueError("ProjectionViews needs at least one CT")
        self.cts, self.cfg, self.img_size, self.seed = cts, cfg, img_size, int(seed)
        self._open: dict = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.cts)

    def __getstate__(self):  # never pickle open zarr handles into DataLoader workers
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def _images(self, store: str):
        if self._pid != os.getpid():  # forked: handles of the parent are not ours
            self._open, self._pid = {}, os.getpid()
        if store not in self._open:
            self._open[store] = open_corpus(store).images
        return self._open[store]

    def read(self, ct: CTViews, positions: np.ndarray) -> torch.Tensor:
        """Views `positions` (into ct.rows) as model inputs (K, 1, S, S)."""
        rows = ct.rows[positions]
        unique, inverse = np.unique(rows, return_inverse=True)
        raw = np.asarray(self._images(ct.store).oindex[unique], dtype=np.float32)[inverse]
        return to_model_input(raw, self.img_size, self.cfg.intensity)

    def __getitem__(self, key) -> dict:
        step, epoch, index = (0, 0, int(key)) if np.isscalar(key) else (int(k) for k in key)
        ct = self.cts[index]
        g = torch.Generator().manual_seed(mixed_seed(self.seed, 1, epoch, index))
        chosen = ct.targets[torch.randperm(len(ct.targets), generator=g)[:self.cfg.n_targets].numpy()]
        views = self.read(ct, np.concatenate([[ct.context], chosen]))
        return {"context": views[0], "targets": views[1:], "actions": torch.from_numpy(ct.actions[chosen]),
                "index": index, "step": step}

    def all_views(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every view of CT `index` (V, 1, S, S) and its action (V, action_dim) — for evaluation."""
        ct = self.cts[index]
        return self.read(ct, np.arange(len(ct.rows))), torch.from_numpy(ct.actions)


class StepBatchSampler:
    """Infinite batch sampler: global step s → the keys (s, epoch, index) of that step's batch.

    An epoch is a seeded permutation of the items (repeated when there are fewer items than one
    global batch); a global batch of batch_size × world_size keys is cut into per-rank slices,
    as DistributedSampler would. Starting at `start_step` resumes mid-epoch exactly."""

    def __init__(self, n_items: int, batch_size: int, seed: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1, stream: int = 0):
        self.n, self.batch_size, self.seed, self.stream = n_items, batch_size, int(seed), stream
        self.start_step, self.rank, self.world_size = start_step, rank, world_size
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = max(1, n_items // self.global_batch)

    def epoch_order(self, epoch: int) -> list[int]:
        order: list[int] = []
        k = 0
        while len(order) < self.steps_per_epoch * self.global_batch:
            g = torch.Generator().manual_seed(mixed_seed(self.seed, self.stream, epoch, k))
            order += torch.randperm(self.n, generator=g).tolist()
            k += 1
        return order

    def batch(self, step: int, order: list[int] | None = None) -> list[tuple[int, int, int]]:
        epoch, b = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch) if order is None else order
        start = b * self.global_batch + self.rank * self.batch_size
        return [(step, epoch, i) for i in order[start:start + self.batch_size]]

    def __iter__(self):
        step, cached = self.start_step, (None, None)
        while True:
            epoch = step // self.steps_per_epoch
            if cached[0] != epoch:
                cached = (epoch, self.epoch_order(epoch))
            yield self.batch(step, cached[1])
            step += 1
