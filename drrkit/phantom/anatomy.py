"""Per-case anatomy of the synthetic chest phantom: parameters, seeded sampling, point-wise masks.

World frame: RAS+ millimetres with the field of view centred on the origin:
x + = patient right (RAS: +x is the patient's Right), y + = anterior, z + = superior.  Every structure is an analytic shape, so the
same mask functions voxelise the volume (chest.py) and answer "what label is at this point"
(`label_at`), which is how the nodule is guaranteed to sit wholly inside lung tissue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import numpy as np

LABELS: dict[str, int] = {
    "background": 0,  # air outside the body
    "body": 1,  # soft tissue, muscle, subcutaneous fat (everything in the body not listed below)
    "left_lung": 2,  # patient left, x < 0
    "right_lung": 3,  # patient right, x > 0
    "heart": 4,
    "spine": 5,  # vertebral body (cortical shell + cancellous core) and posterior element
    "ribs": 6,  # rib bands and the sternum
    "nodule": 7,
}

HU: dict[str, float] = {  # lungs: per case, PhantomSpec.lung_hu in [-870, -830]
    "air": -1000.0, "fat": -100.0, "soft_tissue": 40.0, "heart": 40.0, "cancellous": 300.0,
    "cortical": 1000.0, "rib": 700.0, "sternum": 700.0, "nodule": 50.0,
}

FOV_MM: tuple[float, float, float] = (384.0, 384.0, 320.0)  # default field of view; specs fit inside
NODULE_RADIUS_MM = (4.0, 10.0)
NODULE_MARGIN_MM = 10.0  # lung tissue guaranteed around the nodule (>= a 64^3 voxel diagonal)

Vec2 = tuple[float, float]
Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class PhantomSpec:
    """All per-case random parameters (mm, HU, degrees) of one synthetic chest.

    Body and rib cage are concentric elliptic cylinders along z centred at (0, body_center_y).
    `body_axes` are the skin (outer) semi-axes; the fat layer is the band between the skin
    ellipse and the ellipse with both semi-axes reduced by `fat_mm`.  Ribs lie in the elliptic
    annulus between `rib_axes` and `rib_axes + rib_thickness_mm`, rib k centred at
    z = rib_top_z_mm - k * rib_spacing_mm - rib_tilt_mm * (y - body_center_y) / rib_axes[1]
    (anterior ends lower).  The nodule fields always hold a sampled candidate location; it is
    only rendered when `nodule_present` (so a case can be re-rendered with/without it).
    """

    body_center_y: float
    body_axes: Vec2
    fat_mm: float
    rib_axes: Vec2
    rib_thickness_mm: float
    rib_height_mm: float
    rib_count: int
    rib_spacing_mm: float
    rib_top_z_mm: float
    rib_tilt_mm: float
    rib_anterior_gap_mm: float
    lung_hu: float
    left_lung_center: Vec3
    left_lung_axes: Vec3
    right_lung_center: Vec3
    right_lung_axes: Vec3
    heart_center: Vec3
    heart_axes: Vec3
    heart_angle_deg: float  # rotation of the heart's x semi-axis towards +y; negative = apex left-anterior
    spine_center_y: float
    spine_axes: Vec2  # vertebral body (elliptic cylinder at x = 0)
    spine_cortex_mm: float
    spine_process_half_width_mm: float
    spine_process_end_y: float  # posterior end of the posterior element (box behind the body)
    sternum_half_width_mm: float
    sternum_thickness_mm: float
    sternum_z_range: Vec2  # (bottom, top)
    nodule_present: bool
    nodule_lung: str  # "left" | "right"
    nodule_center: Vec3
    nodule_radius_mm: float
    noise_seed: int


class Part(NamedTuple):
    """One painted region: label and HU written where `mask(x, y, z)` holds, inside [lo, hi]."""

    name: str
    label: int
    hu: float
    lo: Vec3
    hi: Vec3
    mask: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _ell2(x, y, cx, cy, a, b):
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2


def _ellipsoid_part(name, label, hu, c, ax) -> Part:
    def mask(x, y, z):
        return _ell2(x, y, c[0], c[1], ax[0], ax[1]) + ((z - c[2]) / ax[2]) ** 2 <= 1.0

    lo = tuple(ci - ai for ci, ai in zip(c, ax))
    hi = tuple(ci + ai for ci, ai in zip(c, ax))
    return Part(name, label, hu, lo, hi, mask)


def _body_parts(s: PhantomSpec) -> list[Part]:
    (a, b), y0, f, inf = s.body_axes, s.body_center_y, s.fat_mm, math.inf
    lo, hi = (-a, y0 - b, -inf), (a, y0 + b, inf)
    fat = Part("fat", LABELS["body"], HU["fat"], lo, hi, lambda x, y, z: _ell2(x, y, 0.0, y0, a, b) <= 1.0)
    soft = Part("soft_tissue", LABELS["body"], HU["soft_tissue"], lo, hi,
                lambda x, y, z: _ell2(x, y, 0.0, y0, a - f, b - f) <= 1.0)
    return [fat, soft]


def _heart_part(s: PhantomSpec) -> Part:
    (cx, cy, cz), (a, b, c) = s.heart_center, s.heart_axes
    th = math.radians(s.heart_angle_deg)
    ct, st = math.cos(th), math.sin(th)

    def mask(x, y, z):
        dx, dy = x - cx, y - cy
        u, v = dx * ct + dy * st, dy * ct - dx * st
        return (u / a) ** 2 + (v / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0

    wx, wy = math.hypot(a * ct, b * st), math.hypot(a * st, b * ct)
    return Part("heart", LABELS["heart"], HU["heart"], (cx - wx, cy - wy, cz - c), (cx + wx, cy + wy, cz + c), mask)


def _spine_parts(s: PhantomSpec) -> list[Part]:
    (rx, ry), ys, cort, inf = s.spine_axes, s.spine_center_y, s.spine_cortex_mm, math.inf
    hw, yend = s.spine_process_half_width_mm, s.spine_process_end_y

    def outer(x, y, z):
        process = (np.abs(x) <= hw) & (y >= yend) & (y <= ys)
        return (_ell2(x, y, 0.0, ys, rx, ry) <= 1.0) | process

    def core(x, y, z):
        return _ell2(x, y, 0.0, ys, rx - cort, ry - cort) <= 1.0

    lo, hi = (-max(rx, hw), yend, -inf), (max(rx, hw), ys + ry, inf)
    return [Part("spine_cortex", LABELS["spine"], HU["cortical"], lo, hi, outer),
            Part("spine_cancellous", LABELS["spine"], HU["cancellous"], lo, hi, core)]


def _rib_part(s: PhantomSpec) -> Part:
    (ra, rb), t, y0 = s.rib_axes, s.rib_thickness_mm, s.body_center_y
    sp, half_h, top, tilt, n = s.rib_spacing_mm, s.rib_height_mm / 2, s.rib_top_z_mm, s.rib_tilt_mm, s.rib_count
    post_gap = s.spine_axes[0] + 2.0

    def mask(x, y, z):
        ring = (_ell2(x, y, 0.0, y0, ra, rb) >= 1.0) & (_ell2(x, y, 0.0, y0, ra + t, rb + t) <= 1.0)
        ring &= ~((np.abs(x) < s.rib_anterior_gap_mm) & (y > y0)) & ~((np.abs(x) < post_gap) & (y < y0))
        u = (top - (z + tilt * (y - y0) / rb)) / sp  # rib index coordinate along z
        k = np.rint(u)
        band = (np.abs(u - k) * sp <= half_h) & (k >= 0) & (k < n)
        return ring & band

    zlo, zhi = top - (n - 1) * sp - tilt * (1 + t / rb) - half_h, top + tilt * (1 + t / rb) + half_h
    return Part("ribs", LABELS["ribs"], HU["rib"], (-ra - t, y0 - rb - t, zlo), (ra + t, y0 + rb + t, zhi), mask)


def _sternum_part(s: PhantomSpec) -> Part:
    hw, y1 = s.sternum_half_width_mm, s.body_center_y + s.rib_axes[1]
    lo = (-hw, y1, s.sternum_z_range[0])
    hi = (hw, y1 + s.sternum_thickness_mm, s.sternum_z_range[1])

    def mask(x, y, z):
        return (np.abs(x) <= hw) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])

    return Part("sternum", LABELS["ribs"], HU["sternum"], lo, hi, mask)


def parts(spec: PhantomSpec) -> list[Part]:
    """The structures of `spec` in paint order (later parts overwrite earlier ones)."""
    out = _body_parts(spec)
    out.append(_ellipsoid_part("right_lung", LABELS["right_lung"], spec.lung_hu,
                               spec.right_lung_center, spec.right_lung_axes))
    out.append(_ellipsoid_part("left_lung", LABELS["left_lung"], spec.lung_hu,
                               spec.left_lung_center, spec.left_lung_axes))
    out += [_heart_part(spec), *_spine_parts(spec), _rib_part(spec), _sternum_part(spec)]
    if spec.nodule_present:
        r = spec.nodule_radius_mm
        out.append(_ellipsoid_part("nodule", LABELS["nodule"], HU["nodule"], spec.nodule_center, (r, r, r)))
    return out


def label_at(spec: PhantomSpec, x, y, z) -> np.ndarray:
    """Label of the continuous phantom at world points (broadcastable arrays, mm)."""
    x, y, z = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, y, z)))
    lab = np.zeros(x.shape, dtype=np.uint8)
    for p in parts(spec):
        lab = np.where(p.mask(x, y, z), np.uint8(p.label), lab)
    return lab



# ---------------------------------------------------------------- sampling


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _sample_lungs(rng: np.random.Generator) -> dict:
    gap, cy, cz = _u(rng, 10, 22), _u(rng, -20, 0), _u(rng, 5, 25)
    d = {"lung_hu": _u(rng, -870, -830)}
    for side, sign in (("left", -1.0), ("right", 1.0)):  # RAS: patient left is x < 0
        ax = (_u(rng, 40, 55), _u(rng, 62, 80), _u(rng, 85, 115))
        d[f"{side}_lung_axes"] = ax
        d[f"{side}_lung_center"] = (sign * (ax[0] + gap / 2), cy + _u(rng, -5, 5), cz + _u(rng, -8, 8))
    return d


def _sample_cage(rng: np.random.Generator, d: dict) -> dict:
    """Rib cage ellipse: the smallest one of the lungs' aspect that holds both lungs, plus a gap."""
    lungs = [(d[f"{s}_lung_center"], d[f"{s}_lung_axes"]) for s in ("left", "right")]
    half_w = max(abs(c[0]) + a[0] for c, a in lungs)
    ylo, yhi = min(c[1] - a[1] for c, a in lungs), max(c[1] + a[1] for c, a in lungs)
    y0, half_h = (ylo + yhi) / 2, (yhi - ylo) / 2
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    scale = max(np.sqrt(_ell2(c[0] + a[0] * np.cos(t), c[1] + a[1] * np.sin(t), 0.0, y0, half_w, half_h)).max()
                for c, a in lungs)
    g = _u(rng, 3, 8)
    rib_t, muscle_x, muscle_y, fat = _u(rng, 6, 9), _u(rng, 8, 20), _u(rng, 12, 28), _u(rng, 5, 20)
    ra, rb = float(scale * half_w + g), float(scale * half_h + g)
    # keep the skin >= 8 mm inside the default field of view by thinning muscle and fat if needed
    room_x, room_y = FOV_MM[0] / 2 - 8 - ra - rib_t, FOV_MM[1] / 2 - 8 - abs(y0) - rb - rib_t
    shrink = min(1.0, room_x / (muscle_x + fat), room_y / (muscle_y + fat))
    muscle_x, muscle_y, fat = muscle_x * shrink, muscle_y * shrink, fat * shrink
    return {"body_center_y": float(y0), "rib_axes": (ra, rb), "rib_thickness_mm": rib_t, "fat_mm": fat,
            "body_axes": (ra + rib_t + muscle_x + fat, rb + rib_t + muscle_y + fat)}


