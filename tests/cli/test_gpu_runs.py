"""benchmarks/gpu_runs.sh holds the device-machine runs, which get 15 minutes a session at most: a
renamed option or a missing test folder there would cost a whole device call. Every command the
script runs is parsed here as that machine would parse it (the drrkit CLI's options and recipe
names, each benchmark's argparse options, pytest's paths) without running it."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import typer.main

from cli.app import app
from drrkit.config import ConfigError
from drrkit.geometry.recipe import load_recipe
from drrkit.train.config import load_train_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_runs.sh"
# the values the script's variables take on the device machine ($n: PROBE_CTS's default)
VARS = {"W": "/gpu-work", "R": "/results", "T": "h200", "n": "2048"}


def _steps() -> list[tuple[str, str, list[str]]]:
    """(part, step name, argv) of every `step` line, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text())
    steps, part = [], None
    for line in text.splitlines():
        if m := re.match(r"^([a-z0-9-]+)\)", line):
            part = m.group(1)
        words = line.split("#", 1)[0].strip()
        if part and words.startswith("step "):
            expanded = re.sub(r"\$\{?(\w+)(?::-[^}]*)?\}?", lambda v: VARS[v.group(1)], words)
            _, name, limit, *argv = shlex.split(expanded)
            assert limit.isdigit(), (part, name)
            steps.append((part, name, argv))
    return steps


STEPS = _steps()


def test_every_part_of_the_usage_line_has_steps():
    usage = re.search(r"gpu_runs\.sh ([a-z|-]+)", SCRIPT.read_text()).group(1).split("|")
    assert sorted({part for part, _, _ in STEPS}) == sorted(usage)


class _Parsed(Exception):
    pass


def _parse_benchmark(script: str, argv: list[str], monkeypatch) -> argparse.Namespace:
    """Run the benchmark's own argparse on argv: its main() is stopped right after parsing."""
    spec = importlib.util.spec_from_file_location(f"_gpu_runs_{Path(script).stem}", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        if args is None or list(args) == argv:  # the script's own parser, not a nested one
            raise _Parsed(real(self, argv, namespace))
        return real(self, args, namespace)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(_Parsed) as parsed:
        module.main(argv) if "argv" in module.main.__code__.co_varnames else module.main()
    return parsed.value.args[0]


def _parse_drrkit(argv: list[str]) -> None:
    """The drrkit CLI's own option parsing (types, choices, required options), not the command."""
    group = typer.main.get_command(app)
    name, *rest = argv  # the script passes no group options
    command = group.get_command(group.make_context("drrkit", [name]), name)
    assert command is not None, f"no drrkit command {name!r}"
    command.make_context(name, list(rest))
    # named recipes and training configs load (ConfigError otherwise)
    for flag, load in (("--poses", load_recipe), ("--config", load_train_config)):
        if flag in rest:
            load(rest[rest.index(flag) + 1])


@pytest.mark.parametrize("part,name,argv", STEPS, ids=[f"{p}:{n}" for p, n, _ in STEPS])
def test_step_parses_as_the_device_machine_would(part, name, argv, monkeypatch):
    assert argv[0] == "python3", "the GPU image runs python3 with no drrkit installed"
    args = argv[1:]
    if args[:2] == ["-m", "pytest"]:
        paths = [a for a in args[2:] if not a.startswith("-") and a not in ("gpu", "no:cacheprovider")]
        assert paths and all((ROOT / p.split("::")[0]).exists() for p in paths), paths
    elif args[:2] == ["-m", "drrkit"]:
        _parse_drrkit(args[2:])
    else:
        assert args[0].startswith("benchmarks/") and (ROOT / args[0]).is_file(), args[0]
        _parse_benchmark(args[0], args[1:], monkeypatch)
    # results are written under $R, named after the GPU
    outs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "--report", "--figure")]
    for out in outs:
        assert out.startswith((VARS["R"], VARS["W"])), out


def test_a_misspelt_option_is_caught(monkeypatch):
    with pytest.raises(Exception, match="No such option"):
        _parse_drrkit(["render", "--poses", "xwin", "--hieght", "64", "--out", "x.zarr"])
    with pytest.raises(SystemExit):
        _parse_benchmark("benchmarks/bench_corpus.py", ["--n-ct", "4"], monkeypatch)
    with pytest.raises(ConfigError):
        _parse_drrkit(["train", "--config", "train-xwin-nonesuch", "--store", "s.zarr", "--out", "r"])
