"""Small helpers shared by the command modules (console on stderr, JSON on stdout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

#: ``--model DIR``, the same in every command that loads a bundle.
ModelDir = Annotated[
    Path | None,
    typer.Option(
        "--model",
        metavar="DIR",
        exists=True,
        file_okay=False,
        help="A model bundle folder (default: the shipped model).",
    ),
]


def stderr_console() -> Any:
    """A rich console writing to stderr: progress and logs never mix with results."""
    from rich.console import Console

    return Console(stderr=True)


def echo_json(obj: Any) -> None:
    """One JSON document on a line of stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
    sys.stdout.flush()
