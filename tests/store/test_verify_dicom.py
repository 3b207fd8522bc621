"""`drrkit verify` re-renders a DICOM series from its own slices when its folder holds more."""

from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.uid import generate_uid

from drrkit.geometry.recipe import Recipe
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import open_corpus
from drrkit.store.verify import verify_store

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 16, "width": 16, "delx": 1.0, "dely": 1.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 2}},
                    "translation": {"y": 700}}}


def _ct5n() -> list[Path]:
    base = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"
    folder = next(p for p in base.rglob("CT5N") if p.is_dir())
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.timeout(300)
def test_two_series_in_one_folder_each_rerender_as_stored(tmp_path):
    study = tmp_path / "cts" / "study"
    study.mkdir(parents=True)
    uid = generate_uid()
    for k, path in enumerate(_ct5n()):
        ds = pydicom.dcmread(path)
        ds.save_as(study / f"a{k:02d}.dcm")
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()  # a second series, other content
        pixels = ds.pixel_array.copy()
        pixels[:, : pixels.shape[1] // 2] = pixels.min()  # the patient's right half: air
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.save_as(study / f"b{k:02d}.dcm")
    out = tmp_path / "s.zarr"
    report = render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=tmp_path / "cts",
                                     device="cpu", backend="diffdrr"))
    assert report.exit_code == 0
    corpus = open_corpus(out)
    assert corpus.n_cts == 2 and len({str(s) for s in corpus.root["cts/source"][:]}) == 1  # one folder
    images = np.asarray(corpus.images[:])
    assert np.abs(images[:2] - images[2:]).sum() > 0.1 * np.abs(images[:2]).sum()  # two different CTs
    result = verify_store(corpus, rerender=4)
    checks = {c.name: c for c in result.checks}
    assert checks["rerender"].ok, checks["rerender"].detail
    assert max(r["rel_l1"] for r in result.rerendered) < 1e-4
