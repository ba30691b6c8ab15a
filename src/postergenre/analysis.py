"""Analyse posters end to end: pixels -> features -> genre probabilities -> cues.

:class:`Analyzer` holds one model bundle and the extractors it was trained with, loaded
once, and reuses them for every poster (``postergenre.analyze`` keeps one per model).
:class:`Analysis` is the result for one poster: every genre's probability, the predicted
set, and with ``explain=True`` the cues behind each explained genre, the detections and
the dominant colours a card draws.

Explanations keep the ensemble's additivity: for each explained genre
``base + sum(cue.contribution for cue in cues) == logit`` (to float rounding).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from postergenre.cues import (
    Cue,
    CueContext,
    describe_cues,
    group_contributions,
    group_totals,
    probability_effect,
    split_top,
)
from postergenre.errors import ConfigError, ModelError, PosterError
from postergenre.features.base import Detection
from postergenre.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from postergenre.features.base import Extractor

#: Posters per extractor batch in :meth:`Analyzer.analyze_many`.
DEFAULT_BATCH_SIZE = 16
#: Cues shown per genre before the rest is lumped into "other cues".
DEFAULT_CUES = 5


@dataclass(frozen=True)
class GenreExplanation:
    """Why one genre got its probability on one poster.

    ``logit = base + sum(c.contribution for c in cues)``; ``cues`` hold *all* meaningful
    cues, largest |contribution| first; :meth:`top` keeps a few and lumps the rest.
    """

    genre: str
    probability: float
    threshold: float
    base: float
    logit: float
    cues: tuple[Cue, ...]
    groups: dict[str, float]

    def top(self, k: int = DEFAULT_CUES) -> tuple[list[Cue], float, int]:
        """The ``k`` strongest cues, the summed contribution of the rest, and their count."""
        return split_top(self.cues, k)

    def effect(self, contribution: float) -> float:
        """How far a cue (or several, by their summed log-odds) moved this genre's
        probability: with it minus without it (see :func:`~postergenre.cues.probability_effect`)."""
        return probability_effect(self.logit, contribution)

    @property
    def base_probability(self) -> float:
        """The probability the base log-odds alone give (a typical poster)."""
        return float(_sigmoid(np.asarray(self.base, dtype=np.float64)))

    def to_dict(self, k: int = DEFAULT_CUES) -> dict[str, Any]:
        """Exact log-odds (``base + sum(contribution) + other == logit``) and, for people,
        each cue's ``effect`` on the probability (see :meth:`effect`)."""
        shown, other, n_other = self.top(k)
        return {
            "genre": self.genre,
            "probability": self.probability,
            "threshold": self.threshold,
            "base": self.base,
            "base_probability": self.base_probability,
            "logit": self.logit,
            "cues": [{**c.to_dict(), "effect": self.effect(c.contribution)} for c in shown],
            "other": {"contribution": other, "n_cues": n_other, "effect": self.effect(other)},
            "groups": dict(self.groups),
        }


