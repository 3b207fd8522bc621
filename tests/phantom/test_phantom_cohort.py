import math
from pathlib import Path

import nibabel as nib
import numpy as np

from drrkit.phantom import case_spec, make_phantom, read_cohort_csv, write_cohort
from drrkit.phantom.cohort import CSV_COLUMNS


def same(a, b) -> bool:
    """Equality that treats NaN == NaN and compares tuples element-wise (truth rows)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_write_cohort_files_csv_and_readback(tmp_path):
    rows = write_cohort(tmp_path / "c", 3, shape=32, seed=4, nodule_prob=0.5)
    assert [r["id"] for r in rows] == ["phantom_0000", "phantom_0001", "phantom_0002"]
    back = read_cohort_csv(tmp_path / "c" / "phantoms.csv")
    assert len(back) == 3 and all(list(r) == CSV_COLUMNS for r in back)
    assert all(same(r[c], b[c]) for r, b in zip(rows, back) for c in CSV_COLUMNS)
    for k, r in enumerate(rows):
        assert Path(r["path"]) == tmp_path / "c" / f"{r['id']}.nii.gz"
        assert Path(r["label_path"]) == tmp_path / "c" / "labels" / f"{r['id']}.nii.gz"
        assert r["shape"] == (32, 32, 32) and r["seed"] == 4 and r["case_index"] == k
        assert isinstance(r["nodule_present"], bool) and isinstance(r["lung_volume_ml"], float)
        vol, labels, truth = make_phantom(case_spec(4, k, 0.5), 32, id=r["id"])
        img, lab = nib.load(r["path"]), nib.load(r["label_path"])
        assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
        assert np.allclose(img.affine, vol.affine, atol=1e-5) and np.allclose(lab.affine, vol.affine, atol=1e-5)
        assert np.abs(img.get_fdata() - vol.hu).max() <= 0.5 + 1e-3
        assert np.array_equal(np.asarray(lab.dataobj), labels)
        assert same(r["nodule_depth_ap_mm"], truth["nodule_depth_ap_mm"])
        assert r["nodule_present"] == truth["nodule_present"]


def test_case_k_is_the_same_whatever_n(tmp_path):
    small = write_cohort(tmp_path / "a", 2, shape=32, seed=9, prefix="p")
    large = write_cohort(tmp_path / "b", 4, shape=32, seed=9, prefix="p")
    for a, b in zip(small, large):
        assert all(same(a[c], b[c]) for c in CSV_COLUMNS if c not in ("path", "label_path"))
        assert np.array_equal(nib.load(a["path"]).get_fdata(), nib.load(b["path"]).get_fdata())
    assert large[3]["id"] == "p_0003"


def test_cohort_is_the_same_whatever_jobs(tmp_path):
    serial = write_cohort(tmp_path / "a", 5, shape=24, seed=3, jobs=1)
    parallel = write_cohort(tmp_path / "b", 5, shape=24, seed=3, jobs=2)
    assert [r["id"] for r in parallel] == [f"phantom_{k:04d}" for k in range(5)]  # case order kept
    assert (tmp_path / "a" / "phantoms.csv").read_text() == (tmp_path / "b" / "phantoms.csv").read_text()
    for a, b in zip(serial, parallel):
        assert Path(b["path"]).parent == tmp_path / "b" and Path(b["label_path"]).parent == tmp_path / "b" / "labels"
        for key in ("path", "label_path"):
            assert np.array_equal(np.asarray(nib.load(a[key]).dataobj), np.asarray(nib.load(b[key]).dataobj))


def test_auto_jobs_spawns_only_for_cohorts_worth_it():
    import os

    from drrkit.phantom.cohort import auto_jobs

    assert auto_jobs(4, 64) == 1 and auto_jobs(7, 128) == 1  # the default cohort: faster than spawning
    assert auto_jobs(512, 128) == max(1, min(512, os.cpu_count() or 1)) and auto_jobs(1, 512) == 1
