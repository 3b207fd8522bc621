"""A resume renders again a done CT whose source files changed since it was read (ct/fingerprint.py)."""

import os
import shutil

import numpy as np
import pytest
import zarr

from drrkit.ct.discover import CTSource
from drrkit.ct.fingerprint import changed_since, source_fingerprint
from drrkit.geometry.recipe import Recipe, load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import open_corpus
from drrkit.store.verify import verify_store

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 16, "width": 16, "delx": 24.0, "dely": 24.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 3}},
                    "translation": {"y": 700}}}


@pytest.fixture
def cts(tmp_path):
    d = tmp_path / "cts"
    write_cohort(d, n=2, shape=24, seed=3)
    write_cohort(tmp_path / "other", n=3, shape=24, seed=9)
    return d


def job(ct_dir, out):
    return RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=ct_dir, device="cpu", backend="fast")


def test_a_replaced_source_is_rendered_again_and_the_rest_skipped(cts, tmp_path):
    out = tmp_path / "c.zarr"
    assert render_corpus(job(cts, out)).exit_code == 0
    before = np.asarray(open_corpus(out).images[:])
    # phantom_0001 replaced by another phantom's file, with a later modification time
    shutil.copyfile(tmp_path / "other" / "phantom_0002.nii.gz", cts / "phantom_0001.nii.gz")
    st = os.stat(cts / "phantom_0001.nii.gz")
    os.utime(cts / "phantom_0001.nii.gz", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = render_corpus(job(cts, out))
    assert again.exit_code == 0 and again.changed_sources == ["phantom_0001"] and again.skipped_done == 1
    assert [r.ct_id for r in again.results] == ["phantom_0001"]
    after = np.asarray(open_corpus(out).images[:])
    np.testing.assert_array_equal(after[:3], before[:3])  # phantom_0000: kept as it was
    assert not np.array_equal(after[3:], before[3:])
    fresh = tmp_path / "fresh.zarr"  # the replaced CT's rows are what a clean run of the new file gives
    render_corpus(job(cts, fresh))
    np.testing.assert_array_equal(after, np.asarray(open_corpus(fresh).images[:]))
    assert verify_store(open_corpus(out), checksums=True).ok  # the table's checksums describe the files now on disk
    assert render_corpus(job(cts, out)).changed_sources == []  # and a third run has nothing to redo


def test_fingerprints_are_recorded_and_survive_a_move_with_times_kept(cts, tmp_path):
    out = tmp_path / "c.zarr"
    render_corpus(job(cts, out))
    table = open_corpus(out).ct_table()
    assert all(row["source_stat"].startswith("stat-xxh3:1:") and ";labels:" not in row["source_stat"]
               for row in table)  # the CT file alone: this recipe projects no masks from its label map
    moved = tmp_path / "moved"
    shutil.copytree(cts, moved)  # copy2: times kept, as rsync -a or cp -p would
    source = CTSource("phantom_0000", str(moved / "phantom_0000.nii.gz"), "nifti",
                      (str(moved / "phantom_0000.nii.gz"),), labels=str(moved / "labels" / "phantom_0000.nii.gz"))
    assert source_fingerprint(source) == table[0]["source_stat"]
    assert not changed_since(source, table[0]["source_stat"])
    assert not changed_since(source, "")  # nothing recorded: nothing to compare
    with_labels = source_fingerprint(source, masks=True)  # a mask recipe's record: the label map too
    relabelled = CTSource(source.id, source.path, source.kind, source.files,
                          labels=str(moved / "labels" / "phantom_0001.nii.gz"))
    assert changed_since(relabelled, with_labels, masks=True)  # another label map: the masks would be stale
    assert not changed_since(relabelled, table[0]["source_stat"], masks=True)  # none recorded: no say
    os.remove(moved / "phantom_0000.nii.gz")
    assert changed_since(source, table[0]["source_stat"])  # gone since: rendered again, failing with why


def test_a_store_made_before_fingerprints_resumes_and_verifies(cts, tmp_path):
    out = tmp_path / "c.zarr"
    render_corpus(job(cts, out))
    zarr.open_group(str(out), mode="r+")["cts"].__delitem__("source_stat")  # as stores made before
    assert "source_stat" not in open_corpus(out).ct_table()[0]
    shutil.copyfile(tmp_path / "other" / "phantom_0002.nii.gz", cts / "phantom_0001.nii.gz")
    again = render_corpus(job(cts, out))  # nothing recorded, so nothing to compare: both skipped
    assert again.exit_code == 0 and again.changed_sources == [] and again.skipped_done == 2
    report = verify_store(open_corpus(out), checksums=True)
    assert not report.ok and any("phantom_0001" in c.detail for c in report.checks if c.ok is False)  # verify tells


def test_a_changed_ct_is_pending_while_its_rows_are_rewritten(cts, tmp_path):
    out = tmp_path / "c.zarr"
    render_corpus(job(cts, out))
    shutil.copyfile(tmp_path / "other" / "phantom_0002.nii.gz", cts / "phantom_0001.nii.gz")
    seen = []
    render_corpus(job(cts, out), on_start=lambda todo, done: seen.append(
        [row["status"] for row in open_corpus(out).ct_table()]))
    assert seen == [["done", "pending"]]  # no reader, and no resume after a crash, takes it as done
    assert [row["status"] for row in open_corpus(out).ct_table()] == ["done", "done"]


def test_label_maps_count_only_for_mask_recipes_and_only_when_the_resume_has_them(tmp_path):
    cts = tmp_path / "cts"
    write_cohort(cts, n=2, shape=32, seed=3, nodule_prob=1.0)
    shutil.move(str(cts / "labels"), str(tmp_path / "labels"))
    recipe = load_recipe("chexgen").with_height(16).with_views(2)
    out = tmp_path / "m.zarr"
    masks = RenderJob(recipe=recipe, out=out, ct_dir=cts, labels_dir=tmp_path / "labels", device="cpu")
    assert render_corpus(masks).exit_code == 0
    # the same command with --labels forgotten: nothing changed on disk, nothing rendered or failed
    again = render_corpus(RenderJob(recipe=recipe, out=out, ct_dir=cts, device="cpu"))
    assert again.exit_code == 0 and again.changed_sources == [] and again.skipped_done == 2
    # the structure table the masks were projected with, edited: those masks are stale
    table = tmp_path / "labels" / "structures.csv"
    header, first, second, *rest = table.read_text().splitlines()
    (a, ia), (b, ib) = first.split(","), second.split(",")
    table.write_text("\n".join([header, f"{a},{ib}", f"{b},{ia}", *rest]) + "\n")
    assert sorted(render_corpus(masks).changed_sources) == ["phantom_0000", "phantom_0001"]
    assert render_corpus(masks).changed_sources == []
    # a store without masks ignores label maps: removing them changes nothing
    plain = tmp_path / "c.zarr"
    shutil.move(str(tmp_path / "labels"), str(cts / "labels"))
    render_corpus(job(cts, plain))
    shutil.rmtree(cts / "labels")
    assert render_corpus(job(cts, plain)).changed_sources == []


def test_a_done_manifest_input_deleted_since_is_kept_and_named(cts, tmp_path):
    from cli.app import console
    from cli.render_view import print_summary

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,id\n" + "".join(f"{cts / f'phantom_000{i}.nii.gz'},p{i}\n" for i in range(2)))
    out = tmp_path / "c.zarr"
    first = RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, manifest=manifest, device="cpu", backend="fast")
    assert render_corpus(first).exit_code == 0
    before = np.asarray(open_corpus(out).images[:])
    (cts / "phantom_0001.nii.gz").unlink()
    again = render_corpus(first)
    assert again.exit_code == 0 and again.skipped_done == 2 and again.results == []
    assert list(again.missing_sources) == ["p1"] and "phantom_0001.nii.gz" in again.missing_sources["p1"]
    np.testing.assert_array_equal(np.asarray(open_corpus(out).images[:]), before)  # rows kept as rendered
    assert [row["status"] for row in open_corpus(out).ct_table()] == ["done", "done"]
    with console.capture() as said:
        print_summary(again)
    assert "1 CT(s) done before have no readable input now" in " ".join(said.get().split())
