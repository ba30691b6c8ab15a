"""Options that ``train`` and ``benchmark`` share: the GenreStacker settings a user may
override (unset ones keep the stacker's defaults)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Objective(StrEnum):
    micro = "micro"
    micro_all = "micro_all"
    genre = "genre"


#: The stacker's default (``metrics.DEFAULT_THRESHOLD_OBJECTIVE``; a test keeps them equal).
DEFAULT_OBJECTIVE = Objective.micro_all


Folds = Annotated[
    int | None, typer.Option(min=2, help="Out-of-fold folds of the stack. [default: 5]")
]
XGBRounds = Annotated[int | None, typer.Option(min=1, help="XGBoost boosting rounds.")]
MLPEpochs = Annotated[int | None, typer.Option(min=1, help="MLP training epochs.")]
Bases = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated level-0 learners (xgb, mlp, knn, mlp_all; default xgb,mlp,knn)."
    ),
]
ThresholdObjective = Annotated[
    Objective,
    typer.Option(
        help="Thresholds maximise micro F1 but leave no genre unpredictable (micro_all), "
        "micro F1 alone (micro: may never predict a rare genre), or each genre's own F1."
    ),
]
Jobs = Annotated[
    int | None, typer.Option(min=1, help="Threads for XGBoost/torch (default: all CPUs).")
]
