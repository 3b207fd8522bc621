"""`drrkit` commands. Heavy imports (torch, diffdrr, zarr) happen inside commands so that
`drrkit --help` is instant. Exit codes: 0 done, 1 fatal, 2 usage, 3 some inputs failed."""

from __future__ import annotations

import typer
from rich.console import Console

from drrkit import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Simulated chest X-ray corpora (DRRs) from CT.")
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"drrkit {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                              help="Print the version and exit.")) -> None:
    """drrkit: render CT collections into DRR corpora, inspect them, make phantoms."""


def usage_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def fatal_error(message: str) -> None:
    err_console.print(f"[bold red]fatal:[/] {message}")
    raise typer.Exit(1)


from cli import inspect_cmd, phantom_cmd, render_cmd  # noqa: E402  (registers commands)

render_cmd.register(app)
inspect_cmd.register(app)
phantom_cmd.register(app)

from cli import export_cmd, verify_cmd  # noqa: E402

export_cmd.register(app)
verify_cmd.register(app)

from cli import evaluate_cmd, train_cmd  # noqa: E402

train_cmd.register(app)
evaluate_cmd.register(app)

from cli import reconstruct_cmd  # noqa: E402

reconstruct_cmd.register(app)


def main() -> None:
    app()
