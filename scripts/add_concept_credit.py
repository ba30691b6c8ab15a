"""Fit the concept credit of a bundle trained before it existed, and save the bundle again.

    python scripts/add_concept_credit.py MODEL --store runs/store \
        --labels ../shared/data/posters/labels.csv [--out DIR]

`train` fits it itself (``GenrePredictor.fit_concept_credit`` at the end of ``fit``, on
every training row). This fits the same regression on the store's training split, for a
bundle that has concept features but no credit yet, and writes the bundle (default: in
place). Predictions do not change; only explanations do (see
``postergenre/ensemble/concept_credit.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np

    from postergenre.ensemble.bundle import load_bundle, save_bundle
    from postergenre.ensemble.data import load_labelled

    bundle = load_bundle(args.model)
    data = load_labelled(
        args.store,
        args.labels,
        split_column="split",
        splits=[args.split],
        genres=bundle.genres,
        extractors=bundle.extractor_names,
    )
    bundle.check_features(data.feature_names)
    model = bundle.model
    before = model.predict_proba(data.X[:200])
    model.fit_concept_credit(data.X)
    if model.concept_credit_ is None:
        raise SystemExit("no concept columns or no embedding base: nothing to credit")
    if not np.array_equal(before, model.predict_proba(data.X[:200])):
        raise SystemExit("predictions changed: refusing to write")
    card_md = args.model / "MODEL_CARD.md"
    out = save_bundle(
        model,
        args.out or args.model,
        card=bundle.card,
        extractors=bundle.extractors,
        reference=bundle.reference,
        threshold_ids=sorted(bundle.threshold_ids),
        card_markdown=card_md.read_text() if card_md.is_file() else None,
    )
    print(
        f"{out}: concept credit over {len(model.concept_credit_.columns)} concepts, fitted on "
        f"{len(data.X)} {args.split} posters"
    )


if __name__ == "__main__":
    main()
