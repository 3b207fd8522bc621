"""Corpus processes keep freed memory: the glibc settings do what they are for (a second large
block in a task thread faults in no new pages); a user's own settings win. That spawned workers
get them is checked on a real run in test_dask.py."""

import json
import os
import platform
import subprocess
import sys

import pytest

from drrkit.pipeline.allocator import KEEP_MEMORY_ENV, worker_environ

pytestmark = pytest.mark.timeout(120)

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc malloc settings")

# In a worker thread (as Dask runs tasks): allocate, touch and free 256 MB twice; print the minor
# page faults of the second round. Without the settings glibc mmap()s each block afresh.
_PROBE = r"""
import json, resource, sys, threading
import numpy as np
from drrkit.pipeline.allocator import keep_freed_memory

N = 256 << 20
def rounds(out):
    for k in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = np.frombuffer(bytearray(N), dtype=np.uint8)
        block[::4096] = 1  # touch every page
        del block
        out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
kept = keep_freed_memory() if sys.argv[1] == "mallopt" else None
faults = []
if sys.argv[1] == "mallopt":
    rounds(faults)  # mallopt reaches the main thread's heap only
else:
    t = threading.Thread(target=rounds, args=(faults,)); t.start(); t.join()
print(json.dumps({"faults": faults, "kept": kept}))
"""


def _faults(mode: str, extra_env: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KEEP_MEMORY_ENV}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@glibc
def test_settings_let_a_task_thread_reuse_freed_pages():
    pages = (256 << 20) // 4096
    default = _faults("thread", {})
    kept = _faults("thread", KEEP_MEMORY_ENV)
    assert default["faults"][1] > pages // 2  # the control: glibc maps the block afresh
    assert kept["faults"][1] < pages // 20, (kept, default)


@glibc
def test_mallopt_keeps_freed_memory_of_a_running_process():
    pages = (256 << 20) // 4096
    result = _faults("mallopt", {})
    assert result["kept"] is True
    assert result["faults"][1] < pages // 20, result


def test_user_settings_win():
    assert worker_environ({"MALLOC_ARENA_MAX": "4"}) == {**KEEP_MEMORY_ENV, "MALLOC_ARENA_MAX": "4"}
    assert worker_environ({}) == KEEP_MEMORY_ENV
