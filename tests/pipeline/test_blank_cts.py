"""CTs whose DiffDRR density is undefined or constant fail with `no_contrast`, on every backend,
instead of being stored `done` with NaN images."""

import nibabel as nib
import numpy as np
import pytest

from drrkit.geometry.recipe import Recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import EXIT_SOME_FAILED, RenderJob, render_corpus
from drrkit.store import open_corpus

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 16, "width": 16, "delx": 24.0, "dely": 24.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 2}},
                    "translation": {"y": 700}}}


def _save(path, data):
    nib.save(nib.Nifti1Image(data, np.diag([8.0, 8.0, 8.0, 1.0])), str(path))


@pytest.mark.parametrize("backend", ["fast", "diffdrr"])
def test_blank_and_constant_cts_fail_naming_the_file(backend, tmp_path):
    d = tmp_path / "cts"
    write_cohort(d, n=1, shape=24, seed=3)
    _save(d / "zeros.nii.gz", np.zeros((24, 24, 24), np.int16))  # a failed conversion: all 0 HU
    cube = np.full((24, 24, 24), -1000, np.int16)
    cube[8:16, 8:16, 8:16] = 40  # one value above -800 HU
    _save(d / "cube.nii.gz", cube)
    _save(d / "air.nii.gz", np.full((24, 24, 24), -1000, np.int16))  # nothing above -800 HU
    report = render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=tmp_path / "s.zarr", ct_dir=d,
                                     device="cpu", backend=backend))
    assert report.exit_code == EXIT_SOME_FAILED
    table = {row["id"]: row for row in open_corpus(tmp_path / "s.zarr").ct_table()}
    assert table["phantom_0000"]["status"] == "done"
    for name in ("zeros", "cube", "air"):
        row = table[name]
        assert (row["status"], row["error_kind"]) == ("failed", "no_contrast"), row
        assert f"{name}.nii.gz" in row["error"] and "density" in row["error"]
    corpus = open_corpus(tmp_path / "s.zarr")
    assert np.isfinite(np.asarray(corpus.images[corpus.ct_rows(corpus.ct_index_of("phantom_0000"))])).all()


def test_an_unforeseen_reader_error_fails_only_its_ct_in_process(tmp_path, monkeypatch):
    """In-process runs (no --workers) record a reader's unexpected exception against its CT and go
    on, as a Dask run records a failed task: the store stays resumable, the run exits 3."""
    from drrkit.pipeline import task

    d = tmp_path / "cts"
    write_cohort(d, n=3, shape=24, seed=3)
    real = task.load_ct

    def load_ct(source):
        if source.id == "phantom_0001":
            raise TypeError("Cannot cast array data from dtype([('R', 'u1')]) to float32")
        return real(source)

    monkeypatch.setattr(task, "load_ct", load_ct)
    report = render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=tmp_path / "s.zarr", ct_dir=d,
                                     device="cpu"))
    assert report.exit_code == EXIT_SOME_FAILED
    table = {row["id"]: row for row in open_corpus(tmp_path / "s.zarr").ct_table()}
    assert [table[k]["status"] for k in sorted(table)] == ["done", "failed", "done"]
    bad = table["phantom_0001"]
    assert bad["error_kind"] == "task_error:TypeError" and "phantom_0001.nii.gz" in bad["error"]
