"""`--manifest` rows and columns: an Excel BOM, rows with too many fields or no path, explicit ids
that would have to change, column names a store cannot hold (refused before any store exists),
and extra columns edited between a run and its resume (refused, naming the column and CT)."""

import pytest

from drrkit.geometry.recipe import Recipe, load_recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.pipeline.plan import plan_manifest
from drrkit.store import CTEntry, StoreMismatch, create_or_open, open_corpus

RECIPE = {"name": "t", "detector": {"sdd": 1000, "height": 6, "width": 5, "delx": 2.0, "dely": 2.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 90, "num": 3}},
                    "translation": {"y": 600}}}


@pytest.fixture(scope="module")
def cts(tmp_path_factory):
    d = tmp_path_factory.mktemp("mrows")
    write_cohort(d, n=2, shape=24, seed=0)
    return d


def write(d, text, name="m.csv", bom=False):
    path = d / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def failures(plan):
    return {plan.entries[i].id: (e.kind, str(e)) for i, e in plan.discovery_errors.items()}


def test_manifest_with_an_excel_bom_is_read(cts):
    plan = plan_manifest(write(cts, "path,id\nphantom_0000.nii.gz,p0\n", "bom.csv", bom=True))
    assert [e.id for e in plan.entries] == ["p0"] and not plan.discovery_errors


def test_manifest_row_with_too_many_fields_is_a_bad_row_naming_the_line(cts):
    m = write(cts, "path,id,report\nphantom_0000.nii.gz,p0,a,EXTRA\nphantom_0001.nii.gz,p1,b\n", "extra.csv")
    plan = plan_manifest(m)
    kind, message = failures(plan)["p0"]
    assert kind == "bad_manifest_row" and f"{m} line 2" in message and "4 fields" in message
    assert plan.sources[1] is not None and plan.extras == {"report": ["a", "b"]}
    trailing = plan_manifest(write(cts, "path,id\nphantom_0000.nii.gz,p0,\n", "trailing.csv"))
    assert not trailing.discovery_errors  # an empty field past the header holds nothing


def test_manifest_row_with_an_empty_path_is_a_bad_row_and_scans_nothing(cts, tmp_path, monkeypatch):
    import drrkit.pipeline.plan as plan_module

    scanned = []
    monkeypatch.setattr(plan_module, "discover_folders", lambda f, jobs=None: scanned.extend(f) or [])
    m = write(tmp_path, f"path,id\n{cts / 'phantom_0000.nii.gz'},p0\n,p1\n")
    plan = plan_manifest(m)
    kind, message = failures(plan)["p1"]
    assert kind == "bad_manifest_row" and f"{m} line 3" in message and "empty path" in message
    assert scanned == [] and plan.sources[0] is not None


def test_manifest_line_numbers_count_blank_lines(cts):
    m = write(cts, "path,id\n\nphantom_0000.nii.gz,p0,EXTRA\n", "blank.csv")
    assert f"{m} line 3" in failures(plan_manifest(m))["p0"][1]


def test_explicit_manifest_ids_are_kept_or_the_row_is_bad(cts):
    m = write(cts, "path,id\nphantom_0000.nii.gz,same\nphantom_0001.nii.gz,same\n"
                   "phantom_0000.nii.gz,été\nphantom_0001.nii.gz,phantom_0000\nphantom_0000.nii.gz,\n", "ids.csv")
    plan = plan_manifest(m)
    bad = failures(plan)
    assert set(bad) == {"same_2", "t_"}
    assert bad["same_2"][0] == "bad_manifest_row" and f"{m} line 3" in bad["same_2"][1]
    assert "'same'" in bad["same_2"][1] and "line 2" in bad["same_2"][1]
    assert bad["t_"][0] == "bad_manifest_row" and f"{m} line 4" in bad["t_"][1]
    assert "'été'" in bad["t_"][1] and "'t_'" in bad["t_"][1]
    # an explicit id is never renamed; an id made from the file name gives way to it
    assert [e.id for e in plan.entries] == ["same", "same_2", "t_", "phantom_0000", "phantom_0000_2"]
    assert plan.sources[3].id == "phantom_0000" and plan.sources[4].id == "phantom_0000_2"


@pytest.mark.parametrize("header, bad", [("path,id,..", "'..'"), ("path,id,,report", "column 3"),
                                         ("path,id,report,report", "'report'"),
                                         ("path,id,Report,report", "'report'"),
                                         ("path,id,a b,a_b", "'a_b'"), ("path,id,zarr.json", "'zarr.json'"),
                                         ("path,id,__x", "'__x'"), ("path,id,path", "'path'")])
def test_manifest_columns_a_store_cannot_hold_are_refused_before_any_store(cts, tmp_path, header, bad):
    n = header.count(",") + 1
    m = write(cts, f"{header}\nphantom_0000.nii.gz,p0{',x' * (n - 2)}\n", "cols.csv")
    out = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match="cols.csv") as info:
        render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, manifest=m, device="cpu"))
    assert bad in str(info.value) and not out.exists()


def test_manifest_unnamed_empty_columns_from_trailing_commas_are_ignored(cts):
    plan = plan_manifest(write(cts, "path,id,report,,\nphantom_0000.nii.gz,p0,r,,\n", "trail.csv"))
    assert plan.extras == {"report": ["r"]} and not plan.discovery_errors


def test_manifest_columns_edited_on_resume_are_refused_naming_column_and_ct(tmp_path):
    recipe = Recipe.from_dict(RECIPE)
    entries = [CTEntry("p0", "/d/0", "nifti"), CTEntry("p1", "/d/1", "nifti")]
    path = tmp_path / "s.zarr"
    create_or_open(path, recipe, entries, extras={"report": ["normal", "nodule"]})
    create_or_open(path, recipe, entries, extras={"report": ["normal", "nodule"]})  # same: resumes
    for extras, message in [({"report": ["normal", "EDITED"]}, r"report of p1: 'nodule' → 'EDITED'"),
                            ({"report": ["normal", "nodule"], "label": ["1", "0"]}, r"label: not in the store"),
                            ({}, r"report: in the store, not in this run")]:
        with pytest.raises(StoreMismatch, match=message):
            create_or_open(path, recipe, entries, extras=extras)
    assert list(open_corpus(path).root["cts/extra/report"][:]) == ["normal", "nodule"]


def test_manifest_bad_rows_fail_alone_and_an_edited_resume_is_refused(cts, tmp_path):
    recipe = load_recipe("xwin").with_height(16).with_views(2)
    m = write(tmp_path, f"path,id,report\n{cts / 'phantom_0000.nii.gz'},p0,normal\n"
                        f"{cts / 'phantom_0001.nii.gz'},p1,x,EXTRA\n,p2,y\n")
    out = tmp_path / "s.zarr"
    report = render_corpus(RenderJob(recipe=recipe, out=out, manifest=m, device="cpu"))
    assert report.exit_code == 3
    assert {(r.ct_id, r.error_kind) for r in report.failed} == {("p1", "bad_manifest_row"),
                                                               ("p2", "bad_manifest_row")}
    assert list(open_corpus(out).root["cts/status"][:]) == ["done", "failed", "failed"]
    edited = write(tmp_path, m.read_text().replace("normal", "EDITED"), "m2.csv")
    with pytest.raises(StoreMismatch, match=r"report of p0: 'normal' → 'EDITED'"):
        render_corpus(RenderJob(recipe=recipe, out=out, manifest=edited, device="cpu"))
