"""Write a seeded cohort of phantom CTs (NIfTI), their label maps, and a ground-truth CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np

from drrkit.phantom.anatomy import LABELS, PhantomSpec, sample_spec
from drrkit.phantom.chest import PARTIAL_VOLUME, make_phantom
from drrkit.processes import cores, spawn_map

CSV_NAME = "phantoms.csv"
CSV_COLUMNS = [
    "id", "path", "label_path", "shape", "spacing", "nodule_present",
    "nodule_center_x_mm", "nodule_center_y_mm", "nodule_center_z_mm", "nodule_radius_mm",
    "nodule_depth_ap_mm", "lung_volume_ml", "left_lung_ml", "right_lung_ml", "heart_volume_ml",
    "seed", "case_index", "nodule_voxels", "heart_volume_analytic_ml",
]
_FLOAT_COLUMNS = {c for c in CSV_COLUMNS if c.endswith(("_mm", "_ml"))}
_INT_COLUMNS = {"seed", "case_index", "nodule_voxels"}


def case_spec(seed: int, k: int, nodule_prob: float = 0.5) -> PhantomSpec:
    """The spec of case k of the cohort with this seed: rng = default_rng([seed, k])."""
    return sample_spec(np.random.default_rng([seed, k]), nodule_prob)


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)  # scanner-anatomical: the affine is the true RAS+ geometry
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _row(truth: dict, path: Path, label_path: Path, seed: int, k: int) -> dict:
    cx, cy, cz = truth["nodule_center_mm"]
    row = {"id": truth["id"], "path": str(path), "label_path": str(label_path),
           "shape": tuple(truth["shape"]), "spacing": tuple(truth["spacing_mm"]),
           "nodule_present": bool(truth["nodule_present"]),
           "nodule_center_x_mm": cx, "nodule_center_y_mm": cy, "nodule_center_z_mm": cz,
           "seed": int(seed), "case_index": int(k)}
    for c in CSV_COLUMNS:
        if c not in row:
            row[c] = truth[c]
    return {c: row[c] for c in CSV_COLUMNS}


def write_structures_csv(path: Path) -> None:
    """labels/structures.csv (structure,id): what each label value means (see drrkit.ct.labels)."""
    with Path(path).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["structure", "id"])
        writer.writerows((name, value) for name, value in LABELS.items() if value)


PARALLEL_VOXELS = 1 << 24  # auto_jobs: smaller cohorts are written faster than processes spawn


def auto_jobs(n: int, shape: int) -> int:
    """Processes for a cohort: one per core once it holds PARALLEL_VOXELS voxels (8 phantoms at
    128^3), else 1. A spawned process costs ~0.6 s to start; one 128^3 case ~0.58 s to write with
    partial volume (0.15 s sampled at centres; 2-core dev machine), so smaller cohorts than this
    would now gain a little from processes too: the threshold is conservative."""
    return cores(n) if n * shape ** 3 >= PARALLEL_VOXELS else 1


def write_cohort(out_dir, n: int, shape=64, seed: int = 0, nodule_prob: float = 0.5,
                 prefix: str = "phantom", jobs: int = 1, partial_volume: int = PARTIAL_VOLUME) -> list[dict]:
    """Write n phantoms: out_dir/<id>.nii.gz (int16 HU, rounded), out_dir/labels/<id>.nii.gz
    (uint8 labels), out_dir/phantoms.csv.  Case k uses rng = default_rng([seed, k]) so it is the
    same whatever n, and whatever `jobs`: with jobs > 1 cases are written by that many spawned
    processes (each case is independent; the CSV keeps case order).  CSV paths are relative to
    out_dir; the returned rows (same as `read_cohort_csv` gives back) carry absolute paths."""
    out = Path(out_dir).resolve()
    (out / "labels").mkdir(parents=True, exist_ok=True)
    write_structures_csv(out / "labels" / "structures.csv")
    cases = [(out, f"{prefix}_{k:04d}", shape, seed, k, nodule_prob, partial_volume) for k in range(n)]
    jobs = max(1, min(int(jobs), n))
    if jobs == 1:
        rows = [_write_case(*case) for case in cases]
    else:  # spawned processes (drrkit/processes.py); start-up is ~0.6 s a process
        rows = spawn_map(_write_case, *zip(*cases), jobs=jobs, chunksize=max(1, n // (4 * jobs)))
    _write_csv(out / CSV_NAME, rows, out)
    return rows


def _write_case(out: Path, cid: str, shape, seed: int, k: int, nodule_prob: float, partial_volume: int) -> dict:
    vol, labels, truth = make_phantom(case_spec(seed, k, nodule_prob), shape, id=cid, partial_volume=partial_volume)
    hu = np.clip(np.rint(vol.hu), -32768, 32767).astype(np.int16)
    path, label_path = out / f"{cid}.nii.gz", out / "labels" / f"{cid}.nii.gz"
    _save_nifti(path, hu, vol.affine)
    _save_nifti(label_path, labels, vol.affine)
    return _row(truth, path, label_path, seed, k)


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return "x".join(_fmt(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _write_csv(path: Path, rows: list[dict], base: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for row in rows:
            rel = {c: Path(row[c]).relative_to(base).as_posix() for c in ("path", "label_path")}
            w.writerow({c: _fmt(v) for c, v in {**row, **rel}.items()})


def _parse(column: str, text: str, base: Path):
    if column in ("path", "label_path"):
        p = Path(text)
        return str(p if p.is_absolute() else base / p)
    if column == "shape":
        return tuple(int(v) for v in text.split("x"))
    if column == "spacing":
        return tuple(float(v) for v in text.split("x"))
    if column == "nodule_present":
        return text.strip().lower() in ("true", "1", "yes")
    if column in _INT_COLUMNS:
        return int(text)
    if column in _FLOAT_COLUMNS:
        return float(text) if text.strip() else math.nan
    return text


def read_cohort_csv(path) -> list[dict]:
    """Rows of a phantoms.csv with types restored; relative paths resolved against its folder."""
    path = Path(path).resolve()
    with open(path, newline="") as f:
        return [{c: _parse(c, v, path.parent) for c, v in row.items()} for row in csv.DictReader(f)]