@dataclass
class Analysis:
    """The result for one poster. ``probabilities`` is ordered from most to least probable."""

    path: str | None
    #: (width, height) of the poster as analysed: at the model's input scale, the frame of
    #: detections, Grad-CAM and ``image``.
    size: tuple[int, int]
    probabilities: dict[str, float]
    thresholds: dict[str, float]
    predicted: list[str]
    explanations: dict[str, GenreExplanation] = field(default_factory=dict)
    #: Detections (``explain``: faces; ``details``: objects too); None when not looked for.
    objects: list[Detection] | None = None
    faces: list[Detection] | None = None
    palette: list[tuple[tuple[int, int, int], float]] | None = None
    imagenet: list[tuple[str, float]] | None = None
    #: Grad-CAM of the CNN for ``gradcam_genre``: (H, W) in [0, 1] over the poster.
    gradcam: np.ndarray | None = field(default=None, repr=False)
    gradcam_genre: str | None = None
    gradcam_note: str | None = None
    #: The decoded poster and its feature row, kept for cards and debugging.
    image: np.ndarray | None = field(default=None, repr=False)
    features: np.ndarray | None = field(default=None, repr=False)
    feature_names: list[str] | None = field(default=None, repr=False)
    #: (width, height) of the poster as decoded from its file, before the input scale.
    source_size: tuple[int, int] | None = None

    def feature(self, name: str) -> float:
        """This poster's value of one feature, e.g. ``color.brightness``."""
        if self.features is None or self.feature_names is None:
            raise KeyError(name)
        return float(self.features[self.feature_names.index(name)])

    @property
    def size_text(self) -> str:
        """``182x268 px, read at 160x236`` (or ``160x236 px`` where the file was that size)."""
        w, h = self.size
        src = self.source_size
        if src is None or tuple(src) == (w, h):
            return f"{w}x{h} px"
        return f"{src[0]}x{src[1]} px, read at {w}x{h}"

    @property
    def top_genre(self) -> str:
        return next(iter(self.probabilities))

    @property
    def predicted_below_threshold(self) -> list[str]:
        """Predicted genres under their threshold: named only because the model predicts at
        least ``min_genres`` per poster (``at_least_one=False`` turns that off)."""
        return [g for g in self.predicted if self.probabilities[g] < self.thresholds[g]]

    @property
    def not_predicted_by_model(self) -> list[str]:
        """Genres whose threshold is above 1, which no probability reaches: the model never
        predicts them (e.g. no training poster had them), in probability order."""
        return [g for g in self.probabilities if self.thresholds.get(g, 0.0) > 1.0]

    def to_dict(self, cues: int = DEFAULT_CUES) -> dict[str, Any]:
        """JSON-able summary (no pixels, no feature row)."""
        out: dict[str, Any] = {
            "path": self.path,
            "size": list(self.size),
            "source_size": list(self.source_size) if self.source_size else None,
            "probabilities": {g: float(p) for g, p in self.probabilities.items()},
            "predicted": list(self.predicted),
            "thresholds": {g: float(t) for g, t in self.thresholds.items()},
            "predicted_below_threshold": self.predicted_below_threshold,
            "not_predicted_by_model": self.not_predicted_by_model,
        }
        if self.explanations:
            out["explanations"] = {g: e.to_dict(cues) for g, e in self.explanations.items()}
        if self.objects is not None:
            out["objects"] = [_detection_dict(d) for d in self.objects]
        if self.faces is not None:
            out["faces"] = [_detection_dict(d) for d in self.faces]
        if self.palette is not None:
            out["palette"] = [{"rgb": list(rgb), "share": float(s)} for rgb, s in self.palette]
        if self.imagenet is not None:
            out["imagenet"] = [{"label": lab, "probability": float(p)} for lab, p in self.imagenet]
        if self.gradcam_genre is not None:
            out["gradcam"] = {"genre": self.gradcam_genre, "note": self.gradcam_note}
        return out


@dataclass(frozen=True)
class Failure:
    """A poster that could not be analysed (unreadable file, bad array), with the reason."""

    path: str | None
    kind: str
    message: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "error": self.message, "kind": self.kind}
        if self.hint:
            out["hint"] = self.hint
        return out


def _detection_dict(d: Detection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "label": d.label,
        "score": round(float(d.score), 4),
        "box": [round(float(v), 1) for v in d.box],
    }
    if d.extra:
        out["extra"] = {k: round(float(v), 4) for k, v in d.extra.items()}
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


