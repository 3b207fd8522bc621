"""`drrkit reconstruct` end to end on tiny DiffDRR-rendered stores: outputs, overlay, errors."""

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from drrkit.phantom import write_cohort
from drrkit.reconstruct.inputs import ReconstructError, load_projections
from drrkit.reconstruct.run import ReconstructJob, reconstruct_store
from tests.reconstruct.helpers import render_store, tiny_recipe

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["reconstruct", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def phantom_store(tmp_path_factory):
    """A 24³ drrkit phantom, 36 full-circle views of 34×32 pixels (20 mm)."""
    root = tmp_path_factory.mktemp("recon-store")
    write_cohort(root / "cts", 1, shape=24, seed=3)
    return render_store(root / "cts", root / "full.zarr", tiny_recipe())


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory, phantom_store):
    """Two CTs, one of them unreadable (status failed)."""
    root = tmp_path_factory.mktemp("mixed")
    cts = root / "cts"
    write_cohort(cts, 1, shape=16, seed=4, prefix="good")
    (cts / "broken.nii.gz").write_bytes(b"not a nifti file")
    return render_store(cts, root / "mixed.zarr", tiny_recipe(views=6))


def test_cli_fdk_writes_volume_report_and_figure(phantom_store, tmp_path):
    out, report = tmp_path / "vol.nii.gz", tmp_path / "r.json"
    result = run("--store", phantom_store, "--out", out, "--truth", "--report", report, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output and (tmp_path / "vol.png").is_file()
    rep = json.loads(report.read_text())
    assert rep["method"] == "fdk" and rep["trajectory"]["kind"] == "full" and rep["views"] == 36
    assert rep["metrics"]["psnr_db"] > 20 and 0 < rep["metrics"]["ssim"] <= 1
    assert {"fdk", "load", "truth", "total"} <= set(rep["seconds"]) and rep["machine"]["cpu_count"] >= 1
    img = nib.load(str(out))
    proj = load_projections(phantom_store)
    np.testing.assert_allclose(img.affine, proj.ct_grid.affine, atol=1e-5)  # the CT's own grid by default
    assert img.shape == tuple(proj.ct_grid.shape) and img.get_fdata().max() > 0.1


def test_cli_iterative_improves_on_fdk(phantom_store, tmp_path):
    report = tmp_path / "r.json"
    result = run("--store", phantom_store, "--out", tmp_path / "it.nii", "--method", "iterative", "--iterations", 2,
                 "--subsets", 4, "--truth", "--report", report, "--grid-shape", "16")
    assert result.exit_code == 0, result.output
    rep = json.loads(report.read_text())
    assert [h["iteration"] for h in rep["history"]] == [1, 2]
    assert rep["history"][-1]["psnr_db"] > rep["fdk_psnr_db"] and rep["grid"]["shape"] == [16, 16, 16]
    assert rep["metrics"]["psnr_db"] == pytest.approx(rep["history"][-1]["psnr_db"], abs=1e-6)


def test_nifti_overlays_the_source_ct(tmp_path):
    """A bone ball at a known RAS position in a CT with a flipped axis and an off-centre origin
    shows up at the same RAS position in the reconstruction's NIfTI, on another grid."""
    shape, spacing = (40, 36, 32), np.array([5.0, 5.0, 6.0])
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [150.0, -80.0, 200.0]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    ras = idx @ affine[:3, :3].T + affine[:3, 3]
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    ball = centre + [30.0, -25.0, 20.0]
    hu = np.full(shape, -1000.0, np.float32)
    hu[np.linalg.norm((ras - centre)[..., :2], axis=-1) < 80] = 0.0
    hu[np.linalg.norm(ras - ball, axis=-1) < 15] = 1000.0
    (tmp_path / "cts").mkdir()
    nib.save(nib.Nifti1Image(hu, affine), str(tmp_path / "cts" / "ball.nii.gz"))
    store = render_store(tmp_path / "cts", tmp_path / "ball.zarr", tiny_recipe(height=68, width=64, pixel=10.0))
    out = tmp_path / "ball-rec.nii.gz"
    reconstruct_store(ReconstructJob(store=store, out=out, grid_shape=(30, 27, 24), device="cpu"))
    img = nib.load(str(out))
    vol = img.get_fdata()
    hot = np.argwhere(vol > 0.6 * vol.max())
    found = (hot @ img.affine[:3, :3].T + img.affine[:3, 3]).mean(axis=0)
    np.testing.assert_allclose(found, ball, atol=4.0)  # a 30 mm ball on ~6.7 mm voxels


def test_errors_name_store_ct_and_reason(phantom_store, mixed_store, tmp_path):
    out = tmp_path / "x.nii.gz"
    cases = [
        (("--store", tmp_path / "none.zarr", "--out", out), "no such store"),
        (("--store", phantom_store, "--out", out, "--ct", "nope"), "no CT with id 'nope'"),
        (("--store", mixed_store, "--out", out), "choose one with --ct"),
        (("--store", mixed_store, "--out", out, "--ct", "broken"), "is 'failed'"),
        (("--store", phantom_store, "--out", tmp_path / "x.npy"), ".nii or .nii.gz"),
        (("--store", phantom_store, "--out", out, "--method", "art"), "method must be one of"),
        (("--store", phantom_store, "--out", out, "--grid-shape", "1,2"), "grid shape"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (message, result.output)
    assert run("--store", mixed_store, "--out", out, "--ct", "good_0000").exit_code == 0


def test_too_few_views_and_changed_source(tmp_path, phantom_store):
    write_cohort(tmp_path / "cts", 1, shape=16, seed=5)
    two = render_store(tmp_path / "cts", tmp_path / "two.zarr", tiny_recipe(views=2, name="two-views"))
    with pytest.raises(ReconstructError, match="2 views; reconstruction needs at least 3"):
        load_projections(two)
    moved = tmp_path / "changed.nii.gz"
    source = load_projections(phantom_store).source
    img = nib.load(source)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + 1, img.affine), str(moved))
    with pytest.raises(ReconstructError, match="checksum mismatch"):
        reconstruct_store(ReconstructJob(store=phantom_store, out=tmp_path / "c.nii", truth=True, ct_path=moved))
