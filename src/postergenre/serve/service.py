"""The server's work without HTTP: one analyzer loaded once, bounded admission, uploads in.

:class:`PosterService` loads the model in a background thread (the page can say "loading"
meanwhile), admits at most ``config.queue`` requests at once (the next is refused with
``busy`` rather than queued in memory), and runs each admitted request in a small thread
pool. Uploaded posters stay in memory as bytes; they are decoded here, never written out.
"""

from __future__ import annotations

import io
import math
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from postergenre.errors import PosterError, PosterGenreError
from postergenre.serve.config import ServeConfig
from postergenre.serve.errors import RequestError, poster_status

if TYPE_CHECKING:
    import numpy as np

    from postergenre.analysis import Analysis, Analyzer, Failure

T = TypeVar("T")

#: Posters decoded and analysed together: the extractors like batches, but each decoded
#: poster can be ~100 MB at the pixel limit, so a request never holds more than this many.
BATCH = 4
#: JSON keys only ``explain`` adds (as ``analyze --json`` without ``--explain`` drops them).
EXPLAIN_KEYS = ("explanations", "objects", "faces", "palette", "imagenet", "gradcam")


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the client's file name (for display only, never a path) and bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class AnalyzeOptions:
    """``explain``: cues per explained genre; ``top_k``: explain the k most probable genres
    instead of the predicted set; ``threshold``: one probability for every genre (None:
    the model's tuned thresholds); ``cues``: cues listed per genre before "other cues"."""

    explain: bool = False
    top_k: int | None = None
    threshold: float | None = None
    cues: int = 5


@dataclass(frozen=True)
class Outcome:
    """What one analyse request produced: one JSON object per poster, in upload order."""

    results: list[dict[str, Any]]
    failed_kinds: list[str]

    @property
    def status(self) -> int:
        return 200 if not self.failed_kinds else poster_status(self.failed_kinds)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"results": self.results}
        if self.failed_kinds:
            # Like the CLI's exit code 1: the request failed if any poster did; the first
            # failure is repeated on top so every error body has error, kind and hint.
            first = next(r for r in self.results if "error" in r)
            n = len(self.failed_kinds)
            out["error"] = (
                first["error"]
                if n == 1
                else f"{n} of {len(self.results)} posters could not be analysed; "
                f"first: {first['error']}"
            )
            out["kind"] = first["kind"]
            if first.get("hint"):
                out["hint"] = first["hint"]
        return out


class Slot:
    """One admitted request's place in the queue; released exactly once."""

    def __init__(self, service: PosterService) -> None:
        self._service = service
        self._released = False
        self._lock = threading.Lock()
        self.admitted_at = time.monotonic()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._service._leave()


