"""Which features carry the collection and the scan, rather than the artwork?

    python benchmarks/collection_audit.py runs/store --labels ../shared/data/posters/labels.csv

Two measurements per feature group (cnn embedding, cnn style statistics, objects, faces,
colour, GIST):

1. **collection AUC**: among training posters with the same true genre set, how well the
   group predicts which collection a poster came from (features centred within each genre
   set, 5-fold logistic regression, ROC AUC; 0.5 = not at all). A group that tells the
   collections apart beyond their genres is a shortcut a model can learn.
2. **scan sensitivity**: how much the group moves when the same poster is re-compressed
   (JPEG quality 30), blurred (Gaussian sigma 1), or given as a 2x larger or 0.6x smaller
   file (then brought to the canonical scale), relative to how much it varies between
   posters: median over features of |x' - x| / std(x) on ``--posters`` val posters.
   0 = untouched by the scan, 1 = moves as much as going to another poster.

Prints one table. The store must hold the posters of the labels CSV.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

GROUPS = {
    "cnn embedding": lambda n: n.startswith("cnn.") and ".style" not in n,
    "cnn style statistics": lambda n: n.startswith("cnn.style"),
    "objects": lambda n: n.startswith("objects."),
    "faces": lambda n: n.startswith("faces."),
    "color": lambda n: n.startswith("color."),
    "gist": lambda n: n.startswith("gist."),
}


def collection_auc(X: np.ndarray, Y: np.ndarray, groups: list[str], seed: int = 0) -> float:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from postergenre.ensemble.training import shortcut_audit

    Z = StandardScaler().fit_transform(np.nan_to_num(X))
    if Z.shape[1] > 64:
        Z = PCA(64, random_state=seed).fit_transform(Z)
    res = shortcut_audit(Z, Y, groups, seed=seed)
    return float("nan") if res is None else float(res["auc"])


def degrade(image: np.ndarray, how: str) -> np.ndarray:
    import cv2
    from PIL import Image

    if how == "jpeg30":
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=30)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    if how == "blur":
        return cv2.GaussianBlur(image, (0, 0), 1.0)
    h, w = image.shape[:2]
    f = {"larger2x": 2.0, "smaller0.6x": 0.6}[how]
    return cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--posters", type=int, default=150, help="val posters for sensitivity")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from postergenre.ensemble.data import load_labelled
    from postergenre.features import get_extractor
    from postergenre.features.store import FeatureStore
    from postergenre.images import load_poster
    from postergenre.input_scale import DEFAULT_SCALE

    t0 = time.perf_counter()
    data = load_labelled(args.store, args.labels, splits=["train", "val"], group_column="source")
    X, Y, _ = data.subset("train")
    groups = data.groups_of("train")
    names = data.feature_names
    print(f"{len(X)} train posters, {len(names)} features", file=sys.stderr)

    aucs = {}
    for g, pred in GROUPS.items():
        cols = [j for j, n in enumerate(names) if pred(n)]
        if cols:
            aucs[g] = collection_auc(X[:, cols], Y, groups)
            print(f"  {g}: collection AUC {aucs[g]:.3f}", file=sys.stderr)

    # Sensitivity: the val posters' files, degraded, through the real extractors.
    store = FeatureStore(args.store)
    paths_by_id = store._first_paths()
    val_ids = [p for p, s in zip(data.poster_ids, data.splits, strict=True) if s == "val"]
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(val_ids), size=min(args.posters, len(val_ids)), replace=False))
    images = [DEFAULT_SCALE.apply(load_poster(paths_by_id[val_ids[i]])) for i in pick]
    exts = []
    for name in store.extractors():
        spec = store.manifest(name)
        exts.append(get_extractor(name, **dict(spec.get("config") or {})).load(args.device))

    def feats(imgs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([e.extract(imgs) for e in exts], axis=1)

    base = feats(images)
    std = np.nanstd(X, axis=0)
    sens: dict[str, dict[str, float]] = {g: {} for g in GROUPS}
    for how in ("jpeg30", "blur", "larger2x", "smaller0.6x"):
        moved = feats([DEFAULT_SCALE.apply(degrade(im, how)) for im in images])
        rel = np.nanmedian(np.abs(moved - base), axis=0) / np.where(std > 1e-9, std, np.nan)
        for g, pred in GROUPS.items():
            cols = [j for j, n in enumerate(names) if pred(n)]
            if cols:
                sens[g][how] = float(np.nanmedian(rel[cols]))
        print(f"  sensitivity to {how} done", file=sys.stderr)

    hows = ["jpeg30", "blur", "larger2x", "smaller0.6x"]
    print(f"\n| feature group | features | collection AUC | {' | '.join(hows)} |")
    print("|---|---|---|" + "---|" * len(hows))
    for g, pred in GROUPS.items():
        n = sum(1 for x in names if pred(x))
        if not n:
            continue
        cells = " | ".join(f"{sens[g].get(h, float('nan')):.3f}" for h in hows)
        print(f"| {g} | {n} | {aucs[g]:.3f} | {cells} |")
    secs = time.perf_counter() - t0
    print(f"\n({secs:.0f} s; sensitivity: median |change| / between-poster std)")


if __name__ == "__main__":
    main()
