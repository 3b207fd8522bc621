"""The client's record of finished CTs in the store's per-CT table, written in batches.

Each zarr write of the per-CT table rewrites a whole chunk (up to 4,096 CTs), ~2-3 ms per array
and ~30 ms per CT over its ten columns; written per CT that would bound the client at ~30 CTs/s,
below what a multi-GPU node finishes. Results are therefore buffered and flushed every
FLUSH_EVERY results or FLUSH_SECONDS, and always at the end of a run or on Ctrl-C. A result is
only buffered after its rows are durably written (the task fsyncs them), so a crash loses at most
the statuses of the last unflushed CTs, which a resume then renders again.
"""

from __future__ import annotations

import time

from drrkit.pipeline.task import CTResult
from drrkit.store import CorpusWriter
from drrkit.store.schema import DONE, FAILED

FLUSH_EVERY = 32
FLUSH_SECONDS = 1.0


class StatusLog:
    def __init__(self, writer: CorpusWriter, every: int = FLUSH_EVERY, seconds: float = FLUSH_SECONDS):
        self.writer, self.every, self.seconds = writer, every, seconds
        self.pending: list[CTResult] = []
        self.last_flush = time.monotonic()

    def add(self, result: CTResult) -> None:
        self.pending.append(result)
        if len(self.pending) >= self.every or time.monotonic() - self.last_flush >= self.seconds:
            self.flush()

    def flush(self) -> None:
        """CT properties first, then statuses: a CT reads `done` only once its row is complete."""
        if self.pending:
            self.writer.record_cts([(r.ct_index, r.info) for r in self.pending if r.info])
            self.writer.set_statuses([(r.ct_index, DONE, "", "") if r.status == DONE
                                      else (r.ct_index, FAILED, r.error_kind, r.error) for r in self.pending])
            self.pending = []
        self.last_flush = time.monotonic()
