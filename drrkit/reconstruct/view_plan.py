"""What a model-based reconstruction starts from: the frontal input, the K views to predict (their
poses and actions), the detector they are taken with, the output grid, and the truth if any.

Two sources of geometry:
  a store's CT   the frontal input is the CT's view whose rotation is closest to zero (the
                 context view of training, `drrkit.train.data`), unless a radiograph file replaces
                 it; the K views are the CT's own views (all, `views` evenly spaced of them, or the
                 ones at `angles`), so the store's DRRs at the same poses are the 2D truth and the
                 source CT the 3D truth; the grid is the CT's (as `drrkit reconstruct --store`).
  a recipe       (a radiograph file with no store) the recipe's detector and poses; `angles` yaw
                 the frontal pose; the grid is a cube centred on the isocentre covering the
                 detector's field of view there (world frame: RAS+ mm, isocentre at the origin).
Actions are each view's pose relative to the frontal pose, as in training
(`drrkit.train.data.relative_actions`: yaw in radians for action_dim 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import PoseSet
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid
from drrkit.reconstruct.inputs import MIN_VIEWS, Projections, ReconstructError, load_projections
from drrkit.reconstruct.view_units import FrontalRange

ANGLE_TOLERANCE_DEG = 1e-3


@dataclass(frozen=True, eq=False)
class ViewPlan:
    frontal: np.ndarray  # (H, W) the model's input before display scaling
    frontal_range: FrontalRange
    poses: PoseSet  # the K views to predict, yaw order
    actions: np.ndarray  # (K, action_dim) relative to the frontal pose
    detector: Detector  # of the store or recipe (native resolution)
    orientation: str
    grid: OutputGrid
    true_views: np.ndarray | None  # (K, H, W) the store's DRRs at the same poses
    proj: Projections | None  # the store's CT (for the 3D truth)
    describe_input: dict
    describe_geometry: dict
    where: str  # for messages

    @property
    def yaw_deg(self) -> np.ndarray:
        """(K,) yaw of each view relative to the frontal pose, degrees."""
        return np.degrees(self.actions[:, 0])

    def geometry(self, size: int | None = None) -> ConeBeamGeometry:
        """Rays of the K views with the native detector, or with `size`×`size` pixels over the
        same detector area (the model's resolution)."""
        det = self.detector if size is None else model_detector(self.detector, size)
        return ConeBeamGeometry.from_poses(self.poses, det, self.orientation)


def model_detector(detector: Detector, size: int) -> Detector:
    """The detector of a `size`×`size` image resized from `detector`'s (bilinear, pixel centres
    aligned as torch's align_corners=False): the same physical area, pixels scaled per axis."""
    return replace(detector, height=size, width=size, delx=detector.delx * detector.width / size,
                   dely=detector.dely * detector.height / size)


def parse_angles(text: str) -> np.ndarray:
    """'-90:90:15' (start:stop:step, stop inclusive) or '-60,0,60' → degrees."""
    try:
        if ":" in text:
            start, stop, step = (float(p) for p in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            return np.arange(start, stop + step / 2, step)
        return np.array([float(p) for p in text.split(",") if p.strip()])
    except ValueError as exc:
        raise ValueError(f"--angles must be START:STOP:STEP or a comma list of degrees, got {text!r}") from exc


def select_views(yaw_deg: np.ndarray, views: int | None, angles: np.ndarray | None, where: str) -> np.ndarray:
    """Indices of the views to predict among candidates of relative yaw `yaw_deg`, in yaw order."""
    order = np.argsort(yaw_deg, kind="stable")
    if angles is not None:
        chosen = []
        for a in np.sort(angles):
            hit = np.flatnonzero(np.abs(yaw_deg - a) < ANGLE_TOLERANCE_DEG)
            if not len(hit):
                raise ReconstructError(f"{where}: no view at yaw {a:g}° (views at "
                                       f"{', '.join(f'{y:g}' for y in yaw_deg[order])}°)")
            chosen.append(int(hit[0]))
        out = np.array(chosen)
    elif views is not None:
        if not MIN_VIEWS <= views <= len(order):
            raise ReconstructError(f"{where}: --views must be within [{MIN_VIEWS}, {len(order)}], got {views}")
        out = order[np.unique(np.round(np.linspace(0, len(order) - 1, views)).astype(int))]
    else:
        out = order
    if len(out) < MIN_VIEWS:
        raise ReconstructError(f"{where}: {len(out)} views; reconstruction needs at least {MIN_VIEWS}")
    return out


def frontal_index(rotations: np.ndarray) -> int:
    """The frontal (context) view: rotation closest to zero, as in training."""
    return int(np.argmin(np.linalg.norm(rotations, axis=1)))


def read_frontal(path: Path) -> np.ndarray:
    """A radiograph file as float32 (H, W) (drrkit.train.real's PNG/JPEG/DICOM readers)."""
    from drrkit.train.real import read_radiograph

    if not Path(path).is_file():
        raise ReconstructError(f"{path}: no such radiograph file")
    return read_radiograph(path)


def radiograph_range(path: Path, scale: float | None) -> FrontalRange:
    how = (f"radiograph file: lo = 0 (air), hi = --scale {scale} mm" if scale is not None else
           "radiograph file: no line-integral scale; lo = 0 (air), hi = 1 (relative units)")
    return FrontalRange(0.0, float(scale or 1.0), scale is not None, how)


def plan_from_store(store: Path, ct: str | None, action_dim: int, intensity: str, views: int | None = None,
                    angles: np.ndarray | None = None, cxr: Path | None = None, scale: float | None = None,
                    grid_shape=None, grid_spacing: float | None = None) -> ViewPlan:
    from drrkit.reconstruct.run import output_grid
    from drrkit.store import open_corpus
    from drrkit.train.data import relative_actions
    from drrkit.train.transforms import display_range

    proj = load_projections(store, ct)
    corpus = open_corpus(store)
    poses = corpus.poses(corpus.ct_rows(proj.ct_index))
    ctx = frontal_index(poses.rotations)
    all_actions = relative_actions(poses.rotations, poses.translations, ctx, action_dim)
    yaw = np.degrees(poses.rotations[:, 0] - poses.rotations[ctx, 0])
    chosen = select_views(yaw, views, angles, proj.where)
    if cxr is not None:
        frontal, rng = read_frontal(cxr), radiograph_range(cxr, scale)
        described = {"kind": "radiograph", "path": str(cxr)}
    else:
        frontal = proj.images[ctx]
        lo, hi = (float(v) for v in display_range(frontal, intensity))
        rng = FrontalRange(lo, hi, True, f"the store's frontal DRR (view {ctx}), {intensity} range")
        described = {"kind": "store_frontal_view", "view_index": ctx, "yaw_deg": float(np.degrees(
            poses.rotations[ctx, 0]))}
    described.update({"store": str(store), "ct_id": proj.ct_id, "shape": list(frontal.shape)})
    return ViewPlan(frontal=np.asarray(frontal, dtype=np.float32), frontal_range=rng, poses=poses[chosen],
                    actions=all_actions[chosen].astype(np.float32), detector=corpus.detector,
                    orientation=corpus.attrs["volume"]["orientation"],
                    grid=output_grid(proj.ct_grid, grid_shape, grid_spacing), true_views=proj.images[chosen],
                    proj=proj, describe_input=described,
                    describe_geometry={"source": "store", "store": str(store), "ct_id": proj.ct_id,
                                       "views_in_store": len(poses)},
                    where=proj.where)


def plan_from_recipe(cxr: Path, recipe, recipe_source: str, action_dim: int, img_size: int,
                     views: int | None = None, angles: np.ndarray | None = None, scale: float | None = None,
                     grid_shape=None, grid_spacing: float | None = None) -> ViewPlan:
    from drrkit.train.data import relative_actions

    frontal = read_frontal(cxr)
    where = f"{cxr} with recipe {recipe.name}"
    candidates = recipe.sample_poses(Path(cxr).stem)
    ctx = frontal_index(candidates.rotations)
    if angles is not None:  # yaw the frontal pose (X-WIN's actions)
        rot = np.repeat(candidates.rotations[ctx:ctx + 1], len(angles), axis=0)
        rot[:, 0] += np.radians(np.sort(angles))
        poses = PoseSet(rot, np.repeat(candidates.translations[ctx:ctx + 1], len(angles), axis=0))
        if len(poses) < MIN_VIEWS:
            raise ReconstructError(f"{where}: {len(poses)} angles; reconstruction needs at least {MIN_VIEWS}")
    else:
        yaw = np.degrees(candidates.rotations[:, 0] - candidates.rotations[ctx, 0])
        poses = candidates[select_views(yaw, views, None, where)]
    rot = np.concatenate([candidates.rotations[ctx:ctx + 1], poses.rotations])
    tra = np.concatenate([candidates.translations[ctx:ctx + 1], poses.translations])
    actions = relative_actions(rot, tra, 0, action_dim)[1:]
    detector, orientation = recipe.detector, recipe.volume.orientation
    grid = isocentre_grid(ConeBeamGeometry.from_poses(poses, detector, orientation), img_size,
                          grid_shape, grid_spacing)
    return ViewPlan(frontal=frontal, frontal_range=radiograph_range(cxr, scale), poses=poses,
                    actions=actions.astype(np.float32), detector=detector, orientation=orientation, grid=grid,
                    true_views=None, proj=None,
                    describe_input={"kind": "radiograph", "path": str(cxr), "shape": list(frontal.shape)},
                    describe_geometry={"source": "recipe", "recipe": recipe.name, "recipe_from": recipe_source,
                                       "grid_frame": "RAS+ mm, isocentre at the origin (no CT)"},
                    where=where)


def isocentre_grid(geometry: ConeBeamGeometry, img_size: int, shape=None, spacing: float | None = None) -> OutputGrid:
    """A RAS-aligned grid centred on the isocentre (world origin) covering the detector's field
    of view there: side = the detector's smaller extent × R/D. Default: img_size³ voxels."""
    radius = float(np.median(-np.einsum("ni,ni->n", geometry.normal, geometry.source)))
    extent = min(geometry.height * np.linalg.norm(geometry.row_step[0]),
                 geometry.width * np.linalg.norm(geometry.col_step[0]))
    side = extent * radius / float(np.median(geometry.sdd))
    if spacing is None:
        spacing = side / (max(shape) if shape is not None else img_size)
    if spacing <= 0:
        raise ValueError(f"grid spacing must be positive, got {spacing}")
    if shape is None:
        shape = (max(1, int(round(side / spacing))),) * 3
    shape = tuple(int(s) for s in np.broadcast_to(shape, 3))
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2 * spacing
    return OutputGrid(shape, affine, np.zeros(3))
