"""A failed input deleted after the run resumes: its row stays failed with the store's reason,
nothing else is rendered again. Removing a done CT is still refused."""

import numpy as np
import pytest

from drrkit.geometry.recipe import Recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import EXIT_SOME_FAILED, RenderJob, render_corpus
from drrkit.store import StoreMismatch, open_corpus

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 8, "width": 8, "delx": 48.0, "dely": 48.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 2}},
                    "translation": {"y": 700}}}


def job(out, **kw):
    return RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, device="cpu", **kw)


@pytest.fixture
def cts(tmp_path):
    d = tmp_path / "cts"
    write_cohort(d, n=3, shape=16, seed=1)
    good = (d / "phantom_0001.nii.gz").read_bytes()
    (d / "b_truncated.nii.gz").write_bytes(good[: len(good) // 2])
    return d


def test_a_deleted_failed_input_keeps_its_row_and_the_rest_resumes(cts, tmp_path):
    out = tmp_path / "s.zarr"
    first = render_corpus(job(out, ct_dir=cts))
    assert first.exit_code == EXIT_SOME_FAILED
    before = open_corpus(out)
    table_before, images_before = before.ct_table(), np.asarray(before.images[:])
    (cts / "b_truncated.nii.gz").unlink()
    again = render_corpus(job(out, ct_dir=cts))
    assert again.skipped_done == 3 and again.exit_code == EXIT_SOME_FAILED  # the store still holds a failure
    after = open_corpus(out)
    table = after.ct_table()
    assert [r["id"] for r in table] == [r["id"] for r in table_before]
    bad = next(r for r in table if r["id"] == "b_truncated")
    old = next(r for r in table_before if r["id"] == "b_truncated")
    assert bad["status"] == "failed" and bad["error_kind"] == old["error_kind"]
    assert "input is gone since" in bad["error"] and old["error"].split(": ", 1)[1] in bad["error"]
    np.testing.assert_array_equal(np.asarray(after.images[:]), images_before)
    assert render_corpus(job(out, ct_dir=cts)).skipped_done == 3  # and again: stable


def test_removing_a_done_ct_is_still_refused(cts, tmp_path):
    out = tmp_path / "s.zarr"
    render_corpus(job(out, ct_dir=cts))
    (cts / "phantom_0002.nii.gz").unlink()
    with pytest.raises(StoreMismatch, match="missing here: phantom_0002"):
        render_corpus(job(out, ct_dir=cts))


def test_a_manifest_row_of_a_failed_input_may_go_with_its_columns(cts, tmp_path):
    rows = ["phantom_0000.nii.gz,r0", "b_truncated.nii.gz,rb", "phantom_0001.nii.gz,r1"]
    manifest = cts / "m.csv"
    manifest.write_text("path,report\n" + "\n".join(rows) + "\n")
    out = tmp_path / "m.zarr"
    assert render_corpus(job(out, manifest=manifest)).exit_code == EXIT_SOME_FAILED
    manifest.write_text("path,report\n" + "\n".join([rows[0], rows[2]]) + "\n")
    again = render_corpus(job(out, manifest=manifest))
    assert again.skipped_done == 2
    corpus = open_corpus(out)
    assert corpus.extra_columns()["report"] == ["r0", "rb", "r1"]
    assert [r["status"] for r in corpus.ct_table()] == ["done", "failed", "done"]