class PosterService:
    """The model, its loading state, the admission count and the worker threads.

    ``analyzer``: an already loaded analyzer (tests, embedding); None loads
    ``config.model`` in a background thread on :meth:`start`. ``on_ready(service)`` and
    ``on_error(error)`` are called from that thread when loading ends.
    """

    def __init__(
        self,
        config: ServeConfig,
        analyzer: Analyzer | None = None,
        *,
        on_ready: Callable[[PosterService], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.config = config
        self.analyzer = analyzer
        self.on_ready = on_ready
        self.on_error = on_error
        self.error: BaseException | None = None
        self.load_seconds: float | None = None
        self._owns_analyzer = analyzer is None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._in_use = 0
        self._seconds_ewma = 1.0
        self._executor: ThreadPoolExecutor | None = None
        self._loader: threading.Thread | None = None
        if analyzer is not None:
            self._ready.set()

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads and, without an analyzer, load the model in the background."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.config.threads, thread_name_prefix="postergenre-serve"
            )
        if self.analyzer is None and self._loader is None:
            self._loader = threading.Thread(
                target=self._load, name="postergenre-serve-load", daemon=True
            )
            self._loader.start()
        elif self.analyzer is not None and self.on_ready is not None:
            self.on_ready(self)

    def _load(self) -> None:
        from postergenre.analysis import Analyzer

        t0 = time.perf_counter()
        try:
            analyzer = Analyzer.load(
                self.config.model, device=self.config.device, prior=self.config.prior
            )
        except BaseException as exc:  # reported through health and on_error, not lost
            self.error = exc
            if self.on_error is not None:
                self.on_error(exc)
            return
        self.load_seconds = time.perf_counter() - t0
        self.analyzer = analyzer
        self._ready.set()
        if self.on_ready is not None:
            self.on_ready(self)

    def close(self) -> None:
        """Stop the worker threads (waiting for running analyses) and free the model."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._owns_analyzer and self.analyzer is not None:
            self.analyzer.close()

    # -- state ------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self._ready.is_set():
            return "ready"
        return "failed" if self.error is not None else "loading"

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    def health(self) -> dict[str, Any]:
        from postergenre import __version__

        out: dict[str, Any] = {
            "status": self.state,
            "version": __version__,
            "queue": {"capacity": self.config.queue, "in_use": self.in_use},
        }
        if self.load_seconds is not None:
            out["load_seconds"] = round(self.load_seconds, 3)
        if self.error is not None:
            out["error"] = _message(self.error)
            hint = getattr(self.error, "hint", "")
            if hint:
                out["hint"] = hint
        return out

    def model_info(self) -> dict[str, Any]:
        """Genres, thresholds, extractors and the model card's metrics, for ``/api/model``."""
        analyzer = self.require_ready()
        bundle = analyzer.bundle
        card = dict(getattr(bundle, "card", None) or {})
        return {
            "name": card.get("name"),
            "summary": card.get("summary"),
            "created": card.get("created"),
            "genres": list(analyzer.genres),
            "thresholds": {
                g: float(t) for g, t in zip(analyzer.genres, analyzer.thresholds, strict=True)
            },
            "extractors": [
                {
                    "name": str(e.get("extractor")),
                    "version": str(e.get("version")),
                    "config": dict(e.get("config") or {}),
                }
                for e in bundle.extractors
            ],
            "metrics": card.get("metrics", {}),
            # The genre mix the probabilities refer to: the adapted one (serve --prior), or
            # the reference prior the model was trained towards.
            "prior": {
                "file": self.config.prior,
                "shares": {
                    g: float(v)
                    for g, v in zip(analyzer.genres, bundle.model.reference_prior, strict=True)
                },
                "given": card.get("adapted_prior_given"),
                "ignored": card.get("adapted_prior_ignored"),
            },
            "limits": {
                "max_file_bytes": self.config.max_file_bytes,
                "max_pixels": self.config.max_pixels,
                "max_files": self.config.max_files,
                "queue": self.config.queue,
                "timeout_s": self.config.timeout_s,
            },
        }

    def require_ready(self) -> Analyzer:
        if self.analyzer is not None and self._ready.is_set():
            return self.analyzer
        if self.error is not None:
            raise RequestError(
                "not_ready",
                f"the model could not be loaded: {_message(self.error)}",
                getattr(self.error, "hint", None) or "see the server's log",
                status=503,
            )
        raise RequestError(
            "not_ready",
            "the model is still loading",
            "try again in a few seconds",
            status=503,
            retry_after=1,
        )

    # -- admission --------------------------------------------------------------------------
    def admit(self) -> Slot:
        """A place for one request, or RequestError ``busy`` (503) when the queue is full."""
        self.require_ready()
        with self._lock:
            if self._in_use >= self.config.queue:
                wait = max(1, math.ceil(self._seconds_ewma))
                raise RequestError(
                    "busy",
                    f"the server is analysing {self._in_use} requests, its limit "
                    f"(--queue {self.config.queue})",
                    f"retry after {wait} s",
                    status=503,
                    retry_after=wait,
                )
            self._in_use += 1
        return Slot(self)

    def _leave(self) -> None:
        with self._lock:
            self._in_use -= 1

    def submit(self, slot: Slot, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in a worker thread; ``slot`` is released when it ends (even
        after its request timed out: the queue counts work still holding memory)."""
        if self._executor is None:
            raise RequestError("not_ready", "the server is shutting down", status=503)

        def timed() -> T:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                seconds = time.perf_counter() - t0
                with self._lock:
                    self._seconds_ewma = 0.8 * self._seconds_ewma + 0.2 * seconds

        future = self._executor.submit(timed)
        future.add_done_callback(lambda _: slot.release())
        return future

    # -- the work (runs in worker threads) ---------------------------------------------------
    def analyze(self, uploads: list[Upload], options: AnalyzeOptions) -> Outcome:
        """Every upload's ``analyze --json`` object, in order; unreadable ones as failures."""
        from postergenre.analysis import Analysis, Failure

        analyzer = self.require_ready()
        results: list[dict[str, Any]] = []
        failed: list[str] = []
        for start in range(0, len(uploads), BATCH):
            chunk = uploads[start : start + BATCH]
            decoded = [self.decode(u) for u in chunk]
            images = [d for d in decoded if not isinstance(d, Failure)]
            analysed = iter(
                analyzer.analyze_many(
                    images,
                    explain=options.explain,
                    threshold=options.threshold,
                    top_k=options.top_k,
                    batch_size=BATCH,
                )
                if images
                else []
            )
            for upload, d in zip(chunk, decoded, strict=True):
                result = d if isinstance(d, Failure) else next(analysed)
                if isinstance(result, Analysis):
                    results.append(analysis_json(result, upload.name, options))
                else:
                    failed.append(result.kind)
                    results.append(result.to_dict())
        return Outcome(results, failed)

    def card(self, upload: Upload, options: AnalyzeOptions) -> bytes:
        """The PNG card of one poster (as ``analyze --card`` draws it)."""
        from postergenre.analysis import Failure
        from postergenre.card import CardStyle, render_card

        analyzer = self.require_ready()
        decoded = self.decode(upload)
        if isinstance(decoded, Failure):
            raise RequestError(
                decoded.kind,
                decoded.message,
                decoded.hint or None,
                status=poster_status([decoded.kind]),
            )
        analysis = analyzer.analyze(
            decoded,
            explain=True,
            threshold=options.threshold,
            top_k=options.top_k,
            details=True,
            keep_image=True,
        )
        analysis.path = upload.name
        image = render_card(analysis, CardStyle(cues_per_genre=min(options.cues, 6)))
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()

    def decode(self, upload: Upload) -> np.ndarray | Failure:
        """The poster's RGB pixels, or a Failure with the CLI's kind and hint."""
        from postergenre.analysis import Failure
        from postergenre.images import decode_poster

        limit = self.config.max_file_bytes
        if len(upload.data) > limit:
            return Failure(
                upload.name,
                "too_large",
                f"{upload.name}: {size_words(len(upload.data))} is over this server's "
                f"{size_words(limit)} limit per file",
                "downscale or recompress the poster, or start the server with a larger "
                "--max-upload-mb",
            )
        if not upload.data:  # worded as the CLI words an empty file (images.read_bytes)
            return Failure(
                upload.name,
                "empty",
                f"{upload.name}: file is empty (0 bytes)",
                "re-download or re-export the poster",
            )
        try:
            return decode_poster(upload.data, name=upload.name, max_pixels=self.config.max_pixels)
        except PosterError as exc:
            return Failure(upload.name, exc.kind, exc.message, exc.hint)


def analysis_json(a: Analysis, name: str, options: AnalyzeOptions) -> dict[str, Any]:
    """The object ``analyze --json`` prints for this poster, with the upload's name as path."""
    obj = a.to_dict(options.cues)
    obj["path"] = name
    if not options.explain:
        for key in EXPLAIN_KEYS:
            obj.pop(key, None)
    return obj


def display_name(filename: str | None, index: int) -> str:
    """A client's file name fit to show: its last path component, printable, bounded.

    Only ever echoed back in results; the server never opens, creates or joins it.
    """
    raw = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C").strip()
    return clean[:200] or f"poster-{index + 1}"


def size_words(n: int) -> str:
    """Bytes in words: "25.0 MB", "117 kB" (binary units, as --max-upload-mb)."""
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{math.ceil(n / 1024)} kB"


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, PosterGenreError) else f"{type(exc).__name__}: {exc}"