def _sample_spine_sternum(rng: np.random.Generator, d: dict) -> dict:
    y0, (ra, rb), rib_t = d["body_center_y"], d["rib_axes"], d["rib_thickness_mm"]
    axes = (_u(rng, 16, 22), _u(rng, 13, 18))
    inner_back = y0 - (d["body_axes"][1] - d["fat_mm"])
    return {"spine_axes": axes, "spine_center_y": y0 - rb + axes[1] + _u(rng, 8, 16),
            "spine_cortex_mm": _u(rng, 2, 4), "spine_process_half_width_mm": _u(rng, 6, 10),
            "spine_process_end_y": inner_back + _u(rng, 4, 8),
            "sternum_half_width_mm": _u(rng, 12, 18), "sternum_thickness_mm": _u(rng, 10, 15)}


def _sample_ribs(rng: np.random.Generator, d: dict) -> dict:
    zmax = FOV_MM[2] / 2 - 2
    lung_top = max(d[f"{s}_lung_center"][2] + d[f"{s}_lung_axes"][2] for s in ("left", "right"))
    sp, h, tilt = _u(rng, 22, 30), _u(rng, 8, 12), _u(rng, 10, 30)
    reach = tilt * (1 + d["rib_thickness_mm"] / d["rib_axes"][1]) + h / 2
    top = min(lung_top - _u(rng, 0, 15), zmax - reach)
    n = min(int(rng.integers(9, 13)), int((top - reach + zmax) // sp) + 1)
    st_top = top - _u(rng, 5, 20)
    return {"rib_spacing_mm": sp, "rib_height_mm": h, "rib_tilt_mm": tilt, "rib_top_z_mm": top,
            "rib_count": n, "rib_anterior_gap_mm": _u(rng, 20, 35),
            "sternum_z_range": (max(st_top - _u(rng, 140, 180), -zmax), st_top)}


def _heart_fits(d: dict, c: Vec3, ax: Vec3, th: float, margin: float = 5.0) -> bool:
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    u, v = ax[0] * np.cos(t), ax[1] * np.sin(t)
    x, y = c[0] + u * math.cos(th) - v * math.sin(th), c[1] + u * math.sin(th) + v * math.cos(th)
    (ra, rb), (sx, sy) = d["rib_axes"], d["spine_axes"]
    in_cage = _ell2(x, y, 0.0, d["body_center_y"], ra - margin, rb - margin) <= 1.0
    off_spine = _ell2(x, y, 0.0, d["spine_center_y"], sx + margin, sy + margin) > 1.0
    return bool(in_cage.all() and off_spine.all() and c[2] - ax[2] >= -FOV_MM[2] / 2 + margin)


def _sample_heart(rng: np.random.Generator, d: dict) -> dict:
    cz = (d["left_lung_center"][2] + d["right_lung_center"][2]) / 2 - _u(rng, 20, 45)
    c = (-_u(rng, 10, 30), d["body_center_y"] + _u(rng, 8, 25), cz)
    ax = np.array([_u(rng, 50, 65), _u(rng, 36, 46), _u(rng, 42, 55)])
    angle = -_u(rng, 20, 45)  # long axis towards the left-anterior apex (-x, +y)
    for _ in range(60):  # shrink until it sits inside the rib cage and clear of the spine
        if _heart_fits(d, c, tuple(ax), math.radians(angle)):
            return {"heart_center": c, "heart_axes": tuple(float(a) for a in ax), "heart_angle_deg": angle}
        ax *= 0.95
    raise RuntimeError("could not fit the heart inside the rib cage")


def _sphere_points(c: np.ndarray, r: float, n: int = 256) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5**0.5) * i
    pts = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)
    return np.vstack([c, c + r * pts])


