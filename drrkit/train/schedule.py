"""X-WIN's schedules as pure functions of the global step (so resuming needs only the step).

  lr        linear warm-up from start_lr to peak = base_lr × global_batch / 256 over the warm-up
            steps, then cosine from peak to final_lr at the last step (I-JEPA WarmupCosineSchedule)
  wd        cosine from weight_decay[0] to weight_decay[1] (0.004 → 0.04), decayed groups only
  momentum  EMA momentum of the target encoder, linear from ema[0] to ema[1] (0.996 → 1.0);
            `init_share` is how much of f' is still its initialisation at the end
Steps come from the config: total = optim.steps, or epochs × steps per epoch, where an epoch is
one pass over the training CTs at the global batch; warm-up keeps its share warmup_epochs/epochs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from drrkit.train.config import OptimConfig

INIT_SHARE_NOTE = 0.05  # train / evaluate say so when more of f' than this is still its initialisation


@dataclass(frozen=True)
class Schedule:
    total_steps: int
    warmup_steps: int
    steps_per_epoch: int
    global_batch: int
    peak_lr: float
    start_lr: float
    final_lr: float
    wd: tuple
    ema: tuple

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_lr + (self.peak_lr - self.start_lr) * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def weight_decay(self, step: int) -> float:
        progress = min(1.0, step / max(1, self.total_steps))
        return self.wd[1] + (self.wd[0] - self.wd[1]) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def momentum(self, step: int) -> float:
        progress = min(1.0, step / max(1, self.total_steps))
        return self.ema[0] + (self.ema[1] - self.ema[0]) * progress

    def init_share(self, steps: int | None = None) -> float:
        """Share of the target encoder that is still its initial weights after `steps` EMA updates
        (default: the whole run). With f'_{s+1} = m_s f'_s + (1 − m_s) f_s, the weight on f'_0 is
        Π m_s: about exp(−T(1 − ema[0])/2) for the linear ramp, so 0.996 → 1.0 leaves 45 % after
        400 steps, 13 % after 1,000 and nothing after the release's ~10^4. Where it is large, f'
        is partly the random-init encoder, and its features say little about what f learnt."""
        n = self.total_steps if steps is None else int(steps)
        moments = [self.momentum(s) for s in range(n)]
        if any(m <= 0.0 for m in moments):
            return 0.0
        return float(math.exp(math.fsum(math.log(m) for m in moments)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["wd"], d["ema"] = list(self.wd), list(self.ema)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        return cls(**{**d, "wd": tuple(d["wd"]), "ema": tuple(d["ema"])})


def make_schedule(cfg: OptimConfig, n_train: int, global_batch: int) -> Schedule:
    steps_per_epoch = max(1, n_train // global_batch)
    total = cfg.steps if cfg.steps is not None else max(1, int(round(cfg.epochs * steps_per_epoch)))
    warmup = int(round(total * cfg.warmup_epochs / cfg.epochs))
    peak = cfg.base_lr * global_batch / 256.0
    return Schedule(total, min(warmup, total), steps_per_epoch, global_batch, peak,
                    min(cfg.start_lr, peak), cfg.final_lr, tuple(cfg.weight_decay), tuple(cfg.ema))
