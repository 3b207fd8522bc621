"""Training configuration of the X-WIN trainer: frozen dataclasses loaded from YAML.

A config file (recipes/train-xwin-*.yaml) has the sections below; unknown keys are an error and
the resolved config (every default filled in) is written to the run folder and into every
checkpoint. `load_train_config("train-xwin-tiny")` reads recipes/train-xwin-tiny.yaml; a path
works too. Loss weights of 0 switch a loss (and the forward passes only it needs) off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from drrkit.config import ConfigError, build, load_yaml, to_dict

# size → (embed_dim, depth, num_heads, timm model name); 'tiny' is a 4-block ViT-Ti for CPU tests.
VIT_SIZES = {
    "tiny": (192, 4, 3, "vit_tiny_patch16_224"),
    "small": (384, 12, 6, "vit_small_patch16_224"),
    "base": (768, 12, 12, "vit_base_patch16_224"),
}
INTENSITY_TRANSFORMS = ("minmax", "robust")
MIM_VIEWS = ("context", "all")
AFFINITY_SCOPES = ("batch", "volume")  # the views over which an affinity soft label spreads


def _pair(obj, name: str, low: float | None = None, high: float | None = None) -> None:
    value = tuple(float(v) for v in getattr(obj, name))
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)}")
    if (low is not None and value[0] < low) or (high is not None and value[1] > high):
        raise ValueError(f"{name} must lie within [{low}, {high}], got {list(value)}")
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class ModelConfig:
    """Context encoder f (timm ViT, no CLS token, fixed sin-cos positions) and the heads."""

    size: str = "small"  # tiny | small | base
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 1
    depth: int | None = None  # override the size's encoder depth
    predictor_width: int | None = None  # g_v and g_m width; default embed_dim // 2 (768 → 384)
    view_predictor_depth: int = 3
    masked_predictor_depth: int = 6
    decoder_width: int | None = None  # latent→image decoder; default embed_dim // 2
    decoder_depth: int = 2
    classifier_hidden: int = 256
    action_dim: int = 1  # 1: yaw; 3: ZXY rotation; 6: rotation + translation (mm / 100)
    # The encoders see (x - input_mean) / input_std of the [0, 1] display image (torchvision's
    # Normalize, as the I-JEPA code X-WIN builds on); 0 / 1 leaves the image as it is.
    input_mean: float = 0.0
    input_std: float = 1.0

    def __post_init__(self):
        if not self.input_std > 0:
            raise ValueError(f"input_std must be > 0, got {self.input_std}")
        if self.size not in VIT_SIZES:
            raise ValueError(f"size must be one of {sorted(VIT_SIZES)}, got {self.size!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.action_dim not in (1, 3, 6):
            raise ValueError(f"action_dim must be 1, 3 or 6, got {self.action_dim}")
        for name in ("view_predictor_depth", "masked_predictor_depth", "decoder_depth", "in_chans"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def embed_dim(self) -> int:
        return VIT_SIZES[self.size][0]

    @property
    def encoder_depth(self) -> int:
        return self.depth or VIT_SIZES[self.size][1]

    @property
    def num_heads(self) -> int:
        return VIT_SIZES[self.size][2]

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class DataConfig:
    """One sample = one CT: its frontal context view + n_targets other views and their actions."""

    n_targets: int = 5
    batch_size: int = 24  # contexts per process (per GPU)
    real_batch_size: int = 24  # real radiographs per process per step (when --real-dir is given)
    val_fraction: float = 0.05  # CTs held out (by CT, seeded) for evaluation
    intensity: str = "minmax"  # per-image min-max to [0, 1] (X-WIN) | robust (0.5-99.5 pct clip)
    target_yaw_step_deg: float | None = None  # only targets whose relative yaw is a multiple of this
    max_abs_yaw_deg: float = 90.0
    num_workers: int = 4

    def __post_init__(self):
        if self.n_targets < 1 or self.batch_size < 1 or self.real_batch_size < 1:
            raise ValueError("n_targets, batch_size and real_batch_size must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.intensity not in INTENSITY_TRANSFORMS:
            raise ValueError(f"intensity must be one of {INTENSITY_TRANSFORMS}, got {self.intensity!r}")
        if self.num_workers < 0:
            raise ValueError("num_workers must be >= 0")


@dataclass(frozen=True)
class MaskConfig:
    """I-JEPA multiblock masks for the masked predictor g_m (one context block, npred targets)."""

    npred: int = 4
    pred_scale: tuple = (0.15, 0.2)
    pred_aspect: tuple = (0.75, 1.0)
    enc_scale: tuple = (0.85, 1.0)
    min_keep: int = 4
    allow_overlap: bool = False

    def __post_init__(self):
        _pair(self, "pred_scale", 0.0, 1.0)
        _pair(self, "enc_scale", 0.0, 1.0)
        _pair(self, "pred_aspect", 0.0, None)
        if self.npred < 1 or self.min_keep < 1:
            raise ValueError("npred and min_keep must be >= 1")


@dataclass(frozen=True)
class LossConfig:
    """Weights (0 = off, not computed) and temperatures of the X-WIN losses."""

    align: float = 1.0  # InfoNCE between predicted view embeddings z and target embeddings t
    tau: float = 0.1
    affinity: float = 1.0  # weight of the affinity soft-label term inside L_align
    affinity_tau: float = 0.1  # τ̃ of A_ij = softmax_j(sim(t_i, t_j) / τ̃)
    affinity_scope: str = "batch"  # j over every target view of the batch | volume: over i's own CT's views
    mim: float = 1.0
    mim_views: str = "context"  # simulated images of L_MIM: the frontal context | all (+ every target view)
    domain: float = 0.1
    cls: float = 0.1
    decoder: float = 1.0  # latent→image head, MSE on target views, stop-gradient into the encoders

    def __post_init__(self):
        for name in ("align", "affinity", "mim", "domain", "cls", "decoder"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0")
        if self.mim_views not in MIM_VIEWS:
            raise ValueError(f"mim_views must be one of {MIM_VIEWS}, got {self.mim_views!r}")
        if self.affinity_scope not in AFFINITY_SCOPES:
            raise ValueError(f"affinity_scope must be one of {AFFINITY_SCOPES}, got {self.affinity_scope!r}")
        if self.tau <= 0 or self.affinity_tau <= 0:
            raise ValueError("tau and affinity_tau must be > 0")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW; lr = base_lr × global_batch / 256; warm-up from start_lr, cosine to final_lr."""

    base_lr: float = 1.0e-4
    start_lr: float = 2.0e-5
    final_lr: float = 1.0e-6
    epochs: float = 100.0
    warmup_epochs: float = 10.0
    steps: int | None = None  # total steps; overrides epochs (warm-up keeps its share of training)
    weight_decay: tuple = (0.004, 0.04)  # cosine from first to second
    ema: tuple = (0.996, 1.0)  # target-encoder momentum, linear over training
    grad_clip: float = 1.0  # max global grad norm; 0 = off
    betas: tuple = (0.9, 0.999)

    def __post_init__(self):
        _pair(self, "ema", 0.0, 1.0)
        for name in ("weight_decay", "betas"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2:
                raise ValueError(f"{name} must have two values")
            object.__setattr__(self, name, value)
        if self.base_lr <= 0 or self.epochs <= 0 or self.warmup_epochs < 0:
            raise ValueError("base_lr and epochs must be > 0, warmup_epochs >= 0")
        if self.steps is not None and self.steps < 1:
            raise ValueError("steps must be >= 1")


@dataclass(frozen=True)
class RunConfig:
    device: str = "auto"  # auto | cpu | cuda[:N]
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2  # step-*.pt files kept besides last.pt
    log_every: int = 1

    def __post_init__(self):
        if self.checkpoint_every < 1 or self.log_every < 1 or self.keep_checkpoints < 0:
            raise ValueError("checkpoint_every and log_every must be >= 1, keep_checkpoints >= 0")


@dataclass(frozen=True)
class TrainConfig:
    name: str
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "train config") -> "TrainConfig":
        return build(cls, data, where)

    def with_overrides(self, steps: int | None = None, device: str | None = None) -> "TrainConfig":
        cfg = self
        if steps is not None:
            cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, steps=steps))
        if device is not None:
            cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, device=device))
        return cfg


def load_train_config(name_or_path: str | Path) -> TrainConfig:
    """A training config by path, or by name from the recipes folder (train-xwin-tiny)."""
    from drrkit.geometry.recipe import recipes_dir

    path = Path(name_or_path)
    if not path.is_file():
        candidate = recipes_dir() / f"{name_or_path}.yaml"
        if not candidate.is_file():
            names = sorted(p.stem for p in recipes_dir().glob("train-*.yaml"))
            raise ConfigError(f"no training config file {name_or_path!s} and no config named "
                              f"{name_or_path!r} in {recipes_dir()} (available: {names})")
        path = candidate
    return TrainConfig.from_dict(load_yaml(path), where=f"train config {path}")
