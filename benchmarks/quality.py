"""Quality benchmark: the stacked model against every seed baseline, one table.

    python benchmarks/quality.py STORE --labels CSV [--eval-split val] [--balance-compare]
                                 [--baselines mlknn,naive_bayes,rakel,logistic] [--json]
    python benchmarks/quality.py --synthetic        # a small made-up store: a smoke run

Runs exactly what ``postergenre benchmark`` runs (``postergenre.ensemble.training.
benchmark_from_store``): every row is fit on the training split and scored on the
evaluation split; F1/Hamming use per-genre thresholds cross-fitted on the evaluation
rows for every learned row. Prints the table (and the time each fit took); writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", nargs="?", type=Path, help="feature store folder")
    parser.add_argument("--labels", type=Path, help="labels CSV")
    parser.add_argument("--split-column", default="split")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="val")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baselines", default=None, help="comma-separated subset")
    parser.add_argument("--balance-compare", action="store_true")
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--xgb-rounds", type=int, default=None)
    parser.add_argument("--mlp-epochs", type=int, default=None)
    parser.add_argument("--bases", default=None, help="level-0 learners, e.g. xgb,mlp_all")
    parser.add_argument("--threshold-objective", default="micro", choices=["micro", "genre"])
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--synthetic", action="store_true", help="smoke run on made-up data")
    args = parser.parse_args(argv)

    from postergenre.ensemble.benchmark import table_lines
    from postergenre.ensemble.training import benchmark_from_store, stacker_overrides

    tmp = None
    if args.synthetic:
        from postergenre.ensemble.synthetic import make_labelled_store

        tmp = tempfile.TemporaryDirectory()
        syn = make_labelled_store(tmp.name, n=400, seed=args.seed)
        args.store, args.labels = syn.store, syn.labels
        stacker = {"n_folds": 3, "xgb_rounds": 30, "mlp_epochs": 10, "mlp_hidden": 32}
        if args.bases:
            stacker["bases"] = tuple(args.bases.split(","))
        min_count = 5
    else:
        if args.store is None or args.labels is None:
            parser.error("STORE and --labels are required (or --synthetic)")
        stacker = stacker_overrides(args.folds, args.xgb_rounds, args.mlp_epochs, args.bases)
        min_count = 100
    stacker["threshold_objective"] = args.threshold_objective
    if args.jobs:
        stacker["n_jobs"] = args.jobs
    t0 = time.perf_counter()
    result = benchmark_from_store(
        args.store,
        args.labels,
        split_column=args.split_column,
        train_split=args.train_split,
        eval_split=args.eval_split,
        min_count=min_count,
        seed=args.seed,
        baselines=args.baselines.split(",") if args.baselines else None,
        balance_compare=args.balance_compare,
        threshold_objective=args.threshold_objective,
        stacker=stacker,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"{result.n_train} training posters, {result.n_eval} evaluated "
            f"({args.eval_split}), {len(result.genres)} genres; "
            f"total {time.perf_counter() - t0:.0f} s"
        )
        print(result.settings["threshold_rule"])
        print("\n".join(table_lines(result)))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
