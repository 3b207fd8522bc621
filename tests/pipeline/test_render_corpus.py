"""The render pipeline end to end on a folder mixing good and bad inputs."""

import shutil
from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from drrkit.geometry.recipe import Recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import EXIT_SOME_FAILED, RenderJob, dry_run, render_corpus
from drrkit.pipeline.report import report_path
from drrkit.store import StoreMismatch, open_corpus

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 16, "width": 16, "delx": 24.0, "dely": 24.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 3}},
                    "translation": {"y": 700}}}


def pydicom_series(name: str) -> Path:
    base = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
    return next(p for p in base.rglob(name) if p.is_dir())


@pytest.fixture
def mixed_dir(tmp_path):
    d = tmp_path / "cts"
    write_cohort(d, n=2, shape=24, seed=3)
    shutil.copytree(pydicom_series("CT5N"), d / "patient_dicom" / "CT5N")  # a real CT, stored in reverse order
    shutil.copytree(pydicom_series("MR700"), d / "patient_mr" / "MR700")  # not a CT
    good = (d / "phantom_0000.nii.gz").read_bytes()
    (d / "truncated.nii.gz").write_bytes(good[: len(good) // 2])
    (d / "corrupt.dcm").write_bytes(b"\x00" * 64 + b"not dicom at all")
    (d / "notes.txt").write_text("not an image")
    return d


def test_mixed_folder_renders_good_ones_and_names_bad_ones(mixed_dir, tmp_path):
    job = RenderJob(recipe=Recipe.from_dict(RECIPE), out=tmp_path / "c.zarr", ct_dir=mixed_dir, device="cpu",
                    backend="diffdrr")
    report = render_corpus(job)
    assert report.exit_code == EXIT_SOME_FAILED
    table = {row["id"]: row for row in open_corpus(job.out).ct_table()}
    done = {k for k, r in table.items() if r["status"] == "done"}
    assert {"phantom_0000", "phantom_0001"} <= done and any("CT5N" in k for k in done)
    assert len(done) == 3
    failed = {r["source"]: r for r in table.values() if r["status"] == "failed"}
    reasons = {Path(src).name: (r["error_kind"], r["error"]) for src, r in failed.items()}
    assert reasons["truncated.nii.gz"][0] == "unreadable" and "truncated.nii.gz" in reasons["truncated.nii.gz"][1]
    assert reasons["corrupt.dcm"][0] == "unreadable" and "corrupt.dcm" in reasons["corrupt.dcm"][1]
    assert any(kind == "not_ct" for kind, _ in reasons.values())
    for key in done:  # every CT that was read has its shape and spacing recorded
        assert min(table[key]["shape"]) > 0 and min(table[key]["spacing"]) > 0
    dicom = next(r for k, r in table.items() if "CT5N" in k)
    assert dicom["shape"] == [16, 16, 5] and dicom["spacing"][2] == pytest.approx(2.5)
    assert report_path(job.out).is_file()


def test_dicom_rows_rerender_with_plain_diffdrr(mixed_dir, tmp_path):
    """Plain DiffDRR reads the DICOM folder itself (torchio/SimpleITK): our LPS→RAS affine must agree."""
    job = RenderJob(recipe=Recipe.from_dict(RECIPE), out=tmp_path / "c.zarr", ct_dir=mixed_dir, device="cpu",
                    backend="diffdrr")
    render_corpus(job)
    corpus = open_corpus(job.out)
    index = next(i for i, r in enumerate(corpus.ct_table()) if "CT5N" in r["id"])
    rows = corpus.ct_rows(index)
    stored = np.asarray(corpus.images[rows])
    again = corpus.rerender_with_diffdrr(rows)
    np.testing.assert_allclose(stored, again, rtol=1e-4, atol=1e-3)


def test_resume_skips_done_and_refuses_other_recipe(mixed_dir, tmp_path):
    job = RenderJob(recipe=Recipe.from_dict(RECIPE), out=tmp_path / "c.zarr", ct_dir=mixed_dir, device="cpu",
                    backend="diffdrr")
    first = render_corpus(job)
    before = np.asarray(open_corpus(job.out).images[:])
    second = render_corpus(job)
    assert second.skipped_done == 3 and len(second.results) == len(first.failed)  # only failures retried
    np.testing.assert_array_equal(np.asarray(open_corpus(job.out).images[:]), before)
    with pytest.raises(StoreMismatch):
        render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE).with_views(4), out=job.out, ct_dir=mixed_dir,
                                device="cpu"))


def test_dry_run_counts_without_rendering(mixed_dir, tmp_path):
    plan = dry_run(RenderJob(recipe=Recipe.from_dict(RECIPE), out=tmp_path / "c.zarr", ct_dir=mixed_dir))
    assert plan.views_per_ct == 3 and plan.n_cts >= 5
    assert plan.uncompressed_bytes == plan.n_cts * 3 * 16 * 16 * 4
    assert not (tmp_path / "c.zarr").exists()


def test_sources_are_absolute_so_the_store_resumes_from_anywhere(tmp_path, monkeypatch):
    write_cohort(tmp_path / "cts", n=2, shape=24, seed=3)
    monkeypatch.chdir(tmp_path)
    job = RenderJob(recipe=Recipe.from_dict(RECIPE), out=Path("c.zarr"), ct_dir=Path("cts"), device="cpu")
    assert render_corpus(job).exit_code == 0
    sources = [r["source"] for r in open_corpus(tmp_path / "c.zarr").ct_table()]
    assert sources == [str(tmp_path / "cts" / f"phantom_000{i}.nii.gz") for i in range(2)]
    monkeypatch.chdir(tmp_path / "cts")  # elsewhere, the same CTs named another way: resumes
    again = render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=tmp_path / "c.zarr", ct_dir=Path("."),
                                    device="cpu"))
    assert again.exit_code == 0 and again.skipped_done == 2 and not again.results
