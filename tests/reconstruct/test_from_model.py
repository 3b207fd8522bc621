"""`drrkit reconstruct --checkpoint`: a trained X-WIN's predicted projections → volume.

A tiny X-WIN (the tiny recipe, shallower, 4 steps) trained on a tiny phantom store (3 phantoms
at 32³, 13 X-WIN yaw views of 32×32) runs end to end through the CLI for the store and the
radiograph-file paths. The plumbing (angles, geometry at the model's resolution, units) is checked
apart from model quality by a perfect predictor: a stand-in that returns the store's own DRRs in the
model's normalised space must give back the FDK of the store's projections."""

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import drrkit.reconstruct.view_plan as view_plan
from cli.app import app
from drrkit.geometry.recipe import load_recipe
from drrkit.phantom import write_cohort
from drrkit.reconstruct import ConeBeamGeometry, fdk, load_projections, load_source_ct, psnr, truth_on_grid
from drrkit.reconstruct.from_model import ModelReconstructJob, reconstruct_from_model
from drrkit.reconstruct.view_units import FrontalRange, to_line_integrals
from drrkit.store import open_corpus
from drrkit.train.config import load_train_config
from drrkit.train.transforms import display_range, resize, to_model_input
from tests.reconstruct.helpers import render_store

runner = CliRunner()
CT = "phantom_0000"


def run(*args):
    return runner.invoke(app, ["reconstruct", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("model-recon")
    write_cohort(root / "cts", 3, shape=32, seed=2)
    return render_store(root / "cts", root / "store.zarr", load_recipe("xwin").with_height(32).with_views(13))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, store):
    """4 steps of a shallower tiny recipe (48² inputs, yaw actions): the weights are not the point."""
    from drrkit.train import train

    cfg = load_train_config("train-xwin-tiny")
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, depth=2, view_predictor_depth=1, masked_predictor_depth=1),
        data=dataclasses.replace(cfg.data, batch_size=2, n_targets=2, val_fraction=0.0),
        optim=dataclasses.replace(cfg.optim, steps=4), run=dataclasses.replace(cfg.run, checkpoint_every=4))
    out = tmp_path_factory.mktemp("model-run") / "tiny"
    train(cfg, [store], out)
    return out


