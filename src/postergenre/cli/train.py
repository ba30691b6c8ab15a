"""`postergenre train`: a feature store + labels CSV -> a model bundle with its card."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from postergenre.cli.common import StoreDir
from postergenre.cli.stack_options import (
    DEFAULT_OBJECTIVE,
    Bases,
    Folds,
    Jobs,
    MLPEpochs,
    ThresholdObjective,
    XGBRounds,
)


class SelectionIn(StrEnum):
    """``GenreStacker.selection_in`` (stacker.SELECTION_LEARNERS; a test keeps them equal)."""

    meta = "meta"
    mlp = "mlp"
    all = "all"


HELP = """Train the stacked genre model on a feature store and a labels CSV.

The labels CSV has `genres` (pipe-separated) and `file` (relative to the CSV) or
`poster_id` columns, and optionally a split column. Genres with fewer than --min-count
training posters are left out. Rows without features, whose extraction failed, or with
no known genre are counted and reported (stderr and the model card), never dropped
silently.

Collections: when the CSV says which collection each poster comes from (--group-column,
default `source`), labels are weighted so that within every collection each genre's
weighted share equals a reference prior (default: the genre shares among 36,918 IMDb
films; --prior FILE for another), and a collection whose share of a genre is far below
the reference (--min-ratio) leaves that genre unlabelled for its posters. Then which
collection a poster looks like carries no information about its genres. The rule, its
cut-offs and the weight table are printed and recorded in the model card.
--no-label-weights trains on the labels as they are. A collection that kept only films
whose first-listed genre is one of a few (--selection perceptilabs=Comedy,Drama) is
fitted by the likelihood of its labels given that selection (in the meta-learner; the
MLP base too with --selection-in), so that "not a comedy" is not learnt as "a drama"
where the selection made it so.

