"""`drrkit phantom --n N --out DIR --shape S --seed K`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("phantom")(phantom)


def phantom(
    out: Path = typer.Option(..., "--out", help="Folder for <id>.nii.gz, labels/<id>.nii.gz, phantoms.csv."),
    n: int = typer.Option(4, "--n", help="Number of phantom CTs."),
    shape: int = typer.Option(64, "--shape", help="Voxels per side (cubic grid)."),
    seed: int = typer.Option(0, "--seed", help="Cohort seed; case k is the same whatever --n is."),
    nodule_prob: float = typer.Option(0.5, "--nodule-prob", help="Chance that a case has a lung nodule."),
) -> None:
    """Write a cohort of synthetic chest CTs (HU) with label maps and ground truth."""
    from cli.app import console, usage_error
    from drrkit.phantom import write_cohort

    if n < 1 or shape < 8 or not 0.0 <= nodule_prob <= 1.0:
        usage_error("need --n >= 1, --shape >= 8 and 0 <= --nodule-prob <= 1")
    rows = write_cohort(out, n=n, shape=shape, seed=seed, nodule_prob=nodule_prob)
    with_nodule = sum(bool(r["nodule_present"]) for r in rows)
    console.print(f"wrote {len(rows)} phantom CT(s) ({with_nodule} with a nodule) to {out}; "
                  f"ground truth in {Path(out) / 'phantoms.csv'}")
