"""The fused Triton kernel (render/triton_march.py) of the fast backend's CUDA engine.

Without a GPU it is checked two ways: compiled to PTX for an H100 (sm_90) with the installed
Triton, so a kernel that would not build fails here; and run by Triton's interpreter
(TRITON_INTERPRET=1, CPU tensors, in a subprocess because the flag is read at import) against
DiffDRR and the torch engine. On CUDA the `gpu` tests run the real thing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.render.test_fast_backend import CASES, assert_parity, bundled_128, poses_mixed  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_kernel_compiles_for_hopper(kind):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from drrkit.render.triton_march import _joseph_kernel

    sig = {}
    for name in _joseph_kernel.arg_names:
        if name.endswith("_ptr"):
            sig[name] = "*fp16" if name.startswith("vol") else "*fp32"
        else:
            sig[name] = "constexpr" if name in ("KIND", "TH", "TW") else "i32"
    src = ASTSource(fn=_joseph_kernel, signature=sig, constexprs={"KIND": kind, "TH": 8, "TW": 32})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert "ld.global" in compiled.asm["ptx"]


INTERPRETED = r"""
import json, sys
import numpy as np
from tests.render.test_fast_backend import CASES, poses_mixed, parity
from drrkit.render.base import render_all
from drrkit.render.diffdrr_backend import DiffDRRBackend
from drrkit.render.fast_backend import FastBackend
out = {}
for case in sys.argv[1:]:
    ct, det, vol = CASES[case]
    poses = poses_mixed()
    ref = render_all(DiffDRRBackend(det, vol), ct, poses)
    for method in ("auto", "nearest"):
        fast = FastBackend(det, vol, method=method, engine="triton")
        img = render_all(fast, ct, poses)
        torch_img = render_all(FastBackend(det, vol, method=method, engine="torch"), ct, poses)
        corr, err = parity(img, ref)
        out[f"{case}/{method}"] = {"corr": float(corr.min()), "err": float(err.max()),
                                   "engine": fast.describe()["engine"], "shape": list(img.shape),
                                   "vs_torch": float(np.abs(img - torch_img).max() / np.abs(torch_img).max())}
# NIfTI volumes arrive in Fortran order: the kernel must see the same voxels
from drrkit.ct import CTVolume
ct, det, vol = CASES[sys.argv[1]]
f_ct = CTVolume(np.asfortranarray(ct.hu), ct.affine, ct.id, ct.source)
fast = FastBackend(det, vol, engine="triton")
out["fortran_vs_c"] = float(np.abs(render_all(fast, f_ct, poses_mixed()) - render_all(fast, ct, poses_mixed())).max())
print(json.dumps(out))
"""


@pytest.mark.slow
def test_interpreted_kernel_matches_diffdrr():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    cases = ["anisotropic-oblique", "noreverse-PA-bone"]
    proc = subprocess.run([sys.executable, "-c", INTERPRETED, *cases], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for case in cases:
        exact, nearest = result[f"{case}/auto"], result[f"{case}/nearest"]
        assert exact["engine"] == "triton" and exact["shape"][0] == len(poses_mixed())
        # tiny volumes: `auto` is the exact kernel, Siddon to within float rounding
        assert exact["corr"] > 0.99999 and exact["err"] < 1e-4, exact
        # `nearest` is plain Joseph: coarse on 16-24 slices, but the same sum as the torch engine
        # (float32 vs float64 coordinates can pick the other voxel of a pixel exactly on a boundary)
        assert nearest["vs_torch"] < 2e-3 and nearest["corr"] > 0.95, nearest
    assert result["fortran_vs_c"] == 0.0


def test_engine_choice_is_explicit():
    from drrkit.render.fast_backend import FastBackend

    ct, det, vol = CASES["even"]
    assert FastBackend(det, vol).engine_for("cpu") == "torch"
    assert FastBackend(det, vol, step_mm=2.0).describe()["engine"] == "torch"
    with pytest.raises(ValueError, match="step_mm"):
        FastBackend(det, vol, step_mm=2.0, engine="triton")
    with pytest.raises(ValueError, match="engine"):
        FastBackend(det, vol, engine="cuda")
    from drrkit.render import triton_march

    if not triton_march.INTERPRET:
        with pytest.raises(ValueError, match="needs a CUDA device"):
            FastBackend(det, vol, engine="triton").engine_for("cpu")


def test_layouts_keep_values_and_put_detector_columns_contiguous():
    import torch

    from drrkit.render.triton_march import layouts

    vol = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(4, 5, 6)
    # an AP-like view: camera x along voxel axis 0, rays along axis 1
    mats = torch.zeros(1, 3, 4)
    mats[0, 0, 0], mats[0, 2, 1], mats[0, 1, 2] = 1.0, 1.0, 1.0
    out = layouts(vol, mats)
    for axis, copy in out.items():
        assert torch.equal(copy, vol)
    assert out[1].stride(0) == 1  # marching along 1: columns (axis 0) contiguous
    assert out[2].stride(0) == 1
    assert out[0].stride(2) == 1 or out[0].stride(1) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["auto", "box", "nearest"])
@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_cuda_kernel_matches_diffdrr_on_the_bundled_ct(bundled_128, method, precision):
    from drrkit.render import render_all
    from drrkit.render.fast_backend import FastBackend

    ct, recipe, poses, ref = bundled_128
    fast = FastBackend(recipe.detector, recipe.volume, device="cuda", method=method, precision=precision)
    assert fast.describe()["engine"] == "triton"
    assert_parity(render_all(fast, ct, poses), ref)


@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(CASES))
def test_cuda_kernel_matches_diffdrr_on_tiny_volumes(case):
    from drrkit.render import render_all
    from drrkit.render.diffdrr_backend import DiffDRRBackend
    from drrkit.render.fast_backend import FastBackend

    ct, det, vol = CASES[case]
    poses = poses_mixed()
    ref = render_all(DiffDRRBackend(det, vol), ct, poses)
    img = render_all(FastBackend(det, vol, device="cuda"), ct, poses)
    assert_parity(img, ref, corr_min=0.99999, err_max=1e-4)
    torch_img = render_all(FastBackend(det, vol, device="cuda", engine="torch", method="box"), ct, poses)
    assert_parity(torch_img, ref)
    assert np.isfinite(img).all()
