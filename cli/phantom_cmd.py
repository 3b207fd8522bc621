"""`drrkit phantom --n N --out DIR --shape S --seed K`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("phantom")(phantom)


def phantom(
    out: Path = typer.Option(..., "--out", help="Folder for <id>.nii.gz, labels/<id>.nii.gz, phantoms.csv."),
    n: int = typer.Option(4, "--n", help="Number of phantom CTs."),
    shape: int = typer.Option(64, "--shape", help="Voxels per side (cubic grid)."),
    seed: int = typer.Option(0, "--seed", help="Cohort seed; case k is the same whatever --n is."),
    nodule_prob: float = typer.Option(0.5, "--nodule-prob", help="Chance that a case has a lung nodule."),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="Processes writing cases (default: one per CPU "
                                       "core for cohorts of 8+ phantoms at 128^3 or the like, else 1). The "
                                       "cohort is the same whatever --jobs."),
) -> None:
    """Write a cohort of synthetic chest CTs (HU) with label maps and ground truth."""
    from cli.app import console, usage_error
    from drrkit.phantom import write_cohort
    from drrkit.phantom.cohort import auto_jobs

    if n < 1 or shape < 8 or not 0.0 <= nodule_prob <= 1.0 or (jobs is not None and jobs < 1):
        usage_error("need --n >= 1, --shape >= 8, 0 <= --nodule-prob <= 1 and --jobs >= 1")
    rows = write_cohort(out, n=n, shape=shape, seed=seed, nodule_prob=nodule_prob, jobs=jobs or auto_jobs(n, shape))
    with_nodule = sum(bool(r["nodule_present"]) for r in rows)
    console.print(f"wrote {len(rows)} phantom CT(s) ({with_nodule} with a nodule) to {out}; "
                  f"ground truth in {Path(out) / 'phantoms.csv'}")
