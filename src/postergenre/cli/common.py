"""Small helpers shared by the command modules (console on stderr, JSON on stdout)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer


class Device(StrEnum):
    """``--device``: where models run. ``gpu`` is another name for ``cuda``."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    gpu = "gpu"

    @property
    def torch_name(self) -> str:
        """The name torch knows: ``cuda`` for ``gpu``, the others as they are."""
        from postergenre.features.base import canonical_device

        return canonical_device(self.value)


#: The ``--device`` help of every command that runs models.
DEVICE_HELP = "Where models run (gpu: the same as cuda)."

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

#: The feature store argument of train, evaluate and benchmark.
StoreDir = Annotated[
    Path,
    typer.Argument(metavar="STORE", exists=True, file_okay=False, help="The feature store folder."),
]

#: ``--prior FILE``, the same in analyze, predict and serve.
PriorFile = Annotated[
    Path | None,
    typer.Option(
        "--prior",
        metavar="FILE",
        exists=True,
        dir_okay=False,
        help="Your catalogue's genre mix (JSON {genre: share} or CSV genre,share: shares of "
        "posters carrying each genre; genres left out keep the model's reference share): "
        "probabilities and thresholds are adapted to it by the label-shift correction (the "
        "shipped model's refer to IMDb-wide shares).",
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
