"""Fine-tuning: what an epoch costs, and whether the fine-tuned backbone earns its place.

``time``: fine-tunes one epoch on a seeded slice of the training posters (real ImageNet
weights, the posters at their shared size, the default recipe unless told otherwise),
and extrapolates seconds per epoch, and the whole default run, to the full split:

    python benchmarks/finetune.py time --labels ../shared/data/posters/labels.csv
    python benchmarks/finetune.py time --labels CSV --posters 256 --val 64 --threads 2 \\
        --freeze 7 --input-size 160

``compare``: the frozen ImageNet embedding against the fine-tuned one, as issue 17 asks:
makes a store beside the frozen one whose cnn features come from the fine-tuned backbone
(the other extractors' shards hard-linked, not recomputed), for the shared posters and
for the external ones, then benchmarks both stores (the fine-tuned store with the row
"fine-tuned CNN (original study's method)") and prints the decision rule: ship the
fine-tuned backbone only if the stack on it beats the frozen stack on val macro AP by at
least 0.015 and is not worse on the external posters.

    python benchmarks/finetune.py compare --labels ../shared/data/posters/labels.csv \\
        --store runs/store --finetuned runs/finetune \\
        --external-labels ../shared/data/posters_external/labels.csv \\
        --external-store runs/store_external --work runs/finetune_compare \\
        [--frozen-model runs/model]   # score a bundle trained on the frozen store instead

Writes only under --out (time) and --work (compare); prints tables on stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("time", help="seconds per epoch on a slice, extrapolated")
    t.add_argument("--labels", type=Path, required=True)
    t.add_argument("--posters", type=int, default=256, help="training posters in the slice")
    t.add_argument("--val", type=int, default=64, help="validation posters in the slice")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--device", default="cpu")
    t.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    for name in ("backbone", "fit"):
        t.add_argument(f"--{name}", default=None)
    for name in ("input-size", "batch-size", "freeze", "epochs"):
        t.add_argument(f"--{name}", type=int, default=None)
    t.add_argument("--balance", action="store_true")
    c = sub.add_parser("compare", help="frozen vs fine-tuned embedding, both benchmarked")
    c.add_argument("--labels", type=Path, required=True)
    c.add_argument("--store", type=Path, required=True, help="the frozen (ImageNet) store")
    c.add_argument("--finetuned", required=True, help="fine-tune output folder or name")
    c.add_argument("--external-labels", type=Path, default=None)
    c.add_argument("--external-store", type=Path, default=None)
    c.add_argument("--work", type=Path, required=True, help="where the new stores go")
    c.add_argument("--min-count", type=int, default=100)
    c.add_argument("--prior", default=None, help="reference genre prior (default: IMDb-wide)")
    c.add_argument("--baselines", default="", help="comma-separated; default none")
    c.add_argument(
        "--frozen-model",
        type=Path,
        default=None,
        help="a bundle trained on the frozen store's training rows (`train STORE`), scored "
        "as the frozen stack instead of fitting one again",
    )
    c.add_argument("--device", default="auto")
    c.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    return run_time(args) if args.what == "time" else run_compare(args)


# -- time ------------------------------------------------------------------------------------
def run_time(args: argparse.Namespace) -> int:
    import tempfile

    from postergenre.finetune.config import FinetuneConfig, RunSettings
    from postergenre.finetune.data import read_poster_set
    from postergenre.finetune.train import Observer, finetune

    given = {
        "backbone": args.backbone,
        "fit": args.fit,
        "input_size": args.input_size,
        "batch_size": args.batch_size,
        "freeze": args.freeze,
    }
    recipe = FinetuneConfig(**{k: v for k, v in given.items() if v is not None})
    if args.balance:
        from postergenre.finetune.config import Balance

        recipe = FinetuneConfig(**{**_fields(recipe), "balance": Balance()})
    epochs = args.epochs or recipe.epochs
    config = FinetuneConfig(
        **{**_fields(recipe), "epochs": 1, "max_train": args.posters, "max_val": args.val}
    )
    settings = RunSettings(device=args.device, threads=args.threads)
    load0 = os.getloadavg()

    class Say(Observer):
        def message(self, text: str) -> None:
            print(f"  {text}", file=sys.stderr, flush=True)

    # The one-off cost: hashing every labelled file and decoding the posters used.
    t0 = time.perf_counter()
    full = read_poster_set(args.labels, FinetuneConfig(**{**_fields(recipe), "max_val": None}))
    scan_s = time.perf_counter() - t0
    n_train, n_val = len(full.train), 0 if full.val is None else len(full.val)
    train_rows = n_train
    if recipe.balance is not None:
        from postergenre.finetune.train import epoch_order

        train_rows = len(epoch_order(full.train.Y, recipe, 1))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "slice"
        t1 = time.perf_counter()
        result = finetune(args.labels, out, config, settings, Say())
        wall = time.perf_counter() - t1
    h = result.history[0]
    load1 = os.getloadavg()
    n_slice_val = max(1, result.record["data"]["val_posters"])
    per_train = h["train_seconds"] / h["train_posters"]
    per_val = h["val_seconds"] / n_slice_val
    cpu_train = h["train_cpu_seconds"] / h["train_posters"]
    cpu_val = h["val_cpu_seconds"] / n_slice_val
    epoch_s = per_train * train_rows + per_val * n_val
    epoch_cpu = cpu_train * train_rows + cpu_val * n_val
    print(
        f"recipe: {recipe.backbone}, fit {recipe.fit} @ {recipe.input_size}, batch "
        f"{recipe.batch_size}, freeze {recipe.freeze}, "
        f"augment {'on' if recipe.augment else 'off'}, "
        f"balance {'on' if recipe.balance else 'off'}; device {result.record['training']['device']}"
        f", torch threads {result.record['training']['torch_threads']}, "
        f"{os.cpu_count()} CPUs; load average {load0[0]:.1f} before, {load1[0]:.1f} after"
    )
    rows = [
        ("slice: training posters", f"{h['train_posters']}"),
        ("slice: training seconds (one epoch)", f"{h['train_seconds']:.1f}"),
        (
            "slice: validation posters / seconds",
            f"{result.record['data']['val_posters']} / {h['val_seconds']:.1f}",
        ),  # fmt: skip
        ("slice: wall seconds of the whole command", f"{wall:.1f}"),
        ("seconds per training poster (wall / CPU)", f"{per_train:.3f} / {cpu_train:.3f}"),
        ("seconds per validation poster (wall / CPU)", f"{per_val:.3f} / {cpu_val:.3f}"),
        (f"full: training posters per epoch ({n_train} in the split)", f"{train_rows}"),
        (
            f"full: seconds per epoch incl. val of {n_val} (wall / CPU)",
            f"{epoch_s:.0f} ({epoch_s / 60:.1f} min) / {epoch_cpu:.0f} CPU s",
        ),
        ("full: one-off reading (hash + decode) seconds", f"{scan_s:.0f}"),
        (f"full: default run, {epochs} epochs", f"{(scan_s + epochs * epoch_s) / 60:.1f} min"),
    ]
    width = max(len(k) for k, _ in rows) + 2
    for k, v in rows:
        print(k.ljust(width) + v)
    return 0


def _fields(config: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


# -- compare ---------------------------------------------------------------------------------
def finetuned_store(
    frozen: Path,
    labels: Path,
    fb: Any,
    target: Path,
    device: str,
    workers: int | None,
) -> Path:
    """A store with the frozen store's other extractors (hard links) and cnn features from
    the fine-tuned backbone, otherwise configured as the frozen store's cnn."""
    from postergenre.features.cnn import CNNExtractor
    from postergenre.features.inputs import discover
    from postergenre.features.runner import RunOptions, run_extraction
    from postergenre.input_scale import InputScale
    from postergenre.store import FeatureStore

    fs = FeatureStore(frozen)
    manifest = fs.manifest("cnn")
    config = dict(manifest.get("config") or {})
    scale = InputScale.from_record(manifest.get("input"))
    if not target.exists():
        # Shards are written once and renamed into place, never changed: links are safe.
        shutil.copytree(
            frozen,
            target,
            copy_function=os.link,
            ignore=lambda d, names: ["cnn"] if Path(d) == frozen else [],
        )
    ext = CNNExtractor(
        fb.cnn_config(
            style=bool(config.get("style", True)),
            batch_size=int(config.get("batch_size", 32)),
            seed=int(config.get("seed", 0)),
        )
    )
    found = discover([str(labels)])
    run_extraction(
        found.paths, target, [ext], RunOptions(device=device, workers=workers), None, scale
    )
    return target


