"""Two-process data-parallel training with torchrun on CPU (gloo): ranks split each global batch,
rank 0 alone writes the run folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drrkit.train.metrics import MetricsLog


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path, tiny_store, fast_cfg):
    cfg_path = tmp_path / "fast.yaml"
    cfg_path.write_text(yaml.safe_dump(fast_cfg.to_dict()))
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "drrkit", "train", "--config", str(cfg_path),
           "--store", str(tiny_store), "--out", str(out), "--steps", "2", "--device", "cpu"]
    result = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["schedule"]["global_batch"] == 2 * fast_cfg.data.batch_size
    records = MetricsLog(out / "metrics.jsonl").read()
    assert [r["step"] for r in records] == [1, 2]  # one writer
    assert (out / "checkpoints" / "last.pt").is_file()
