"""Running corpus jobs: planning, per-CT tasks, the client loop, run reports."""

from drrkit.pipeline.cluster import ClusterSpec
from drrkit.pipeline.report import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, RunReport
from drrkit.pipeline.run import DryRun, RenderJob, dry_run, render_corpus

__all__ = ["ClusterSpec", "EXIT_INTERRUPTED", "RenderJob", "DryRun", "RunReport", "dry_run", "render_corpus",
           "EXIT_OK", "EXIT_FATAL", "EXIT_USAGE", "EXIT_SOME_FAILED"]
