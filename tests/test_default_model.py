"""The shipped model, end to end on real val posters: it reaches what its model card says."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import require_shared, require_weights

N_POSTERS = 300


@pytest.mark.slow
@pytest.mark.weights
@pytest.mark.shared
def test_default_model_reaches_its_card_on_val_posters() -> None:
    posters = require_shared()
    require_weights("mobilenet_v2", "yolo11n-seg", "retinaface_mnet025", "emotion_minixception")
    from sklearn.metrics import average_precision_score

    import postergenre
    from postergenre.ensemble.bundle import default_bundle_path

    card = json.loads((default_bundle_path() / "card.json").read_text())
    reported = card["metrics"]["overall"]["model"]
    with open(posters / "labels.csv", newline="") as fh:
        rows = sorted(
            (r for r in csv.DictReader(fh) if r["split"] == "val"), key=lambda r: r["imdb_id"]
        )
    # A fixed sample spread over the whole id range.
    sample = rows[:: max(1, len(rows) // N_POSTERS)][:N_POSTERS]
    analyzer = postergenre.load_model(device="cpu")
    results = analyzer.analyze_many([posters / r["file"] for r in sample])
    genres = list(card["genres"])
    Y = np.array([[g in r["genres"].split("|") for g in genres] for r in sample], dtype=int)
    S = np.array([[a.probabilities[g] for g in genres] for a in results])

    top1 = np.mean([Y[i, genres.index(a.top_genre)] for i, a in enumerate(results)])
    # Genres with too few positives in 300 posters give AP values that are mostly noise.
    enough = Y.sum(0) >= 10
    ap = np.mean([average_precision_score(Y[:, j], S[:, j]) for j in np.nonzero(enough)[0]])
    prior_ap = np.mean(Y[:, enough].mean(0))
    assert top1 >= reported["top1_hit"] - 0.06, (top1, reported["top1_hit"])
    assert ap >= reported["macro_ap"] - 0.05, (ap, reported["macro_ap"])
    assert ap > 2 * prior_ap  # far above what a constant scores on the same genres
