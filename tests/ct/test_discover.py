"""discover_cts / load_ct / load_ct_path on mixed folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drrkit.ct import (
    CTReadError,
    CTSource,
    Not3D,
    NotCT,
    UnreadableFile,
    discover_cts,
    load_ct,
    load_ct_path,
    read_nifti,
)

DATA = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)


@pytest.fixture
def mixed_root(tmp_path, ctw) -> Path:
    root = tmp_path / "cohort"
    root.mkdir()
    ctw.write_nifti(root / "chest_a.nii.gz", DATA, np.eye(4))
    ctw.write_synthetic_series(root / "patient7" / "series1")
    (root / "labels").mkdir()
    ctw.write_nifti(root / "labels" / "chest_a.nii.gz", np.ones_like(DATA), np.eye(4))
    (root / "patient7" / "labels").mkdir()
    ctw.write_synthetic_series(root / "patient7" / "labels" / "seg", series_uid="1.2.3.999")
    (root / "README.txt").write_text("cohort notes\n")
    (root / "meta.csv").write_text("id,age\n1,50\n")
    (root / "bad").mkdir()
    (root / "bad" / "corrupt.dcm").write_bytes(b"\x00\x01garbage" * 20)
    return root


def test_discover_mixed_folder(mixed_root):
    sources, errors = discover_cts(mixed_root)
    assert [(s.kind, Path(s.path).relative_to(mixed_root).as_posix()) for s in sources] == [
        ("nifti", "chest_a.nii.gz"),
        ("dicom", "patient7/series1"),
    ]
    nifti, dicom = sources
    assert nifti.id == "chest_a" and nifti.files == (nifti.path,)
    assert dicom.id.startswith("series1_") and len(dicom.files) == 5
    assert list(dicom.files) == sorted(dicom.files)
    assert all("labels" not in f for s in sources for f in s.files)
    assert len(errors) == 1 and isinstance(errors[0], UnreadableFile)
    assert errors[0].path == str(mixed_root / "bad" / "corrupt.dcm")
    assert "corrupt.dcm" in str(errors[0])


def test_load_discovered_sources(mixed_root):
    sources, _ = discover_cts(mixed_root)
    nifti = load_ct(sources[0])
    assert nifti.id == "chest_a" and nifti.shape == DATA.shape
    dicom = load_ct(sources[1])
    assert dicom.id == sources[1].id and dicom.shape == (4, 3, 5)


def test_duplicate_ids_get_deterministic_suffixes(tmp_path, ctw):
    for sub in ("a", "b", "c"):
        (tmp_path / sub).mkdir()
    ctw.write_nifti(tmp_path / "a" / "ct.nii.gz", DATA, np.eye(4))
    ctw.write_nifti(tmp_path / "b" / "ct.nii", DATA, np.eye(4))
    ctw.write_nifti(tmp_path / "c" / "ct_2.nii.gz", DATA, np.eye(4))
    sources, errors = discover_cts(tmp_path)
    assert not errors
    assert [(Path(s.path).parent.name, s.id) for s in sources] == [("a", "ct"), ("b", "ct_3"), ("c", "ct_2")]
    assert load_ct(sources[1]).id == "ct_3"
    assert discover_cts(tmp_path)[0] == sources  # deterministic


def test_unknown_and_text_files(tmp_path, ctw):
    ctw.write_nifti(tmp_path / "ct.nii.gz", DATA, np.eye(4))
    (tmp_path / "LICENSE").write_text("MIT\n")  # no extension but plain text: ignored
    (tmp_path / "notes.docx").write_bytes(b"\x00PK binary")  # unknown extension, not DICOM: ignored
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "slice0001").write_bytes(b"\x00" * 50)  # no extension, binary, not DICOM: error
    (tmp_path / "scan.nrrd").write_bytes(b"NRRD0004\n")
    sources, errors = discover_cts(tmp_path)
    assert [s.id for s in sources] == ["ct"]
    assert sorted(Path(e.path).name for e in errors) == ["scan.nrrd", "slice0001"]
    assert all(isinstance(e, UnreadableFile) for e in errors)


def test_discover_pydicom_dicomdirtests(dicomdir_tests):
    """pydicom's DICOMDIR test tree: CT series become sources, MR/CR series NotCT errors."""
    sources, errors = discover_cts(dicomdir_tests)
    assert [Path(s.path).name for s in sources] == ["CT2", "CT2N", "CT5N", "SE000000"]
    assert all(s.kind == "dicom" for s in sources)
    assert len({s.id for s in sources}) == len(sources)
    assert errors and all(isinstance(e, NotCT) for e in errors)
    assert {Path(e.path).name for e in errors} == {"CR1", "CR2", "CR3", "MR1", "MR2", "MR700"}
    by_name = {Path(s.path).name: s for s in sources}
    assert load_ct(by_name["CT5N"]).shape == (16, 16, 5)
    with pytest.raises(Not3D):
        load_ct(by_name["CT2N"])