def run_compare(args: argparse.Namespace) -> int:
    from postergenre.ensemble.training import benchmark_from_store
    from postergenre.finetune import artifact
    from postergenre.finetune.benchmark_row import ROW_NAME, head_row

    fb = artifact.resolve(args.finetuned)
    fb = artifact.install(fb)  # the cnn extractor finds it by sha256 in the cache
    args.work.mkdir(parents=True, exist_ok=True)
    say = lambda m: print(f"  {m}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"fine-tuned backbone {fb.sha256[:12]} ({fb.backbone}) from {fb.folder}")
    ft_store = finetuned_store(
        args.store, args.labels, fb, args.work / "store", args.device, args.workers
    )
    ft_ext = None
    if args.external_store is not None and args.external_labels is not None:
        ft_ext = finetuned_store(
            args.external_store,
            args.external_labels,
            fb,
            args.work / "store_external",
            args.device,
            args.workers,
        )
    baselines = [b for b in args.baselines.split(",") if b]
    common: dict[str, Any] = {
        "min_count": args.min_count,
        "prior": args.prior,
        "baselines": baselines,
        "external_labels": args.external_labels if ft_ext is not None else None,
        "log": say,
    }
    frozen = benchmark_from_store(
        args.store,
        args.labels,
        external_store=args.external_store,
        model=args.frozen_model,
        **common,
    )
    tuned = benchmark_from_store(
        ft_store,
        args.labels,
        external_store=ft_ext,
        extra_rows=[head_row(fb.folder, ft_store, ft_ext)],
        **common,
    )

    def row(result: Any, name: str) -> Any:
        return next(r for r in result.rows if r.name == name)

    table = [
        ("stack, frozen ImageNet embedding", row(frozen, "stack")),
        (ROW_NAME, row(tuned, ROW_NAME)),
        ("stack, fine-tuned embedding", row(tuned, "stack")),
    ]
    has_ext = ft_ext is not None
    print(f"{'row':<46}{'val macro AP':>14}{'val micro F1':>14}" + (
        f"{'ext macro AP':>14}{'ext micro F1':>14}" if has_ext else ""))  # fmt: skip
    for name, r in table:
        m = r.metrics.overall
        line = f"{name:<46}{m['macro_ap']:>14.4f}{m['micro_f1']:>14.4f}"
        if has_ext and r.external is not None:
            line += (
                f"{r.external.overall['macro_ap']:>14.4f}{r.external.overall['micro_f1']:>14.4f}"
            )
        print(line)
    gain = table[2][1].metrics.overall["macro_ap"] - table[0][1].metrics.overall["macro_ap"]
    ext_ok = True
    if has_ext:
        ext_ok = (
            table[2][1].external.overall["macro_ap"] >= table[0][1].external.overall["macro_ap"]
        )
    ship = gain >= 0.015 and ext_ok
    print(
        f"val macro AP gain of the stack on the fine-tuned embedding: {gain:+.4f} (needs "
        f">= +0.015); external posters {'not worse' if ext_ok else 'worse'}"
        + ("" if has_ext else " (not measured: no --external-store)")
        + f" -> {'ship the fine-tuned backbone' if ship else 'keep the frozen ImageNet backbone'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
