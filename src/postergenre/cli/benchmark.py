"""`postergenre benchmark`: the stack against every seed baseline, one table."""

from __future__ import annotations

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

HELP = """Train and evaluate the stack and the seed baselines on the same store and split.

Rows: constant predictors (prior, always the top-2 genres), ML-kNN (k=40) on the CNN
embedding, binary-relevance naive Bayes on GIST + colour, RAKEL (k=3), a logistic head
on the CNN embedding, each level-0 learner alone, and the stack. F1 and Hamming use
per-genre thresholds cross-fitted on the evaluation rows for every learned row (no row
is judged by thresholds tuned on it). Takes about as long as `train` plus a few minutes.
"""


def register(app: typer.Typer) -> None:
    app.command("benchmark", help=HELP)(benchmark)


def benchmark(
    store: StoreDir,
    labels: Annotated[
        Path, typer.Option("--labels", exists=True, dir_okay=False, help="The labels CSV.")
    ],
    split_column: Annotated[str, typer.Option(help="Split column of the labels CSV.")] = "split",
    train_split: Annotated[str, typer.Option(help="Split value of the training rows.")] = "train",
    eval_split: Annotated[str, typer.Option(help="Split value of the evaluated rows.")] = "val",
    seed: Annotated[int, typer.Option(help="Seed of every random component.")] = 0,
    min_count: Annotated[
        int, typer.Option(min=1, help="Fewest training posters a genre needs.")
    ] = 100,
    baselines: Annotated[
        str | None,
        typer.Option(help="Comma-separated subset of: mlknn, naive_bayes, rakel, logistic."),
    ] = None,
    balance_compare: Annotated[
        bool,
        typer.Option("--balance-compare", help="Also train the stack with genre balancing."),
    ] = False,
    folds: Folds = None,
    xgb_rounds: XGBRounds = None,
    mlp_epochs: MLPEpochs = None,
    bases: Bases = None,
    threshold_objective: ThresholdObjective = DEFAULT_OBJECTIVE,
    jobs: Jobs = None,
    group_column: Annotated[
        str, typer.Option(help="Column naming each poster's collection (absent: one).")
    ] = "source",
    label_weights: Annotated[
        bool,
        typer.Option(
            "--label-weights/--no-label-weights",
            help="Train every row with the collection label weights (as `train` does).",
        ),
    ] = True,
    compare_unweighted: Annotated[
        bool,
        typer.Option(
            "--compare-unweighted", help="Also train the stack on the labels as they are."
        ),
    ] = False,
    external_store: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Store of posters from other collections: every row is scored on them too "
            "(thresholds tuned on the evaluated split, never on these).",
        ),
    ] = None,
    external_labels: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Labels CSV of --external-store."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="Score this bundle as the stack row instead of fitting one (trained on the "
            "same training split).",
        ),
    ] = None,
    finetuned: Annotated[
        str | None,
        typer.Option(
            help="A fine-tuned backbone (`postergenre finetune` output folder, or its name or "
            "sha256 in the weights cache): adds the row 'fine-tuned CNN (original study's "
            "method)', its own head on the store's cnn embedding. The store (and "
            "--external-store) must hold cnn features made with that backbone; the stack "
            "row is then the stack on the fine-tuned embedding.",
        ),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            min=0,
            help="Resamples for the paired 95% interval of the stack against every other "
            "row, on val and the external posters (0: none).",
        ),
    ] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    from postergenre.cli.common import echo_json, stderr_console
    from postergenre.ensemble.baselines import BASELINES
    from postergenre.ensemble.benchmark import table_lines
    from postergenre.ensemble.training import benchmark_from_store, stacker_overrides
    from postergenre.errors import ConfigError

    if (external_store is None) != (external_labels is None):
        raise ConfigError("--external-store and --external-labels go together")
    if bootstrap == 1:
        raise ConfigError("--bootstrap: needs at least 2 resamples (or 0 for none)")
    chosen = None
    if baselines is not None:
        chosen = [b.strip() for b in baselines.split(",") if b.strip()]
        unknown = [b for b in chosen if b not in BASELINES]
        if unknown:
            raise ConfigError(
                f"--baselines: unknown {unknown}; expected some of {', '.join(BASELINES)}"
            )
    console = stderr_console()
    result = benchmark_from_store(
        store,
        labels,
        split_column=split_column,
        train_split=train_split,
        eval_split=eval_split,
        min_count=min_count,
        seed=seed,
        baselines=chosen,
        balance_compare=balance_compare,
        threshold_objective=threshold_objective.value,
        stacker=stacker_overrides(
            folds, xgb_rounds, mlp_epochs, bases, threshold_objective.value, jobs
        ),
        log=lambda m: console.print(m, markup=False, highlight=False),
        group_column=group_column or None,
        label_weights=label_weights,
        external_store=external_store,
        external_labels=external_labels,
        model=model,
        unweighted_compare=compare_unweighted,
        extra_rows=_finetuned_rows(finetuned, store, external_store),
        bootstrap=bootstrap,
    )
    if as_json:
        echo_json(result.to_dict())
        return
    typer.echo(
        f"{result.n_train} training posters ({train_split}), {result.n_eval} evaluated "
        f"({eval_split}), {len(result.genres)} genres"
    )
    typer.echo(result.settings["threshold_rule"])
    for line in table_lines(result):
        typer.echo(line)


def _finetuned_rows(finetuned: str | None, store: Path, external: Path | None) -> list[Any]:
    """The fine-tuned network's own row (``--finetuned``); see postergenre.finetune."""
    if finetuned is None:
        return []
    from postergenre.finetune.benchmark_row import head_row

    return [head_row(finetuned, store, external)]