def test_load_ct_path_file_and_folder(mixed_root):
    assert load_ct_path(mixed_root / "chest_a.nii.gz").id == "chest_a"
    vol = load_ct_path(mixed_root / "patient7" / "series1")
    assert vol.shape == (4, 3, 5) and vol.id.startswith("series1_")
    np.testing.assert_array_equal(
        load_ct_path(mixed_root / "chest_a.nii.gz").hu, read_nifti(mixed_root / "chest_a.nii.gz").hu
    )


def test_load_ct_path_rejects_ambiguous_or_bad(mixed_root, tmp_path, ctw):
    # patient7 holds series1 and a labels/ folder: labels never count, so this is one series.
    assert load_ct_path(mixed_root / "patient7").id == discover_cts(mixed_root)[0][1].id
    with pytest.raises(UnreadableFile, match="corrupt.dcm"):
        load_ct_path(mixed_root / "bad")
    with pytest.raises(UnreadableFile, match="corrupt.dcm"):  # errors are raised, not skipped
        load_ct_path(mixed_root)
    two = tmp_path / "two"
    ctw.write_synthetic_series(two / "s1")
    ctw.write_synthetic_series(two / "s2", series_uid="1.2.3.4.5")
    with pytest.raises(CTReadError, match="exactly one DICOM CT series"):
        load_ct_path(two)
    with pytest.raises(UnreadableFile, match="does not exist"):
        load_ct_path(tmp_path / "missing")
    with pytest.raises(UnreadableFile):
        load_ct_path(mixed_root / "README.txt")


def test_ctsource_is_frozen():
    src = CTSource(id="x", path="/p", kind="nifti", files=("/p",))
    with pytest.raises(AttributeError):
        src.id = "y"  # type: ignore[misc]


def _outcome(sources, errors):
    return sources, [(type(e), e.kind, e.path, e.reason) for e in errors]


