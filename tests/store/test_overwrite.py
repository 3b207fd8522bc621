"""--overwrite replaces a drrkit store and nothing else: an --out naming the CT folder (or any
folder of the user's) is refused and left as it was."""

import pytest

from drrkit.geometry.recipe import Recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import RenderJob, render_corpus
from drrkit.store import StoreError, open_corpus

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 8, "width": 8, "delx": 48.0, "dely": 48.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 0, "num": 1}},
                    "translation": {"y": 700}}}


def job(ct_dir, out, **kw):
    return RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=ct_dir, device="cpu", **kw)


def rendered(tmp_path, n: int):
    """A folder of n phantoms and the store rendered from it."""
    cts, out = tmp_path / "cts", tmp_path / "s.zarr"
    write_cohort(cts, n=n, shape=16, seed=1)
    assert render_corpus(job(cts, out)).exit_code == 0
    return cts, out


def test_overwrite_refuses_the_ct_folder_and_deletes_nothing(tmp_path):
    cts = tmp_path / "cts"
    write_cohort(cts, n=2, shape=16, seed=1)
    before = sorted(p.relative_to(cts) for p in cts.rglob("*"))
    with pytest.raises(StoreError, match="not one .*nothing was deleted"):
        render_corpus(job(cts, cts, overwrite=True))
    assert sorted(p.relative_to(cts) for p in cts.rglob("*")) == before
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="notes.txt"):
        render_corpus(job(cts, notes, overwrite=True))
    assert (notes / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_a_store_or_fills_an_empty_folder(tmp_path):
    cts, out = rendered(tmp_path, n=2)
    one = tmp_path / "one"
    write_cohort(one, n=1, shape=16, seed=1)
    assert render_corpus(job(one, out, overwrite=True)).exit_code == 0
    assert open_corpus(out).n_cts == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert render_corpus(job(one, empty, overwrite=True)).exit_code == 0


def test_an_empty_ct_dir_is_refused_and_an_existing_store_kept(tmp_path):
    cts, out = rendered(tmp_path, n=1)
    empty = tmp_path / "unmounted"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no CT found"):
        render_corpus(job(empty, out, overwrite=True))
    assert open_corpus(out).n_cts == 1
