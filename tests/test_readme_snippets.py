"""The README's store-reading snippets, run as written against a store rendered here: the
re-rendering promise is only as good as the recipe users copy."""

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(marker: str) -> str:
    text = README.read_text()
    start = text.index(marker)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


@pytest.fixture(scope="module")
def xwin_store(tmp_path_factory):
    from drrkit.geometry.recipe import load_recipe
    from drrkit.pipeline import RenderJob, render_corpus

    out = tmp_path_factory.mktemp("readme") / "xwin.zarr"
    report = render_corpus(RenderJob(recipe=load_recipe("xwin").with_height(24), out=out, device="cpu"))
    assert report.exit_code == 0
    return out


@pytest.mark.timeout(300)
def test_readme_snippets_rerender_a_stored_image(xwin_store, monkeypatch):
    monkeypatch.chdir(xwin_store.parent)  # the snippets name "xwin.zarr"
    ours = {}
    exec(_block_after("Reading and re-rendering:"), ours)
    assert ours["img"].shape == (24, 24) and len(ours["same"]) == 1
    plain = {}
    exec(_block_after("spelled out with DiffDRR only:"), plain)
    stored = np.asarray(ours["img"], dtype=np.float64)
    again = plain["img"].squeeze().detach().cpu().numpy().astype(np.float64)
    assert again.shape == stored.shape
    rel_l1 = np.abs(again - stored).sum() / np.abs(stored).sum()
    assert rel_l1 < 5e-3, rel_l1
    shifted = np.abs(np.roll(again, 1, axis=1) - stored).sum() / np.abs(stored).sum()
    assert shifted > 4 * rel_l1  # the comparison tells a wrong image apart


def test_the_store_pins_diffdrr_s_projector_for_rerendering(xwin_store):
    """`detector` holds DRR(...) keyword arguments including the projector and its voxel shift,
    so a DiffDRR with other defaults still re-renders what the store holds."""
    from drrkit.geometry.detector import Detector
    from drrkit.store import open_corpus

    corpus = open_corpus(xwin_store)
    assert {k: corpus.attrs["detector"][k] for k in ("renderer", "voxel_shift")} == {"renderer": "siddon",
                                                                                    "voxel_shift": 0.5}
    assert isinstance(corpus.detector, Detector) and corpus.detector.height == 24