class Analyzer:
    """One model bundle with its extractors, loaded once; analyses posters.

    Build with :meth:`load`. ``threshold`` (None = the bundle's tuned per-genre thresholds)
    and ``cues`` only affect what is predicted and shown, never the probabilities.
    """

    def __init__(
        self,
        bundle: Any,
        extractors: dict[str, Extractor],
        device: str,
        source: str | None = None,
        workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.bundle = bundle
        self.extractors = extractors
        self.device = device
        self.source = source
        cpus = os.cpu_count() or 1
        #: Extractors run side by side in this many threads (torch and OpenCV release the
        #: GIL). One intra-op thread each, rather than one extractor at a time with every
        #: core: a poster is too small for conv kernels to split well over cores, and
        #: OpenMP's spinning team threads collapse when other processes share the CPUs.
        self.workers = _default_workers(len(extractors)) if workers is None else workers
        if self.workers < 1:
            raise ConfigError(f"workers: expected >= 1, got {self.workers}")
        #: Posters read from files larger than this (width x height) are refused unread.
        self.max_pixels = int(max_pixels)
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels: expected >= 1, got {max_pixels}")
        self._intra_op = max(1, cpus // self.workers)
        self._pool: Any = None
        self.genres: list[str] = list(bundle.genres)
        self.thresholds = np.asarray(bundle.thresholds, dtype=np.float64)
        self.feature_names: list[str] = list(bundle.feature_names)
        self._reference = _reference_table(getattr(bundle, "reference", None), self.feature_names)
        # Analyzer methods may be called from several threads (a server); torch modules are
        # not re-entrant for our purpose (Grad-CAM enables grad), so serialise model calls.
        self._lock = threading.RLock()

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str] | None = None,
        device: str = "auto",
        workers: int | None = None,
        prior: Any = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Analyzer:
        """Load a bundle directory (default: the shipped model) and its extractors.

        ``device``: auto, cpu, cuda (``gpu`` is the same as cuda). ``workers``: extractors
        run in parallel threads (default: up to 3, at most the number of CPUs); 1 runs them
        one after another with torch's own thread count. ``max_pixels``: the largest poster
        file read, width x height (checked from its header, before decoding).
        """
        from postergenre.ensemble.bundle import default_bundle_path, load_bundle
        from postergenre.features import extractor_from_record
        from postergenre.features.base import resolve_device

        # XGBoost and torch threads: each worker's share of the CPUs (see __init__).
        share = _default_workers(3) if workers is None else max(workers, 1)
        xgb_threads = max(1, (os.cpu_count() or 1) // share)
        # None: the shipped model (with a clear error if it is absent).
        if workers is not None and workers < 1:
            raise ConfigError(f"workers: expected >= 1, got {workers}")
        bundle = load_bundle(model, n_jobs=xgb_threads)
        if prior is not None:
            # A catalogue with its own genre mix: the label-shift correction (see
            # GenrePredictor.adapted); ``prior`` is a GenrePrior, a path or genre -> share.
            bundle = bundle.with_prior(prior)
        path = Path(bundle.path) if bundle.path is not None else Path(default_bundle_path())
        if not bundle.extractors:
            raise ModelError(
                f"model {path} does not record its extractors, so posters cannot be analysed",
                hint="retrain it with `postergenre train`, which records them",
            )
        resolved = resolve_device(device)
        built = [
            extractor_from_record(str(spec["extractor"]), dict(spec.get("config") or {}))
            for spec in bundle.extractors
        ]
        # Same names, versions, configs and feature names as at training, or a clear error.
        # (The input scale is the bundle's own: analysis applies it before every extractor.)
        scale = bundle.input_scale.to_record()
        bundle.check_extractors(
            [{**e.describe(), "input": scale} for e in built], source="this install's extractors"
        )
        # Loading runs conv/init ops too: same thread policy as analysis (resolve_device has
        # imported torch). With 2 spinning OpenMP threads on a shared 2-core machine, loading
        # the three networks took 9 s instead of 1-2 s.
        with _torch_threads(xgb_threads if share > 1 else None):
            extractors: dict[str, Extractor] = {e.name: e.load(resolved) for e in built}
        return cls(
            bundle, extractors, resolved, source=str(path), workers=workers, max_pixels=max_pixels
        )

    # -- analysis -----------------------------------------------------------------------
    def analyze(
        self,
        poster: Any,
        explain: bool = False,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        details: bool = False,
        keep_image: bool = True,
        at_least_one: bool = True,
    ) -> Analysis:
        """Analyse one poster: a path, an (H, W, 3) uint8 RGB array or a PIL image.

        Raises :class:`~postergenre.errors.PosterError` if the file cannot be read.
        ``top_k``: explain the ``top_k`` most probable genres instead of the predicted set.
        ``details`` (with ``explain``): also what a card draws and the cheap explanation
        leaves out: object boxes, the CNN's ImageNet classes and a Grad-CAM map of where
        the CNN looked for the top predicted genre.
        ``at_least_one``: the model's rule that every poster gets at least ``min_genres``
        genres (1 for the shipped model), the most probable ones when too few reach their
        thresholds; False predicts only genres at or over their threshold (maybe none).
        """
        result = self.analyze_many(
            [poster], explain=explain, threshold=threshold, top_k=top_k, details=details,
            keep_image=keep_image, raise_errors=True, at_least_one=at_least_one,
        )[0]  # fmt: skip
        assert isinstance(result, Analysis)
        return result

    def analyze_many(
        self,
        posters: Iterable[Any],
        explain: bool = False,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        details: bool = False,
        keep_image: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        raise_errors: bool = False,
        at_least_one: bool = True,
    ) -> list[Analysis | Failure]:
        """Analyse posters in batches (each extractor sees a batch at once), in order.

        A poster that cannot be read becomes a :class:`Failure` in its place (or raises,
        with ``raise_errors``); the others are analysed. See :meth:`iter_analyze` to get
        results as they are ready without keeping them all.
        """
        return list(
            self.iter_analyze(
                posters, explain, threshold=threshold, top_k=top_k, details=details,
                keep_image=keep_image, batch_size=batch_size, raise_errors=raise_errors,
                at_least_one=at_least_one,
            )
        )  # fmt: skip

    def iter_analyze(
        self,
        posters: Iterable[Any],
        explain: bool = False,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        details: bool = False,
        keep_image: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        raise_errors: bool = False,
        at_least_one: bool = True,
    ) -> Iterator[Analysis | Failure]:
        """:meth:`analyze_many` as a generator: one result per poster, in order, a batch
        at a time (for streaming output over thousands of posters)."""
        if threshold is not None and not (0.0 <= threshold <= 1.0):
            raise ConfigError(f"threshold: expected a probability in [0, 1], got {threshold}")
        if top_k is not None and top_k < 1:
            raise ConfigError(f"top-k: expected >= 1, got {top_k}")
        if batch_size < 1:
            raise ConfigError(f"batch size: expected >= 1, got {batch_size}")
        it = iter(posters)
        while chunk := list(itertools.islice(it, batch_size)):
            images: list[np.ndarray | None] = []
            paths: list[str | None] = []
            done: list[Analysis | Failure | None] = []
            for poster in chunk:
                path = _path_of(poster)
                paths.append(path)
                try:
                    images.append(_to_image(poster, self.max_pixels))
                    done.append(None)
                except PosterError as exc:
                    if raise_errors:
                        raise
                    images.append(None)
                    done.append(Failure(path, exc.kind, exc.message, exc.hint))
            ok = [i for i, im in enumerate(images) if im is not None]
            if ok:
                with self._lock, _torch_threads(self._intra_op if self.workers > 1 else None):
                    analysed = self._analyze_images(
                        [images[i] for i in ok],  # type: ignore[misc]
                        [paths[i] for i in ok],
                        explain=explain,
                        threshold=threshold,
                        top_k=top_k,
                        details=details,
                        keep_image=keep_image,
                        at_least_one=at_least_one,
                    )
                for i, a in zip(ok, analysed, strict=True):
                    done[i] = a
            for r in done:
                assert r is not None
                yield r

    # -- internals ------------------------------------------------------------------------
    def features(
        self, images: Sequence[np.ndarray], with_faces: bool = False
    ) -> tuple[np.ndarray, list[list[Detection]] | None]:
        """(n, F) feature rows in the bundle's order; with ``with_faces`` also the faces.

        Faces come from one detector pass: their feature row is computed from the very
        detections returned (``faces.poster_features``), so features and boxes agree.
        """
        faces: list[list[Detection]] | None = None

        def run(name: str) -> np.ndarray:
            nonlocal faces
            ext = self.extractors[name]
            if name == "faces" and with_faces:
                faces = ext.detect(images)
                return _faces_rows(faces, images)
            return ext.extract(images)

        names = list(self.extractors)
        if self.workers > 1 and len(names) > 1:
            pool = self._executor()
            futures = {n: pool.submit(run, n) for n in names}
            blocks = [futures[n].result() for n in names]
        else:
            blocks = [run(n) for n in names]
        X = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(images), 0), np.float32)
        if X.shape[1] != len(self.feature_names):
            raise ModelError(
                f"extractors gave {X.shape[1]} features, "
                f"the model expects {len(self.feature_names)}"
            )
        return X, faces

    def _executor(self) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="postergenre")
        return self._pool

    def close(self) -> None:
        """Stop the worker threads (they are also stopped at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _analyze_images(
        self,
        images: list[np.ndarray],
        paths: list[str | None],
        *,
        explain: bool,
        threshold: float | None,
        top_k: int | None,
        details: bool,
        keep_image: bool,
        at_least_one: bool = True,
    ) -> list[Analysis]:
        model = self.bundle.model
        # Every cue, detection and map is computed on the poster at the model's input scale.
        scale = self.bundle.input_scale
        decoded = [(int(im.shape[1]), int(im.shape[0])) for im in images]
        images = [scale.apply(im) for im in images]
        X, faces = self.features(images, with_faces=explain and "faces" in self.extractors)
        expl = None
        if explain:
            expl = model.explain(X)
            logit = np.asarray(expl.logit, dtype=np.float64)
            proba = _sigmoid(logit)
        else:
            proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        objects: list[list[Detection]] | None = None
        palettes: list[Any] | None = None
        imagenet: list[Any] | None = None
        if explain:
            color = self.extractors.get("color")
            if color is not None and hasattr(color, "palette"):
                palettes = [color.palette(im) for im in images]
        if explain and details:
            # Each of these costs another network pass, so only when asked for.
            if "objects" in self.extractors:
                objects = self.extractors["objects"].detect(images)
            cnn = self.extractors.get("cnn")
            if cnn is not None and hasattr(cnn, "imagenet_top") and _pretrained(cnn):
                imagenet = cnn.imagenet_top(images, k=3)
        thr = self.thresholds if threshold is None else np.full(len(self.genres), float(threshold))
        # The model's own rule (thresholds, then at least min_genres), as predict and
        # evaluate decide: one function for every predicted set.
        decided = model.decide(proba, thr) if at_least_one else model.decide(proba, thr, 0)
        out: list[Analysis] = []
        for i, image in enumerate(images):
            row = proba[i]
            order = np.argsort(-row, kind="stable")
            probs = {self.genres[j]: float(row[j]) for j in order}
            predicted = [self.genres[j] for j in order if decided[i, j]]
            a = Analysis(
                path=paths[i],
                size=(int(image.shape[1]), int(image.shape[0])),
                probabilities=probs,
                thresholds={g: float(t) for g, t in zip(self.genres, thr, strict=True)},
                predicted=predicted,
                image=image if keep_image else None,
                features=X[i].copy(),  # not a view: a result must not pin the batch
                feature_names=self.feature_names,
                source_size=decoded[i],
            )
            if explain and expl is not None:
                a.objects = objects[i] if objects is not None else None
                a.faces = faces[i] if faces is not None else None
                a.palette = palettes[i] if palettes is not None else None
                a.imagenet = imagenet[i] if imagenet is not None else None
                targets = [self.genres[j] for j in order[:top_k]] if top_k else predicted
                ctx = CueContext(
                    values=dict(zip(self.feature_names, X[i].tolist(), strict=True)),
                    reference=self._reference,
                    objects=a.objects or (),
                    faces=a.faces,
                    size=a.size,
                    imagenet=a.imagenet,
                    palette=a.palette,
                )
                cue_names = list(expl.cue_names)
                texts = describe_cues(cue_names, ctx)  # once per poster, not per genre
                for genre in targets:
                    j = self.genres.index(genre)
                    cues = group_contributions(
                        cue_names, np.asarray(expl.contributions[i, j]), ctx, texts
                    )
                    a.explanations[genre] = GenreExplanation(
                        genre=genre,
                        probability=float(row[j]),
                        threshold=float(thr[j]),
                        base=float(expl.base[i, j]),
                        logit=float(expl.logit[i, j]),
                        cues=tuple(cues),
                        groups=group_totals(cues),
                    )
                if details:
                    # Without the at-least-one rule nothing may be predicted: the top genre.
                    self._gradcam(a, image, X[i], predicted[0] if predicted else a.top_genre)
            out.append(a)
        return out

    def _gradcam(self, a: Analysis, image: np.ndarray, x: np.ndarray, genre: str) -> None:
        """Where the CNN looked for ``genre``: Grad-CAM along d logit / d embedding."""
        cnn = self.extractors.get("cnn")
        if cnn is None or not hasattr(cnn, "gradcam"):
            return
        direction, note = self.embedding_direction(x, genre)
        if direction is None:
            a.gradcam_note = note
            return
        a.gradcam = cnn.gradcam(image, direction)
        a.gradcam_genre = genre
        a.gradcam_note = note

    def embedding_direction(self, x: np.ndarray, genre: str) -> tuple[np.ndarray | None, str]:
        """d logit(genre) / d CNN embedding at feature row ``x`` (F,), and how it was got.

        The model's exact gradient (:meth:`GenrePredictor.logit_gradient`: its log-odds
        are linear in the base margins, and the MLP bases are differentiable) restricted
        to the CNN's columns. Returns (None, reason) when the model has no differentiable
        base on the embedding.
        """
        j = self.genres.index(genre)
        cnn = self.extractors.get("cnn")
        if cnn is None:
            return None, "this model uses no CNN features"
        position = {n: i for i, n in enumerate(self.feature_names)}
        grad = self.bundle.model.logit_gradient(np.asarray(x)[None, :])
        if grad is None:
            return None, "the model has no differentiable base on the CNN embedding"
        # In the order of the CNN's own features (what its Grad-CAM is along).
        g = np.array(
            [grad[0, j, position[n]] if n in position else 0.0 for n in cnn.feature_names()]
        )
        if not np.all(np.isfinite(g)) or not np.any(g):
            return None, "the genre's log-odds do not change along the CNN embedding here"
        return g.astype(np.float32), "Grad-CAM along the exact gradient of the genre's log-odds"


def _default_workers(n_extractors: int) -> int:
    return max(1, min(3, os.cpu_count() or 1, n_extractors))


class _torch_threads:
    """Set torch's intra-op thread count for a block and restore it after (if torch is in).

    Worker threads take the count in force when they first run a parallel op, and keep it.
    """

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.saved: int | None = None

    def __enter__(self) -> None:
        import sys

        torch = sys.modules.get("torch")
        if self.n is not None and torch is not None and torch.get_num_threads() != self.n:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import torch

            torch.set_num_threads(self.saved)
            self.saved = None


def _faces_rows(faces: list[list[Detection]], images: Sequence[np.ndarray]) -> np.ndarray:
    from postergenre.features.faces import EXPRESSIONS, poster_features

    rows = []
    for found, image in zip(faces, images, strict=True):
        boxes = np.array([d.box for d in found], dtype=np.float64).reshape(-1, 4)
        probs = np.array(
            [[d.extra[e] for e in EXPRESSIONS] for d in found], dtype=np.float64
        ).reshape(-1, len(EXPRESSIONS))
        rows.append(poster_features(boxes, probs, image.shape[0], image.shape[1]))
    return np.stack(rows).astype(np.float32)


def _pretrained(ext: Any) -> bool:
    return bool(getattr(getattr(ext, "config", None), "pretrained", True))


def _reference_table(reference: Any, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """The bundle's training-set reference, as name -> {median, p10, p90}.

    Accepts the mapping form or a columnar form ({"median": [...], ...} in feature order).
    """
    if not reference:
        return {}
    if isinstance(reference, dict) and all(isinstance(v, dict) for v in reference.values()):
        if set(reference) & set(names):
            return {k: {s: float(x) for s, x in v.items()} for k, v in reference.items()}
        cols = reference
    else:
        cols = reference
    try:
        stats = {s: np.asarray(cols[s], dtype=np.float64) for s in ("median", "p10", "p90")}
    except (KeyError, TypeError, ValueError):
        return {}
    names_in = list(cols.get("feature_names", names)) if isinstance(cols, dict) else list(names)
    return {
        n: {s: float(stats[s][k]) for s in stats}
        for k, n in enumerate(names_in)
        if k < len(stats["median"])
    }


def _path_of(poster: Any) -> str | None:
    if isinstance(poster, (str, os.PathLike)):
        return os.fspath(poster)
    return None


def _to_image(poster: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    from postergenre.features.base import check_rgb
    from postergenre.images import load_poster, to_rgb

    if isinstance(poster, (str, os.PathLike)):
        return load_poster(poster, max_pixels=max_pixels)
    if isinstance(poster, np.ndarray):
        check_rgb(poster, where="poster")
        return poster
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(poster, Image.Image):
        return to_rgb(poster)
    raise ConfigError(
        f"poster: expected a file path, an (H, W, 3) uint8 array or a PIL image, "
        f"got {type(poster).__name__}"
    )


# -- the shared analyzer used by postergenre.analyze -----------------------------------------------

_CACHE: dict[tuple[str | None, str], Analyzer] = {}
_CACHE_LOCK = threading.Lock()


def default_analyzer(model: str | os.PathLike[str] | None = None, device: str = "auto") -> Analyzer:
    """The analyzer for ``model`` (default: the shipped one), loaded on first use and kept."""
    key = (None if model is None else os.path.abspath(os.fspath(model)), device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Analyzer.load(model, device=device)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget the loaded analyzers (frees their models)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def logit_check(e: GenreExplanation) -> float:
    """|base + sum(cues) - logit| for one explanation (0 up to float rounding)."""
    return abs(e.base + math.fsum(c.contribution for c in e.cues) - e.logit)
