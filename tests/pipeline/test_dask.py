"""Dask orchestration: local clusters, dying workers, a killed run that resumes, manifests."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from drrkit.geometry.recipe import Recipe
from drrkit.phantom import write_cohort
from drrkit.pipeline import ClusterSpec, RenderJob, render_corpus
from drrkit.pipeline.allocator import KEEP_MEMORY_ENV
from drrkit.pipeline.worker import render_ct_task
from drrkit.store import open_corpus

pytestmark = pytest.mark.timeout(240)

RECIPE = {"name": "mini", "detector": {"sdd": 1020, "height": 20, "width": 20, "delx": 20.0, "dely": 20.0},
          "poses": {"sampling": "grid", "rotation": {"z": {"start": -90, "stop": 90, "num": 4}},
                    "translation": {"y": 700}}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    write_cohort(d, n=6, shape=40, seed=11)
    good = (d / "phantom_0000.nii.gz").read_bytes()
    (d / "truncated.nii.gz").write_bytes(good[: len(good) // 2])
    return d


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """The same corpus rendered in-process: what every distributed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("ref") / "ref.zarr"
    render_corpus(job(cohort, out))
    return np.asarray(open_corpus(out).images[:])


def job(ct_dir, out, **kw):
    return RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=ct_dir, backend="diffdrr", device="cpu",
                     batch_size=2, **kw)


def statuses(out):
    return {row["id"]: row for row in open_corpus(out).ct_table()}


def test_two_workers_complete_good_cts_and_name_the_bad_one(cohort, reference, tmp_path):
    out = tmp_path / "c.zarr"
    report = render_corpus(job(cohort, out), cluster=ClusterSpec(workers=2, threads_per_worker=2))
    assert report.exit_code == 3 and report.cluster["workers"] == 2
    assert report.cluster["address"].startswith("tcp://127.0.0.1:")  # drrkit's schedulers bind to loopback
    table = statuses(out)
    assert table["truncated"]["status"] == "failed" and "truncated.nii.gz" in table["truncated"]["error"]
    assert sum(r["status"] == "done" for r in table.values()) == 6
    assert len({r.worker for r in report.results if r.status == "done"}) == 2  # both workers did work
    for r in report.results:  # where each done CT's render time went, on a worker: lock wait included
        if r.status == "done":
            parts = {k for k in r.timings if k.startswith("render_")}
            assert parts == {"render_setup", "render_wait", "render_prepare", "render_march"}, r.timings
            assert sum(r.timings[k] for k in parts) <= r.timings["render"] + 1e-6
    assert {"render_wait", "render_march"} <= set(report.phase_seconds())
    np.testing.assert_array_equal(np.asarray(open_corpus(out).images[:]), reference)
    # what the workers built, not just what was asked, in the report and the store
    assert report.backend["backend"] == "diffdrr" and report.backend["diffdrr_renderer"] == "siddon"
    assert open_corpus(out).attrs["run"]["renderer"] == report.backend
    # each worker's glibc malloc settings, as it started (drrkit.pipeline.allocator)
    assert list(report.cluster["malloc_environ"].values()) == [
        {k: os.environ.get(k, v) for k, v in KEEP_MEMORY_ENV.items()}] * 2
    # where start-up went: the steps in order, then the first CT; each worker built its renderer
    # while CTs were already submitted, so the first CTs waited for it (render_setup)
    steps = report.startup_seconds
    assert list(steps) == ["plan", "store", "cluster", "plugin"]
    assert 0 < steps["plan"] <= steps["store"] <= steps["cluster"] <= steps["plugin"]
    assert steps["plugin"] < report.first_ct_after_seconds() < report.wall_seconds
    setup = report.cluster["renderer_setup_seconds"]
    assert len(setup) == 2 and all(0 < s < report.first_ct_after_seconds() for s in setup.values())
    assert 0 < report.shutdown_seconds < report.wall_seconds - report.first_ct_after_seconds()
    assert report.to_json()["startup_seconds"] == steps


def test_resolved_renderer_of_mixed_workers():
    from drrkit.pipeline.run import resolved_renderer

    asked = {"backend": "auto", "device": "auto"}
    gpu, cpu = {"backend": "fast", "device": "cuda"}, {"backend": "fast", "device": "cpu"}
    assert resolved_renderer({}, asked) == asked
    assert resolved_renderer({"a": gpu, "b": dict(gpu)}, asked) == gpu
    assert resolved_renderer({"a": gpu, "b": cpu}, asked) == {"backend": "mixed", "workers": {"a": gpu, "b": cpu}}


def test_a_worker_without_a_renderer_is_described_as_such():
    from types import SimpleNamespace

    from drrkit.pipeline.worker import describe_renderer

    import asyncio

    assert asyncio.run(describe_renderer("p", dask_worker=SimpleNamespace()))["backend"] == "none"


