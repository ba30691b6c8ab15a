"""The ``postergenre`` command. One module per command; this file only wires them.

Errors: every :class:`~postergenre.errors.PosterGenreError` is caught here, in one place,
and becomes one line on stderr and exit code 1. Usage errors exit 2 (Typer/Click).
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from postergenre import __version__
from postergenre.errors import PosterGenreError

app = typer.Typer(
    name="postergenre",
    help=(
        "Read movie posters and say which genres the movies belong to, "
        "with the cues behind each guess."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

#: Each module has ``register(app)``; importing them must not import torch & co.
COMMAND_MODULES: tuple[str, ...] = (
    "analyze",
    "extract",
    "store",
    "train",
    "evaluate",
    "predict",
    "benchmark",
    "finetune",
    "weights",
    "serve",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"postergenre {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """postergenre: movie-poster genre classification with explanations."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"postergenre.cli.{_name}").register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="postergenre", standalone_mode=True)
    except PosterGenreError as exc:
        _report(exc)
        sys.exit(1)


def _report(exc: PosterGenreError) -> None:
    line = f"postergenre: error: {exc.message}"
    if exc.hint:
        line += f" (hint: {exc.hint})"
    print(line, file=sys.stderr)
