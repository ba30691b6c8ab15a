"""`postergenre benchmark` (being written; see the issue tracker)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("benchmark", help="(not available yet)")
    def _cmd() -> None:
        typer.echo("postergenre benchmark is not available yet in this build", err=True)
        raise typer.Exit(1)
