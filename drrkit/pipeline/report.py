"""The run report: per-CT outcomes and per-phase timings, written as JSON beside the store."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from drrkit.pipeline.task import CTResult

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclass
class RunReport:
    store: str
    recipe: str
    backend: dict
    n_cts: int
    views_per_ct: int
    started: float = 0.0  # wall-clock time (epoch seconds) the run began
    skipped_done: int = 0
    # ids of CTs done in an earlier run whose source files changed since: rendered again
    changed_sources: list[str] = field(default_factory=list)
    # done CTs whose input is unreadable at this run (id → reason): kept as done, not rendered again
    missing_sources: dict[str, str] = field(default_factory=dict)
    # when the store's done CTs were rendered by more than one renderer (a resume on another
    # device or backend, a mixed cluster): each renderer's description and its number of CTs
    mixed_renderers: list[dict] = field(default_factory=list)
    results: list[CTResult] = field(default_factory=list)
    wall_seconds: float = 0.0
    peak_memory_bytes: int | None = None
    cluster: dict | None = None
    # seconds from the start of the run to the end of each start-up step, in order: plan (inputs
    # found, headers read), store (created or opened; in-process runs build their renderer just
    # before), and on a cluster: cluster (scheduler and
    # worker processes up), plugin (every worker holds the store and has started building its
    # renderer; CT tasks are submitted from here and decode while renderers build)
    startup_seconds: dict = field(default_factory=dict)
    # on a cluster: seconds from the last CT's result to the end of the run (the workers'
    # renderer descriptions, the last statuses flushed, the cluster closing)
    shutdown_seconds: float | None = None
    interrupted: bool = False
    machine: dict = field(default_factory=lambda: {"python": platform.python_version(),
                                                   "platform": platform.platform(),
                                                   "processor": platform.processor()})

    @property
    def failed(self) -> list[CTResult]:
        return [r for r in self.results if r.status != "done"]

    @property
    def views_rendered(self) -> int:
        return sum(r.views for r in self.results)

    def phase_seconds(self) -> dict:
        totals: dict[str, float] = {}
        for r in self.results:
            for phase, secs in r.timings.items():
                totals[phase] = totals.get(phase, 0.0) + secs
        return totals

    def steady_views_per_second(self) -> float | None:
        """Views per second between the first and the last CT finished: the rate a long corpus
        settles at, without process start-up, cluster start and first-kernel compilation (which
        whole-run views/s includes). None with fewer than 2 finished CTs."""
        done = self._finished()
        if len(done) < 2 or done[-1].finished <= done[0].finished:
            return None
        return sum(r.views for r in done[1:]) / (done[-1].finished - done[0].finished)

    def middle_half_views_per_second(self) -> float | None:
        """Views per second over the middle half of the finished CTs (from the one at the 25th
        percentile of finish times to the one at the 75th): the steady rate without its two biases.
        Between first and last, CTs that ran alongside the first one finish just after it, most of
        their work done before the window opens (too high), and the last ones finish as the
        cluster empties (too low). None with fewer than 8 finished CTs."""
        done = self._finished()
        if len(done) < 8:
            return None
        lo, hi = len(done) // 4, (3 * len(done)) // 4
        if done[hi].finished <= done[lo].finished:
            return None
        return sum(r.views for r in done[lo + 1:hi + 1]) / (done[hi].finished - done[lo].finished)

    def first_ct_after_seconds(self) -> float | None:
        """Seconds from the start of the run to the first CT finished: start-up (imports, cluster,
        CUDA contexts, kernel compilation) plus one CT. None when none finished."""
        done = self._finished()
        return done[0].finished - self.started if done and self.started else None

    def _finished(self) -> list[CTResult]:
        return sorted((r for r in self.results if r.status == "done" and r.finished), key=lambda r: r.finished)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def to_json(self) -> dict:
        data = asdict(self)
        data["results"] = [{k: v for k, v in asdict(r).items() if k != "info"} | _info_summary(r)
                           for r in self.results]
        data.update(views_rendered=self.views_rendered, phase_seconds=self.phase_seconds(),
                    failed=[r.ct_id for r in self.failed], exit_code=self.exit_code,
                    views_per_second=self.views_rendered / self.wall_seconds if self.wall_seconds else None,
                    steady_views_per_second=self.steady_views_per_second(),
                    middle_half_views_per_second=self.middle_half_views_per_second(),
                    first_ct_after_seconds=self.first_ct_after_seconds())
        return data

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2))
        return path


def _info_summary(r: CTResult) -> dict:
    if not r.info:
        return {}
    return {"shape": r.info["shape"], "spacing": r.info["spacing"],
            **({"warnings": r.info["warnings"]} if r.info.get("warnings") else {})}


def report_path(store: str | Path) -> Path:
    store = Path(store)
    return store.with_name(store.name + ".report.json")
