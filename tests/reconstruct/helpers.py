"""Small shared builders for the reconstruction tests: circular scans, analytic balls, tiny stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import PoseSet
from drrkit.geometry.recipe import Recipe
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid


def yaw_poses(n: int, span_deg: float = 360.0, radius: float = 700.0) -> PoseSet:
    """n yaw views about the superior axis; a full circle excludes its duplicate end point."""
    if span_deg >= 360:
        yaw = np.arange(n) * 2 * np.pi / n
    else:
        yaw = np.radians(np.linspace(-span_deg / 2, span_deg / 2, n))
    return PoseSet(np.c_[yaw, np.zeros(n), np.zeros(n)], np.tile([0.0, radius, 0.0], (n, 1)))


def scan(n: int, span_deg: float = 360.0, detector: Detector | None = None) -> ConeBeamGeometry:
    detector = detector or Detector(1020.0, 68, 64, 10.0, 10.0)
    return ConeBeamGeometry.from_poses(yaw_poses(n, span_deg), detector, "AP")


def box_grid(n: int = 32, spacing=(12.0, 12.0, 10.0), centre=(0.0, 0.0, 0.0)) -> OutputGrid:
    """A RAS-aligned n³ grid whose CT centre is `centre` (world_store = world_ct - centre)."""
    sp = np.asarray(spacing, dtype=np.float64)
    affine = np.diag([*sp, 1.0])
    affine[:3, 3] = np.asarray(centre) - (n - 1) / 2 * sp
    return OutputGrid.of_ct((n, n, n), affine)


def ball_line_integrals(geometry: ConeBeamGeometry, centre, radius: float, density: float) -> np.ndarray:
    """Exact line integrals (N, H, W) in mm of a uniform ball, along every pixel's ray."""
    pix = geometry.pixel_positions()
    src = geometry.source[:, None, None, :]
    d = pix - src
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    w = np.asarray(centre) - src
    perp = w - np.sum(w * d, axis=-1, keepdims=True) * d
    return density * 2 * np.sqrt(np.clip(radius ** 2 - np.sum(perp ** 2, axis=-1), 0, None))


def tiny_recipe(views: int = 36, span: tuple = (0, 350), height: int = 34, width: int = 32,
                pixel: float = 20.0, name: str = "tiny-recon") -> Recipe:
    """A small cone-beam recipe covering drrkit's phantom box (640 × 680 mm detector)."""
    return Recipe.from_dict({
        "name": name,
        "detector": {"sdd": 1020.0, "height": height, "width": width, "delx": pixel, "dely": pixel},
        "volume": {"orientation": "AP"},
        "poses": {"sampling": "grid", "rotation": {"z": {"start": span[0], "stop": span[1], "num": views}},
                  "translation": {"y": 700.0}},
    })


def render_store(ct_dir: Path, out: Path, recipe: Recipe) -> Path:
    from drrkit.pipeline import RenderJob, render_corpus

    report = render_corpus(RenderJob(recipe=recipe, out=out, ct_dir=ct_dir, backend="fast", device="cpu"))
    assert all(r.status in ("done", "failed") for r in report.results)
    return out
