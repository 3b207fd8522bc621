"""The client's batched bookkeeping: nothing is lost, nothing is marked done early."""

import numpy as np

from drrkit.geometry.recipe import Recipe
from drrkit.pipeline.bookkeeping import StatusLog
from drrkit.pipeline.task import CTResult
from drrkit.store import CTEntry, create_or_open, open_corpus
from drrkit.store.schema import DONE, FAILED, PENDING

RECIPE = {"name": "t", "detector": {"sdd": 1000, "height": 6, "width": 5, "delx": 2.0, "dely": 2.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": 0, "stop": 90, "num": 3}},
                    "translation": {"y": 600}}}


def info(k):
    return {"shape": [4, 5, 6 + k], "spacing": [1.0, 1.5, 2.0], "affine": np.eye(4).tolist(),
            "hu_min": -1000.0 - k, "hu_max": 1500.0, "checksum": f"sha256f:{k}", "labels": ""}


def table(path):
    return open_corpus(path).ct_table()


def test_results_are_written_in_batches_and_flushed_at_the_end(tmp_path):
    path = tmp_path / "s.zarr"
    writer = create_or_open(path, Recipe.from_dict(RECIPE), [CTEntry(f"ct{k}", f"/d/{k}", "nifti") for k in range(7)])
    log = StatusLog(writer, every=3, seconds=1e9)
    done = [CTResult(k, f"ct{k}", DONE, info=info(k), views=3) for k in (4, 0, 6, 2)]
    failed = CTResult(5, "ct5", FAILED, "unreadable", "/d/5: truncated", info=None)
    log.add(done[0])
    log.add(done[1])
    assert [r["status"] for r in table(path)] == [PENDING] * 7  # buffered, nothing written yet
    log.add(failed)  # third result: one flush writes all three
    rows = table(path)
    assert [rows[k]["status"] for k in (0, 4, 5)] == [DONE, DONE, FAILED]
    assert rows[5]["error_kind"] == "unreadable" and "truncated" in rows[5]["error"]
    assert rows[4]["shape"] == [4, 5, 10] and rows[4]["hu_min"] == -1004.0 and rows[4]["checksum"] == "sha256f:4"
    log.add(done[2])
    log.add(done[3])
    assert table(path)[6]["status"] == PENDING
    log.flush()
    rows = table(path)
    assert [r["status"] for r in rows] == [DONE, PENDING, DONE, PENDING, DONE, FAILED, DONE]
    assert rows[2]["shape"] == [4, 5, 8] and rows[6]["checksum"] == "sha256f:6"


def test_a_slow_trickle_of_results_is_flushed_by_time(tmp_path):
    path = tmp_path / "s.zarr"
    writer = create_or_open(path, Recipe.from_dict(RECIPE), [CTEntry("a", "/d/a", "nifti")])
    log = StatusLog(writer, every=100, seconds=0.0)
    log.add(CTResult(0, "a", DONE, info=info(0), views=3))
    assert table(path)[0]["status"] == DONE
