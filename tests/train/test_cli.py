"""`drrkit train / evaluate / probe / export-encoder` through Typer's CliRunner."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from cli.app import app
from drrkit.train.config import TrainConfig, load_train_config

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def fast_yaml(tmp_path_factory, fast_cfg):
    path = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    path.write_text(yaml.safe_dump(fast_cfg.to_dict()))
    return path


def test_shipped_configs_load_by_name():
    from pathlib import Path

    shipped = sorted(p.stem for p in (Path(__file__).parents[2] / "recipes").glob("train-*.yaml"))
    assert {"train-xwin-tiny", "train-xwin-tiny-mim", "train-xwin-tiny-phantoms", "train-xwin-small",
            "train-xwin-base"} <= set(shipped)
    for name in shipped:
        cfg = load_train_config(name)
        assert isinstance(cfg, TrainConfig)
    base = load_train_config("train-xwin-base")
    assert (base.model.size, base.model.img_size, base.data.batch_size, base.data.n_targets) == ("base", 224, 24, 5)
    assert base.data.target_yaw_step_deg == 15.0 and base.optim.epochs == 100
    mim = load_train_config("train-xwin-tiny-mim").loss
    assert mim.mim > 0 and mim.align == mim.domain == mim.cls == 0


def test_train_resume_evaluate_export_on_the_command_line(tmp_path, tiny_store, real_dir, fast_yaml):
    out = tmp_path / "run"
    result = run("train", "--config", fast_yaml, "--store", tiny_store, "--real-dir", real_dir, "--out", out,
                 "--steps", 3, "--stop-at", 2, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "stopped at step 2" in result.output
    result = run("train", "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "finished" in result.output and (out / "checkpoints" / "last.pt").is_file()
    assert "still holds 99% of its initial" in result.output  # 3 steps of EMA barely move f'
    result = run("export-encoder", out, "--out", tmp_path / "enc.safetensors", "--encoder", "context")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "enc.safetensors").stat().st_size > 10000
    result = run("evaluate", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "retrieval trained" in result.output and (out / "evaluation.json").is_file()
    assert "which CT, among them, under the same action" in result.output
    assert "target embeddings, mean cosine: one CT's views" in result.output
    assert "probes on the mean of the patch tokens" in result.output and "4x4 cells" in result.output
    assert json.loads((out / "evaluation.json").read_text())["step"] == 3
    # an earlier checkpoint: only the kept ones (keep_checkpoints 1 here), in a report of its own
    result = run("evaluate", out, "--device", "cpu", "--step", 2)
    assert result.exit_code == 2 and "no checkpoint of step 2; kept steps: [3]" in " ".join(result.output.split())
    result = run("evaluate", out, "--device", "cpu", "--step", 3)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "evaluation-step-0000003.json").read_text())["step"] == 3


def test_usage_errors_exit_2_and_name_the_problem(tmp_path, tiny_store, fast_yaml):
    cases = [
        (("train", "--out", tmp_path / "a", "--store", tiny_store), "--config is required"),
        (("train", "--config", "no-such-config", "--store", tiny_store, "--out", tmp_path / "b"), "no-such-config"),
        (("train", "--config", fast_yaml, "--store", tmp_path / "missing.zarr", "--out", tmp_path / "c"),
         "missing.zarr"),
        (("train", "--config", fast_yaml, "--store", tiny_store, "--real-dir", tmp_path, "--out", tmp_path / "d"),
         "no radiographs"),
        (("train", "--config", fast_yaml, "--out", tmp_path / "e"), "at least one --store"),
        (("train", "--out", tmp_path / "f", "--resume"), "nothing to resume"),
        (("evaluate", tmp_path / "not-a-run"), "not-a-run"),
        (("export-encoder", tmp_path / "not-a-run", "--out", tmp_path / "x.safetensors"), "no checkpoint"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)


def test_unknown_config_key_is_an_error(tmp_path, tiny_store, fast_cfg):
    data = fast_cfg.to_dict()
    data["optim"]["learning_rate"] = 1.0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run("train", "--config", path, "--store", tiny_store, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "learning_rate" in result.output