Thresholds are tuned on the validation split when it has rows, else out-of-fold.
--refit then fits the same recipe again on training + validation rows (more posters for
the model you ship; thresholds out-of-fold) and the card keeps the metrics measured
before, on the fit that did not see the validation rows (--holdout-out DIR saves that fit
too, so benchmarks can compare it with baselines on the same split).
The bundle (JSON, XGBoost UBJSON, safetensors: no pickle) and its MODEL_CARD.md go
to --out.
"""


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train)


def train(
    store: StoreDir,
    labels: Annotated[
        Path, typer.Option("--labels", exists=True, dir_okay=False, help="The labels CSV.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model bundle to.")],
    split_column: Annotated[
        str, typer.Option(help="Split column of the labels CSV (absent: train on every row).")
    ] = "split",
    train_split: Annotated[str, typer.Option(help="Split value of the training rows.")] = "train",
    val_split: Annotated[
        str, typer.Option(help="Split value of the validation rows ('' for none).")
    ] = "val",
    balance: Annotated[
        bool,
        typer.Option(
            "--balance/--no-balance",
            help="Cap posters per genre and oversample rare genres in level-0 training.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random component.")] = 0,
    min_count: Annotated[
        int, typer.Option(min=1, help="Fewest training posters a genre needs.")
    ] = 100,
    folds: Folds = None,
    xgb_rounds: XGBRounds = None,
    mlp_epochs: MLPEpochs = None,
    bases: Bases = None,
    threshold_objective: ThresholdObjective = DEFAULT_OBJECTIVE,
    jobs: Jobs = None,
    group_column: Annotated[
        str,
        typer.Option(help="Column naming each poster's collection (absent: one collection)."),
    ] = "source",
    label_weights: Annotated[
        bool,
        typer.Option(
            "--label-weights/--no-label-weights",
            help="Weight labels per collection towards the reference prior.",
        ),
    ] = True,
    prior: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Reference genre prior: JSON {genre: share} or CSV genre,share "
            "(default: IMDb-wide shares).",
        ),
    ] = None,
    min_ratio: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="A collection whose share of a genre is below this times the reference "
            "leaves it unlabelled.",
        ),
    ] = 0.25,
    selection: Annotated[
        list[str] | None,
        typer.Option(
            "--selection",
            help="COLLECTION=GENRE[,GENRE...]: that collection kept only films whose "
            "first-listed (alphabetical) genre is one of these; its posters are then fitted "
            "by the likelihood of their genres given that selection. Repeatable.",
        ),
    ] = None,
    selection_in: Annotated[
        SelectionIn,
        typer.Option(
            help="Which learners fit a --selection collection by the selection-aware "
            "likelihood: the meta-learner, the MLP base or both.",
        ),
    ] = SelectionIn.meta,
    collection_directions: Annotated[
        int,
        typer.Option(
            min=0,
            help="Project out the K directions of the CNN embedding that best tell the "
            "collections (--group-column) apart among posters of the same genres, before "
            "the bases read it (0: none).",
        ),
    ] = 0,
    genre_sets: Annotated[
        str,
        typer.Option(
            metavar="imdb|none|FILE",
            help="Condition the probabilities on the genre combinations films have: 'imdb' "
            "(the shipped counts of IMDb films' genre sets), a table file (CSV with a "
            "'genres' column, one film per row, or JSON as shipped) or 'none' (genres "
            "independent).",
        ),
    ] = "none",
    genre_sets_min_count: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="A combination must be carried by N or more films of the table to be possible.",
        ),
    ] = 5,
    augment: Annotated[
        list[Path] | None,
        typer.Option(
            "--augment",
            exists=True,
            file_okay=False,
            help="A store of degraded copies of the training posters (`extract --degrade`): "
            "its rows join the training rows with the same labels and weights. Repeatable.",
        ),
    ] = None,
    refit: Annotated[
        bool,
        typer.Option(
            "--refit",
            help="After measuring on the validation split, fit the same recipe again on "
            "training + validation rows and save that (thresholds out-of-fold; the card keeps "
            "the held-out metrics).",
        ),
    ] = False,
    holdout_out: Annotated[
        Path | None,
        typer.Option(help="With --refit: also save the held-out fit (for benchmarks) here."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model card as JSON.")] = False,
) -> None:
    from postergenre.cli.common import echo_json, stderr_console
    from postergenre.ensemble.label_shift import FirstGenreSelection, WeightRule
    from postergenre.ensemble.training import TrainConfig, stacker_overrides

    console = stderr_console()
    sets_source = genre_sets.strip()
    if sets_source.lower() not in ("imdb", "none") and not Path(sets_source).is_file():
        raise typer.BadParameter(
            f"{sets_source!r}: expected imdb, none or a table file", param_hint="--genre-sets"
        )
    config = TrainConfig(
        split_column=split_column or None,
        train_split=train_split,
        val_split=val_split or None,
        min_count=min_count,
        seed=seed,
        balance=balance,
        stacker={
            **stacker_overrides(
                folds, xgb_rounds, mlp_epochs, bases, threshold_objective.value, jobs
            ),
            "selection_in": selection_in.value,
            "collection_directions": collection_directions,
        },
        group_column=group_column or None,
        label_weights=label_weights,
        prior=str(prior) if prior else None,
        weight_rule=WeightRule(min_ratio=min_ratio),
        selection=tuple(FirstGenreSelection.parse(t) for t in selection or ()),
        augment=tuple(str(a) for a in augment or ()),
        refit=refit,
        holdout_out=str(holdout_out) if holdout_out else None,
        genre_sets=None if sets_source.lower() == "none" else sets_source,
        genre_sets_min_count=genre_sets_min_count,
    )
    result = _run_with_progress(console, store, labels, out, config)
    if as_json:
        echo_json(result.card)
        return
    m = result.val_metrics
    typer.echo(f"model bundle: {result.path}")
    typer.echo(f"training time: {result.seconds:.0f} s")
    if m is not None:
        typer.echo(
            ("validation (held-out fit, before the refit): " if refit else "validation: ")
            + ", ".join(
                f"{k} {m.overall[k]:.4f}" for k in ("macro_ap", "micro_f1", "macro_f1", "top1_hit")
            )
        )


def _run_with_progress(console: Any, store: Path, labels: Path, out: Path, config: Any) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from postergenre.ensemble.training import train_from_store

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("reading store and labels", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        def log(msg: str) -> None:
            bar.console.print(msg, markup=False, highlight=False)

        return train_from_store(store, labels, out, config, log=log, progress=progress)