@pytest.mark.timeout(120)
def test_parallel_scan_gives_the_serial_result(dicomdir_tests, mixed_root, tmp_path, monkeypatch):
    """Headers read by 2 spawned processes (chunks of 8 files): the same sources and errors, in the
    same order, as one process; the tree mixes CT/MR/CR series, NIfTI, text and a corrupt file."""
    import shutil

    from drrkit import processes
    from drrkit.ct import scan

    root = tmp_path / "both"
    shutil.copytree(dicomdir_tests, root / "dicomdirtests")
    shutil.copytree(mixed_root, root / "mixed")
    monkeypatch.setattr(scan, "CHUNK_FILES", 8)
    pools = []

    class CountedPool(processes.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(processes, "ProcessPoolExecutor", CountedPool)
    serial = discover_cts(root, jobs=1)
    assert len(list(root.rglob("*"))) > 2 * scan.CHUNK_FILES  # enough files for 2 processes
    assert pools == []
    parallel = discover_cts(root, jobs=2)
    assert [args[0] for args in pools] == [2]  # the parallel run used a pool of 2
    assert _outcome(*parallel) == _outcome(*serial)
    assert len(serial[0]) == 6  # 4 + 2 CTs
    assert sorted(e.kind for e in serial[1]) == ["not_ct"] * 10 + ["unreadable"]  # + the corrupt file


def test_read_errors_survive_pickling():
    """Scan processes hand their errors back pickled: kind, path and reason intact."""
    import pickle

    from drrkit.ct.errors import BadManifestRow

    for err in (UnreadableFile("/d/x.dcm", "truncated"), NotCT("/d/s", "Modality is 'MR'"),
                BadManifestRow("/m.csv", "line 3: spacing")):
        back = pickle.loads(pickle.dumps(err))
        assert (type(back), back.kind, back.path, back.reason, str(back)) == \
               (type(err), err.kind, err.path, err.reason, str(err))


def test_auto_scan_jobs_serial_for_small_folders():
    from drrkit.ct.scan import PARALLEL_FILES, auto_scan_jobs

    assert auto_scan_jobs(PARALLEL_FILES - 1) == 1
    assert auto_scan_jobs(10 * PARALLEL_FILES) >= 1


@pytest.mark.timeout(120)
def test_manifest_folders_discovered_in_processes_as_in_one(dicomdir_tests, mixed_root, tmp_path):
    """A manifest naming DICOM folders (good, non-CT, two series in one, missing) plans the same
    corpus with its folders shared out to 2 processes as in this process."""
    from drrkit.pipeline.plan import plan_manifest

    series = sorted(p.parent for p in dicomdir_tests.rglob("*") if p.is_file() and p.parent != dicomdir_tests)
    folders = sorted(set(series)) + [mixed_root / "patient7" / "series1", mixed_root / "patient7", tmp_path / "gone"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,report\n" + "".join(f"{f},r{i}\n" for i, f in enumerate(folders)))
    serial, parallel = plan_manifest(manifest, scan_jobs=1), plan_manifest(manifest, scan_jobs=2)
    assert serial.entries == parallel.entries and serial.sources == parallel.sources
    assert {i: str(e) for i, e in serial.discovery_errors.items()} == \
           {i: str(e) for i, e in parallel.discovery_errors.items()}
    assert len(serial.entries) == len(folders)
    assert sum(s is not None for s in serial.sources) >= 2 and len(serial.discovery_errors) >= 3


def test_zarr_stores_are_skipped_and_linked_folders_followed_once(tmp_path, ctw):
    """A store kept beside its CTs (its chunk files have no extension, like DICOM slices) is not
    scanned; a symlinked folder is scanned, a link loop only once."""
    root = tmp_path / "cts"
    root.mkdir()
    ctw.write_nifti(root / "a.nii.gz", DATA, np.eye(4))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ctw.write_nifti(elsewhere / "b.nii.gz", DATA, np.eye(4))
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(root, target_is_directory=True)
    for store in (root / "drr.zarr", root / "plain_store"):
        (store / "images" / "c" / "0").mkdir(parents=True)
        (store / "zarr.json").write_text("{}")
        (store / "images" / "c" / "0" / "0").write_bytes(b"\x01\x02" * 40)
    (root / "drr.zarr" / "zarr.json").unlink()  # named *.zarr is enough
    sources, errors = discover_cts(root, jobs=1)
    assert sorted(s.id for s in sources) == ["a", "b"] and errors == []


def test_a_folder_that_cannot_be_listed_is_an_error_not_a_gap(tmp_path, ctw, monkeypatch):
    import os

    root = tmp_path / "cts"
    locked = root / "locked"
    locked.mkdir(parents=True)
    ctw.write_nifti(root / "a.nii.gz", DATA, np.eye(4))
    ctw.write_nifti(locked / "b.nii.gz", DATA, np.eye(4))
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # what chmod 000 does to a non-root user
    sources, errors = discover_cts(root, jobs=1)
    assert [s.id for s in sources] == ["a"]
    assert [(type(e), e.path) for e in errors] == [(UnreadableFile, str(locked))]
    assert "cannot list this folder" in str(errors[0]) and "Permission denied" in str(errors[0])