def _sample_nodule(rng: np.random.Generator, spec: PhantomSpec) -> dict:
    """A sphere whose NODULE_MARGIN_MM-enlarged ball is entirely lung of the chosen side."""
    for _ in range(2000):
        side = "left" if rng.random() < 0.5 else "right"
        r = _u(rng, *NODULE_RADIUS_MM)
        c0, ax = np.array(getattr(spec, f"{side}_lung_center")), np.array(getattr(spec, f"{side}_lung_axes"))
        d = rng.normal(size=3)
        p = c0 + ax * d / np.linalg.norm(d) * rng.random() ** (1 / 3)
        pts = _sphere_points(p, r + NODULE_MARGIN_MM)
        if (label_at(spec, pts[:, 0], pts[:, 1], pts[:, 2]) == LABELS[f"{side}_lung"]).all():
            return {"nodule_lung": side, "nodule_center": tuple(float(v) for v in p), "nodule_radius_mm": r}
    raise RuntimeError("could not place a nodule inside the lungs")


def sample_spec(rng: np.random.Generator, nodule_prob: float = 0.5) -> PhantomSpec:
    """Draw one case.  Anatomy is drawn first and the nodule last, so the anatomy does not depend
    on `nodule_prob`, and raising `nodule_prob` only turns nodules on (same location/radius)."""
    d = _sample_lungs(rng)
    d.update(_sample_cage(rng, d))
    d.update(_sample_spine_sternum(rng, d))
    d.update(_sample_ribs(rng, d))
    d.update(_sample_heart(rng, d))
    d["noise_seed"] = int(rng.integers(2**62))
    spec = PhantomSpec(**d, nodule_present=False, nodule_lung="left",
                       nodule_center=(math.nan,) * 3, nodule_radius_mm=math.nan)
    present = bool(rng.random() < nodule_prob)
    return replace(spec, nodule_present=present, **_sample_nodule(rng, spec))
