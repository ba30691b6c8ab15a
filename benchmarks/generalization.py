"""Quick probes of what generalises across collections: feature groups x label weights.

    python benchmarks/generalization.py runs/store \
        --labels ../shared/data/posters/labels.csv \
        [--external-store runs/store_ext \
         --external-labels ../shared/data/posters_external/labels.csv] \
        [--variants 5] [--mlp mlp_hidden=512] [--nullspace 2,8,32] [--seeds 0,1,2]

For each variant a bagged MLP head (the stack's ``mlp`` base, 2 bags) is trained on the
train split and scored on val (label-weighted per-genre metrics, as the model card) and,
when given, on the external posters (plain metrics; evaluation only, never used to pick).
With several ``--seeds`` each head is trained once per seed and every figure is the mean,
with the standard deviation over seeds beside the val AP (differences between embeddings
of a few thousandths are within one seed's noise).
The shortcut column is the audit of :func:`postergenre.ensemble.training.shortcut_audit`
on val: how well the head's outputs tell the collections apart among posters with the
same genres (0.5 = not at all).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS: dict[str, tuple[str, bool]] = {
    # name: (columns, label weights)
    "all features, labels as they are": ("all", False),
    "all features, label weights": ("all", True),
    "no CNN style statistics, label weights": ("nostyle", True),
    "cues only (no CNN), label weights": ("cues", True),
    "CNN embedding only, label weights": ("embedding", True),
}


def columns(names: list[str], which: str) -> np.ndarray:
    def keep(n: str) -> bool:
        if which == "all":
            return True
        if which == "nostyle":
            return ".style" not in n
        if which == "cues":
            return not n.startswith("cnn.")
        if which == "embedding":
            return n.startswith("cnn.") and ".style" not in n
        raise ValueError(which)

    return np.array([j for j, n in enumerate(names) if keep(n)])


def fit_head(X: np.ndarray, Y: np.ndarray, W: np.ndarray | None, seed: int, **over: Any) -> Any:
    from postergenre.ensemble.bases import MLPBase

    params = {"mlp_hidden": 256, "mlp_epochs": 8, "mlp_bags": 2, "mlp_dropout": 0.5, **over}
    return MLPBase(params, seed=seed, n_jobs=2).fit(X, Y, W)


def collection_directions(Z: np.ndarray, Y: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """(k, d) orthonormal directions of standardised features ``Z`` that tell the
    collections apart among posters of the same genre set (iterative null-space
    projection: fit a logistic regression of the collection, remove its direction,
    repeat). Centring within each genre set keeps genre differences out of them."""
    from sklearn.linear_model import LogisticRegression

    R = Z.astype(np.float64)
    keys = np.unique(Y.astype(np.int8), axis=0, return_inverse=True)[1].ravel()
    for key in np.unique(keys):
        R[keys == key] -= R[keys == key].mean(0)
    c = (np.asarray(groups) == np.unique(groups)[0]).astype(int)
    basis: list[np.ndarray] = []
    for _ in range(k):
        clf = LogisticRegression(C=0.05, max_iter=300, class_weight="balanced").fit(R, c)
        w = clf.coef_[0]
        for b in basis:
            w = w - (w @ b) * b
        w /= np.linalg.norm(w)
        basis.append(w)
        R -= np.outer(R @ w, w)
    return np.array(basis)


def parse_mlp(pairs: list[str]) -> dict[str, Any]:
    """``["mlp_hidden=512"]`` -> ``{"mlp_hidden": 512}`` (ints, then floats, else text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        value: Any = text
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                continue
        out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--external-store", type=Path)
    ap.add_argument("--external-labels", type=Path)
    ap.add_argument("--variants", default="", help="comma-separated subset (by number, 1-based)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of the heads (default 0)")
    ap.add_argument(
        "--mlp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an MLP head option for every variant, e.g. mlp_hidden=512 (repeatable)",
    )
    ap.add_argument(
        "--nullspace",
        default="",
        metavar="K,...",
        help="also the CNN embedding with K collection directions removed, for each K",
    )
    args = ap.parse_args()
    over = parse_mlp(args.mlp)

    from postergenre.ensemble.data import load_labelled
    from postergenre.ensemble.label_shift import adapt_to_prior, default_prior
    from postergenre.ensemble.metrics import decide, evaluate, tune_thresholds
    from postergenre.ensemble.training import make_label_weights, shortcut_audit

    data = load_labelled(args.store, args.labels, splits=["train", "val"], group_column="source")
    X, Y, _ = data.subset("train")
    Xv, Yv, _ = data.subset("val")
    gt, gv = data.groups_of("train"), data.groups_of("val")
    lw = make_label_weights(Y, gt, data.genres)
    Wv = lw.weights_for(Yv, gv)
    ref = default_prior().vector(data.genres)
    ext = None
    if args.external_store and args.external_labels:
        e = load_labelled(
            args.external_store, args.external_labels, genres=data.genres, group_column="source"
        )
        if e.feature_names != data.feature_names:
            sys.exit("external store's features differ from the training store's")
        ext = e
    chosen = list(VARIANTS.items())
    if args.variants:
        chosen = [chosen[int(k) - 1] for k in args.variants.split(",")]

    def same(A: np.ndarray) -> np.ndarray:
        return A

    # (name, columns, label weights, what the head sees of those columns)
    runs: list[tuple[str, np.ndarray, bool, Any]] = [
        (name, columns(data.feature_names, which), weighted, same)
        for name, (which, weighted) in chosen
    ]
    ks = [int(k) for k in args.nullspace.split(",") if k]
    if ks:
        emb = columns(data.feature_names, "embedding")
        mu, sd = X[:, emb].mean(0), X[:, emb].std(0) + 1e-6
        basis = collection_directions((X[:, emb] - mu) / sd, Y, np.asarray(gt), max(ks))
        for k in ks:

            def project(A: np.ndarray, B: np.ndarray = basis[:k]) -> np.ndarray:
                Z = (A - mu) / sd
                return (Z - (Z @ B.T) @ B).astype(np.float32)

            name = f"CNN embedding, {k} collection directions removed, label weights"
            runs.append((name, emb, True, project))

    def score(seed: int, cols: np.ndarray, W: np.ndarray | None, seen: Any) -> dict[str, float]:
        """One head's figures (val, and external when given)."""
        head = fit_head(seen(X[:, cols]), Y, W, seed=seed, **over)
        zv = head.margin(seen(Xv[:, cols]))
        # Both variants' probabilities refer to the IMDb prior: the plain head's are moved
        # there from its training prevalence, so thresholds and top-1 compare alike.
        prev = Y.mean(0) if W is None else (W * Y).sum(0) / W.sum(0)
        pv = adapt_to_prior(1 / (1 + np.exp(-zv)), prev, ref)
        thr = tune_thresholds(Yv, pv, "micro", Wv)
        mv = evaluate(Yv, pv, decide(pv, thr), data.genres, Wv).overall
        audit = shortcut_audit(np.log(pv / (1 - pv)), Yv, gv)
        row = {
            "val AP": mv["macro_ap"],
            "val micro F1": mv["micro_f1"],
            "val top-1": mv["top1_hit"],
            "val shortcut AUC": audit["auc"] if audit else float("nan"),
        }
        if ext is not None:
            pe = adapt_to_prior(1 / (1 + np.exp(-head.margin(seen(ext.X[:, cols])))), prev, ref)
            me = evaluate(ext.Y, pe, decide(pe, thr), data.genres).overall
            row.update(
                {
                    "ext AP": me["macro_ap"],
                    "ext micro F1": me["micro_f1"],
                    "ext top-1": me["top1_hit"],
                    "ext over-share": me["top1_overshare"],
                }
            )
        return row

    seeds = [int(k) for k in args.seeds.split(",") if k.strip()]
    rows = []
    for name, cols, weighted, seen in runs:
        t0 = time.perf_counter()
        W = lw.W if weighted else None
        per_seed = [score(seed, cols, W, seen) for seed in seeds]
        row: dict[str, Any] = {"variant": name, "features": len(cols)}
        for key in per_seed[0]:
            row[key] = float(np.mean([r[key] for r in per_seed]))
            if key == "val AP" and len(seeds) > 1:
                row["val AP sd"] = float(np.std([r[key] for r in per_seed]))
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(row, file=sys.stderr)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print(
            "| "
            + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
            + " |"
        )


if __name__ == "__main__":
    main()
