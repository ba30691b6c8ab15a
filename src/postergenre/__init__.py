"""postergenre: read a movie poster, say which genres the movie belongs to, and why.

Importing this package is cheap: torch, cv2, ultralytics and xgboost are imported only
when a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import pandas as pd

    from postergenre.analysis import Analysis, Analyzer

__all__ = ["__version__", "analyze", "load_model", "predict_store"]


def load_model(model: str | None = None, device: str = "auto", prior: Any = None) -> Analyzer:
    """Load a model bundle (default: the shipped one) with its extractors, once.

    ``prior``: a catalogue's genre mix (a prior file path, or genre -> share): probabilities
    and thresholds are adapted to it by the label-shift correction.
    """
    from postergenre.analysis import Analyzer

    return Analyzer.load(model, device=device, prior=prior)


def analyze(poster: Any, explain: bool = False, model: str | None = None) -> Analysis:
    """Analyse one poster (a path or an RGB uint8 array); models are loaded once and reused."""
    from postergenre.analysis import default_analyzer

    return default_analyzer(model).analyze(poster, explain=explain)


def predict_store(store: Any, model: str | None = None, labels: Any = None) -> pd.DataFrame:
    """Genre predictions for every poster of a feature store (one row per input path) as a
    pandas DataFrame; no extraction. See :class:`postergenre.predict.StorePredictor`."""
    from postergenre.predict import predict_store as _predict_store

    return _predict_store(store, model=model, labels=labels)