@pytest.fixture(scope="module")
def frontal_png(tmp_path_factory, store):
    """The CT's frontal DRR as a 16-bit PNG (a radiograph file of unknown line-integral scale)."""
    proj = load_projections(store, CT)
    image = proj.images[len(proj.images) // 2]  # yaw 0 of 13 views over ±90°
    path = tmp_path_factory.mktemp("cxr") / "frontal.png"
    Image.fromarray(np.round(image / image.max() * 65535).astype(np.uint16)).save(path)
    return path


def _finite(*values):
    return all(np.isfinite(v) for v in values)


def test_store_path_end_to_end(store, run_dir, tmp_path):
    out, report = tmp_path / "vol.nii.gz", tmp_path / "r.json"
    result = run("--checkpoint", run_dir, "--store", store, "--ct", CT, "--out", out, "--truth",
                 "--report", report, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "2D predicted views" in result.output and "3D PSNR" in result.output
    rep = json.loads(report.read_text())
    assert rep["K"] == 13 and rep["img_size"] == 48 and rep["geometry"]["model_detector"] == [48, 48]
    assert rep["yaw_deg"] == pytest.approx(np.linspace(-90, 90, 13).tolist())
    assert rep["units"]["mode"] == "mass" and rep["units"]["frontal"]["scale_known"]
    assert rep["input"]["kind"] == "store_frontal_view" and rep["trajectory"]["kind"] == "short"
    m2 = rep["metrics_2d"]
    for space in ("normalised", "line_integral_mm"):
        assert _finite(m2[space]["psnr_db"], m2[space]["ssim"]) and len(m2[space]["per_view"]) == 13
    m3 = rep["metrics_3d"]
    assert _finite(m3["psnr_db"], m3["ssim"], m3["scale_fitted"]["psnr_db"], m3["scale_fitted"]["ssim"])
    assert {"load_model", "predict", "fdk", "truth", "metrics", "total"} <= set(rep["seconds"])
    assert (tmp_path / "vol.png").is_file() and (tmp_path / "vol-views.png").is_file()
    img, grid = nib.load(str(out)), load_projections(store, CT).ct_grid
    np.testing.assert_allclose(img.affine, grid.affine, atol=1e-5)  # the store CT's own frame
    assert img.shape == tuple(grid.shape) and np.isfinite(img.get_fdata()).all()


def test_radiograph_paths(store, run_dir, frontal_png, tmp_path):
    report = tmp_path / "r.json"
    result = run("--checkpoint", run_dir, "--cxr", frontal_png, "--out", tmp_path / "a.nii.gz",
                 "--report", report, "--device", "cpu")
    assert result.exit_code == 0, result.output
    rep = json.loads(report.read_text())
    assert rep["input"]["kind"] == "radiograph" and not rep["units"]["frontal"]["scale_known"]
    assert rep["units"]["volume"].startswith("relative") and "metrics_2d" not in rep
    assert "training store" in rep["geometry"]["recipe_from"] and rep["K"] == 13  # the run's store's recipe
    assert nib.load(str(tmp_path / "a.nii.gz")).shape == (48, 48, 48)  # default grid: img_size³ at the isocentre

    result = run("--checkpoint", run_dir, "--cxr", frontal_png, "--recipe", "xwin", "--angles", "-90:90:30",
                 "--scale", "80", "--out", tmp_path / "b.nii.gz", "--report", report, "--grid-shape", "24")
    assert result.exit_code == 0, result.output
    rep = json.loads(report.read_text())
    assert rep["K"] == 7 and rep["units"]["frontal"]["hi_mm"] == 80 and rep["grid"]["shape"] == [24, 24, 24]

    # a radiograph with a store's CT: the store's geometry and truth, scale-fitted 3D metrics only
    result = run("--checkpoint", run_dir, "--cxr", frontal_png, "--store", store, "--ct", CT, "--truth",
                 "--views", "7", "--out", tmp_path / "c.nii.gz", "--report", report)
    assert result.exit_code == 0, result.output
    rep = json.loads(report.read_text())
    m2, m3 = rep["metrics_2d"], rep["metrics_3d"]
    assert rep["K"] == 7 and "psnr_db" not in m3 and _finite(m3["scale_fitted"]["psnr_db"])
    assert _finite(m2["normalised"]["psnr_db"]) and isinstance(m2["line_integral_mm"], str)  # scale unknown


def test_errors_name_the_input_and_the_reason(store, run_dir, frontal_png, tmp_path):
    out = tmp_path / "x.nii.gz"
    (tmp_path / "empty-run").mkdir()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    cases = [  # (arguments, reason, the file the message must name)
        (("--checkpoint", tmp_path / "nope", "--store", store, "--out", out), "no such run folder", tmp_path / "nope"),
        (("--checkpoint", tmp_path / "empty-run", "--store", store, "--out", out), "no checkpoint",
         tmp_path / "empty-run" / "checkpoints" / "last.pt"),
        (("--checkpoint", run_dir, "--cxr", broken, "--out", out), "cannot read radiograph", broken),
        (("--checkpoint", run_dir, "--cxr", tmp_path / "none.png", "--out", out), "no such radiograph file",
         tmp_path / "none.png"),
        (("--checkpoint", run_dir, "--store", store, "--ct", "nope", "--out", out), "no CT with id 'nope'", store),
        (("--checkpoint", run_dir, "--store", store, "--ct", CT, "--angles", "0,45,7", "--out", out),
         "no view at yaw 7°", store),
        (("--checkpoint", run_dir, "--store", store, "--ct", CT, "--scale", "3", "--out", out), "--scale", None),
        (("--checkpoint", run_dir, "--cxr", frontal_png, "--truth", "--out", out), "need --store", None),
        (("--checkpoint", run_dir, "--out", out), "needs an input", None),
        (("--cxr", frontal_png, "--out", out), "--cxr needs --checkpoint", None),
        (("--store", store, "--ct", CT, "--units", "oracle", "--out", out), "--units needs --checkpoint", None),
        (("--out", out), "--store is required", None),
    ]
    for args, message, named in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (message, result.output)
        assert named is None or str(named) in "".join(result.output.split()), (named, result.output)


class PerfectViews:
    """Stand-in for the model: the store's true DRR at each action's yaw, in model space."""

    def __init__(self, images, yaw, size, sign=1.0):
        self.images, self.yaw, self.sign = images, yaw, sign
        self.img_size, self.intensity, self.action_dim = size, "minmax", 1

    def predict(self, context, actions):
        want = self.sign * actions[:, 0].numpy().astype(np.float64)
        rows = [int(np.argmin(np.abs(self.yaw - a))) for a in want]
        assert np.allclose(self.yaw[rows], want, atol=1e-5), "an action that no stored view has"
        return to_model_input(self.images[rows], self.img_size, self.intensity)

    def describe(self):
        return {"stand_in": "perfect predictor"}


@pytest.fixture(scope="module")
def truth_views(store):
    proj = load_projections(store, CT)
    corpus = open_corpus(store)
    yaw = corpus.poses(corpus.ct_rows(proj.ct_index)).rotations[:, 0]
    truth = truth_on_grid(load_source_ct(proj), proj.ct_grid)
    return proj, yaw - yaw[np.argmin(np.abs(yaw))], truth


def rescaled(g: ConeBeamGeometry, size: int) -> ConeBeamGeometry:
    """The store's own rays on a size×size detector over the same area, built from the store's
    geometry (not from poses): an independent statement of what the model path must use."""
    col, row = g.col_step * g.width / size, g.row_step * g.height / size
    corner = g.origin - 0.5 * (g.col_step + g.row_step)
    return ConeBeamGeometry(g.source, corner + 0.5 * (col + row), col, row, size, size)


def _model_volume(store, model, units, tmp_path, name):
    out = tmp_path / f"{name}.nii.gz"
    reconstruct_from_model(ModelReconstructJob(checkpoint=tmp_path / "unused", store=store, ct=CT, out=out,
                                               units=units, device="cpu"), model=model)
    return nib.load(str(out)).get_fdata().astype(np.float32)


@pytest.mark.parametrize("size", [32, 48])
def test_perfect_predictor_gives_back_the_fdk_of_the_store(size, store, truth_views, tmp_path, monkeypatch):
    proj, yaw, truth = truth_views
    native = fdk(proj.images, proj.geometry, proj.ct_grid).volume
    resized = resize(torch.from_numpy(proj.images), size).numpy()
    reference = fdk(resized, rescaled(proj.geometry, size), proj.ct_grid).volume
    if size == proj.geometry.width:
        np.testing.assert_allclose(reference, native, atol=1e-5)

    def error(volume):
        return float(np.linalg.norm(volume - reference) / np.linalg.norm(reference))

    perfect = PerfectViews(proj.images, yaw, size)
    exact = _model_volume(store, perfect, "oracle", tmp_path, "oracle")
    assert error(exact) < 1e-4  # angles, geometry, resolution and units all right
    assert abs(psnr(exact, truth) - psnr(native, truth)) < 0.5  # as good as the store's own FDK
    mass = error(_model_volume(store, perfect, "mass", tmp_path, "mass"))
    assert mass < 0.05  # measured 0.027 (32²) on this partial-volume phantom

    # the same check fails when angles or geometry are wrong
    assert error(_model_volume(store, PerfectViews(proj.images, yaw, size, sign=-1.0), "oracle", tmp_path,
                               "mirrored")) > 0.5
    good = view_plan.model_detector
    monkeypatch.setattr(view_plan, "model_detector", lambda d, s: dataclasses.replace(d, height=s, width=s))
    if size != proj.geometry.width:  # pixel size not rescaled
        assert error(_model_volume(store, perfect, "oracle", tmp_path, "unscaled")) > 0.5
    shifted = lambda d, s: dataclasses.replace(good(d, s), x0=good(d, s).delx / 2)  # noqa: E731
    monkeypatch.setattr(view_plan, "model_detector", shifted)
    assert error(_model_volume(store, perfect, "oracle", tmp_path, "half-pixel")) > 0.1


def test_units_mapping_inverts_the_display_transform(truth_views):
    """oracle units invert minmax exactly; mass units recover each view's range from the frontal's
    alone to within the cone-beam approximation."""
    proj, yaw, _ = truth_views
    size, views = 32, proj.images
    geometry = rescaled(proj.geometry, size)
    model_space = to_model_input(views, size)[:, 0].numpy()
    true_mm = resize(torch.from_numpy(views), size).numpy()
    ranges = np.stack([r.numpy() for r in display_range(views)], axis=1)
    ctx = int(np.argmin(np.abs(yaw)))
    lo, hi = ranges[ctx]
    frontal = FrontalRange(float(lo), float(hi), True, "test")
    oracle, _ = to_line_integrals(model_space, geometry, "oracle", frontal, model_space[ctx], ranges)
    np.testing.assert_allclose(oracle, true_mm, atol=1e-4 * hi)
    mass, info = to_line_integrals(model_space, geometry, "mass", frontal, model_space[ctx])
    span_error = np.abs(np.asarray(info["span_mm"]) / (ranges[:, 1] - ranges[:, 0]) - 1)
    assert span_error[ctx] < 1e-6 and span_error.max() < 0.1