def test_a_worker_killed_mid_run_is_replaced_and_its_ct_retried(cohort, reference, tmp_path):
    out = tmp_path / "c.zarr"
    killed = []

    # Kill a worker process (SIGKILL) as soon as the first CT comes back, while others are in flight.
    def on_result(result):
        if not killed:
            pids = _worker_pids()
            assert len(pids) == 2, pids
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    report = render_corpus(job(cohort, out), cluster=ClusterSpec(workers=2, retries=2), on_result=on_result)
    assert killed and report.exit_code == 3  # only the truncated file fails
    assert sum(r["status"] == "done" for r in statuses(out).values()) == 6
    np.testing.assert_array_equal(np.asarray(open_corpus(out).images[:]), reference)


def _worker_pids():
    """PIDs of the Dask worker processes: children of this process (the nannies run in it),
    except multiprocessing's resource tracker."""
    import psutil

    kids = psutil.Process().children(recursive=False)
    return [k.pid for k in kids if "resource_tracker" not in " ".join(k.cmdline())]


def kill_on_phantom_0003(ct_index, source, plugin_name):
    """Fault injection: this CT kills whichever worker renders it."""
    if source.id == "phantom_0003":
        os._exit(1)
    return render_ct_task(ct_index, source, plugin_name)


def test_a_ct_that_keeps_killing_workers_is_marked_failed(cohort, tmp_path):
    out = tmp_path / "c.zarr"
    report = render_corpus(job(cohort, out), cluster=ClusterSpec(workers=2, retries=1), task=kill_on_phantom_0003)
    table = statuses(out)
    assert table["phantom_0003"]["status"] == "failed"
    assert table["phantom_0003"]["error_kind"] == "killed_worker"
    assert sum(r["status"] == "done" for r in table.values()) == 5
    assert report.exit_code == 3


def test_sigkill_of_the_whole_run_then_resume_gives_identical_images(cohort, reference, tmp_path):
    out = tmp_path / "c.zarr"
    recipe = tmp_path / "mini.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(RECIPE))
    cmd = [sys.executable, "-m", "drrkit", "render", "--ct-dir", str(cohort), "--poses", str(recipe),
           "--out", str(out), "--device", "cpu", "--backend", "diffdrr", "--batch-size", "2", "--workers", "2"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until at least one CT is recorded, then kill everything
        if out.exists() and (out / "cts" / "status").exists():
            try:
                if any(r["status"] == "done" for r in statuses(out).values()):
                    break
            except Exception:
                pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = statuses(out)
    assert 0 < sum(r["status"] == "done" for r in partial.values()) < 6
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert again.returncode == 3, again.stdout + again.stderr
    table = statuses(out)
    assert sum(r["status"] == "done" for r in table.values()) == 6
    np.testing.assert_array_equal(np.asarray(open_corpus(out).images[:]), reference)
    assert not list(out.rglob("*.partial"))


def test_manifest_carries_columns_into_the_store(cohort, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,id,report\n"
                        f"{cohort / 'phantom_0001.nii.gz'},case_a,\"no acute findings\"\n"
                        f"{cohort / 'phantom_0002.nii.gz'},,\"nodule, right upper lobe\"\n"
                        f"{cohort / 'missing.nii.gz'},gone,whatever\n")
    out = tmp_path / "m.zarr"
    report = render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, manifest=manifest, device="cpu",
                                     backend="diffdrr"))
    assert report.exit_code == 3
    corpus = open_corpus(out)
    ids = list(corpus.root["cts/id"][:])
    assert ids[:2] == ["case_a", "phantom_0002"] and "gone" in ids
    reports = list(corpus.root["cts/extra/report"][:])
    assert reports[ids.index("phantom_0002")] == "nodule, right upper lobe"
    assert statuses(out)["gone"]["status"] == "failed"


@pytest.mark.gpu
def test_several_workers_share_one_gpu_and_match_an_in_process_run(cohort, tmp_path):
    """--workers 3 on one GPU: three processes pinned to GPU 0, more than one used, images equal to
    one process rendering the same CTs with the same (fast, CUDA) renderer (to float32 rounding:
    the tiles chosen by the autotuner may differ between runs)."""
    fast = dict(backend="auto", device="cuda", batch_size=None)
    ref_out, out = tmp_path / "ref.zarr", tmp_path / "shared.zarr"
    render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=ref_out, ct_dir=cohort, **fast))
    report = render_corpus(RenderJob(recipe=Recipe.from_dict(RECIPE), out=out, ct_dir=cohort, **fast),
                           cluster=ClusterSpec(workers=3, gpus=1, threads_per_worker=1))
    assert report.exit_code == 3 and report.cluster["workers"] == 3
    assert {r.worker for r in report.results if r.status == "done"} <= {"gpu0", "gpu0.1", "gpu0.2"}
    assert len({r.worker for r in report.results if r.status == "done"}) >= 2
    np.testing.assert_allclose(np.asarray(open_corpus(out).images[:]), np.asarray(open_corpus(ref_out).images[:]),
                               rtol=1e-5, atol=1e-5)
