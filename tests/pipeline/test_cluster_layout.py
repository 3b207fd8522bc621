"""Local cluster layout: several worker processes per GPU, round-robin, threads sharing the cores."""

import pytest

from drrkit.pipeline import ClusterSpec
from drrkit.pipeline import cluster
from drrkit.pipeline.report import RunReport
from drrkit.pipeline.task import CTResult


@pytest.fixture
def sixteen_cores(monkeypatch):
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 16)


def test_gpu_workers_round_robin_over_gpus(sixteen_cores):
    layout = cluster.worker_layout(ClusterSpec(workers=5, gpus=2))
    assert [name for name, _, _ in layout] == ["gpu0", "gpu1", "gpu0.1", "gpu1.1", "gpu0.2"]
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env, _ in layout] == ["0", "1", "0", "1", "0"]
    assert {env["DRRKIT_TORCH_THREADS"] for _, env, _ in layout} == {"3"}  # 16 cores // 5
    assert {threads for _, _, threads in layout} == {3}


def test_one_worker_per_gpu_at_least_and_cpu_workers_see_no_gpu(sixteen_cores):
    assert len(cluster.worker_layout(ClusterSpec(workers=1, gpus=2))) == 2
    cpu = cluster.worker_layout(ClusterSpec(workers=2))
    assert [(n, e["CUDA_VISIBLE_DEVICES"], t) for n, e, t in cpu] == [("cpu0", "", 2), ("cpu1", "", 2)]
    pinned = cluster.worker_layout(ClusterSpec(workers=8, gpus=1, threads_per_worker=3))
    assert {t for _, _, t in pinned} == {3}


def test_auto_workers_half_the_cores_bounded_by_gpu_memory(sixteen_cores):
    assert cluster.auto_workers(0) == 8
    assert cluster.auto_workers(1, gpu_memory_gib=80) == 8
    assert cluster.auto_workers(3, gpu_memory_gib=80) == 6  # 2 per GPU, evenly
    assert cluster.auto_workers(1, gpu_memory_gib=12) == 3  # 12 GiB holds 3 workers
    assert cluster.auto_workers(16, gpu_memory_gib=80) == 16  # never below one per GPU


def test_steady_rate_counts_views_between_first_and_last_finished_ct():
    report = RunReport("s.zarr", "xwin", {}, n_cts=4, views_per_ct=10, started=95.0)
    report.results = [CTResult(0, "a", "done", views=10, finished=100.0),
                      CTResult(1, "b", "failed", finished=0.0),
                      CTResult(2, "c", "done", views=10, finished=102.0),
                      CTResult(3, "d", "done", views=10, finished=104.0)]
    assert report.steady_views_per_second() == pytest.approx(20 / 4.0)
    assert report.to_json()["steady_views_per_second"] == pytest.approx(5.0)
    assert report.first_ct_after_seconds() == pytest.approx(5.0)
    report.results = report.results[:2]
    assert report.steady_views_per_second() is None


def test_middle_half_rate_leaves_out_the_burst_after_the_first_ct_and_the_tail():
    # 16 CTs in flight finish together at 10-11 s, then one every second, the last two slowly
    finished = [10.0 + 0.01 * k for k in range(4)] + [11.0 + k for k in range(10)] + [30.0, 40.0]
    report = RunReport("s.zarr", "xwin", {}, n_cts=len(finished), views_per_ct=10, started=0.0)
    report.results = [CTResult(k, f"ct{k}", "done", views=10, finished=t) for k, t in enumerate(finished)]
    lo, hi = finished[4], finished[12]  # the 25th and 75th percentile CTs of 16
    assert report.middle_half_views_per_second() == pytest.approx(8 * 10 / (hi - lo))  # one CT a second
    assert report.steady_views_per_second() == pytest.approx(15 * 10 / 30.0)  # first → last: 5 views/s
    assert report.to_json()["middle_half_views_per_second"] == pytest.approx(10.0)
    report.results = report.results[:7]
    assert report.middle_half_views_per_second() is None
