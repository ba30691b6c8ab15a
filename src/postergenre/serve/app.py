"""The FastAPI application: the page, ``/api/analyze``, ``/api/card``, health and model info.

Uploads are parsed with Starlette's multipart parser from a byte-counted stream, only
after the request has been admitted (so a refused request costs no memory), with the
file and field counts bounded. Starlette keeps each file in memory up to 1 MB and beyond
that in an anonymous temporary file, closed (and so gone) when the request ends; the
``serve`` command points those at a private temporary directory removed at exit. No
client-supplied name is ever used as a path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from postergenre import __version__
from postergenre.serve.config import FORM_OVERHEAD_BYTES, ServeConfig
from postergenre.serve.errors import RequestError
from postergenre.serve.service import (
    AnalyzeOptions,
    PosterService,
    Slot,
    Upload,
    display_name,
    size_words,
)

if TYPE_CHECKING:
    from postergenre.analysis import Analyzer

#: Form fields that carry posters; anything else in the form is a ``wrong_field``.
FILE_FIELDS = ("files", "file")
#: Text fields tolerated in a form (none are needed: options are query parameters).
MAX_FORM_FIELDS = 4

_FILES_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Poster images (JPEG, PNG, WebP, BMP, TIFF, GIF).",
                        }
                    },
                }
            }
        },
    }
}
_CARD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad request: `kind` says which (no_files, wrong_field, ...)"},
    413: {"description": "A poster or the request is too large (`too_large`)"},
    415: {"description": "Not an image (`not_image`)"},
    422: {"description": "A poster could not be read, or a bad parameter"},
    503: {"description": "Busy (`busy`, with Retry-After) or the model is not loaded yet"},
    408: {"description": "The upload took longer than the server's timeout (`timeout`)"},
    504: {"description": "The analysis took longer than the server's timeout (`timeout`)"},
}


def create_app(
    config: ServeConfig | None = None,
    analyzer: Analyzer | None = None,
    *,
    on_ready: Callable[[PosterService], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The ASGI app. Without ``analyzer`` the model of ``config`` is loaded at start-up,
    in the background (``/api/health`` says ``loading`` until it is ready)."""
    cfg = config or ServeConfig()
    service = PosterService(cfg, analyzer, on_ready=on_ready, on_error=on_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)

    app = FastAPI(
        title="postergenre",
        version=__version__,
        summary="Genres of movie posters, with the cues behind each guess.",
        lifespan=lifespan,
    )
    app.state.service = service
    static = resources.files("postergenre.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    _install_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/health", summary="Whether the model is loaded, and the queue")
    async def health() -> JSONResponse:
        body = service.health()
        if body["status"] == "ready":
            return JSONResponse(body)
        headers = {"Retry-After": "1"} if body["status"] == "loading" else {}
        return JSONResponse(body, status_code=503, headers=headers)

    @app.get("/api/model", summary="Genres, thresholds, extractor versions, model metrics")
    async def model() -> dict[str, Any]:
        return service.model_info()

    @app.post(
        "/api/analyze",
        summary="Analyse posters",
        description=(
            "Upload one or more posters as multipart form field `files`. The body is "
            '`{"results": [...]}`, one object per poster in upload order, each exactly '
            "what `postergenre analyze --json` prints for it (`path` is the uploaded file "
            "name). If any poster cannot be read the status is 4xx (413, 415 or 422) and "
            "the body still holds every result, with `error`, `kind` and `hint` on top."
        ),
        openapi_extra=_FILES_SCHEMA,
        responses=_ERROR_RESPONSES,
    )
    async def analyze(
        request: Request,
        explain: Annotated[
            bool, Query(description="Add the cues behind each explained genre.")
        ] = False,
        top_k: Annotated[
            int | None,
            Query(ge=1, description="Explain the N most probable genres, not the predicted."),
        ] = None,
        threshold: Annotated[
            str,
            Query(description="'auto' (the model's per-genre thresholds) or a probability."),
        ] = "auto",
        cues: Annotated[int, Query(ge=1, le=50, description="Cues listed per genre.")] = 5,
    ) -> JSONResponse:
        options = AnalyzeOptions(explain, top_k, parse_threshold(threshold), cues)
        slot, uploads = await _admit_and_read(service, request, cfg.max_files)
        outcome = await _run(service, slot, service.analyze, uploads, options)
        return JSONResponse(outcome.body(), status_code=outcome.status)

    @app.post(
        "/api/card",
        summary="The PNG card of one poster",
        description=(
            "Upload one poster as multipart form field `file` (or `files`); the answer is "
            "the PNG that `postergenre analyze --card` draws: the poster with its "
            "detections, the genre bars and the strongest cues. Errors are JSON, as for "
            "/api/analyze."
        ),
        openapi_extra=_CARD_SCHEMA,
        responses={200: {"content": {"image/png": {}}}, **_ERROR_RESPONSES},
        response_class=Response,
    )
    async def card(
        request: Request,
        top_k: Annotated[int | None, Query(ge=1)] = None,
        threshold: Annotated[str, Query()] = "auto",
        cues: Annotated[int, Query(ge=1, le=6)] = 4,
    ) -> Response:
        options = AnalyzeOptions(True, top_k, parse_threshold(threshold), cues)
        slot, uploads = await _admit_and_read(service, request, 1)
        png = await _run(service, slot, service.card, uploads[0], options)
        return Response(
            png,
            media_type="image/png",
            headers={"Content-Disposition": 'inline; filename="card.png"'},
        )

    return app


async def _admit_and_read(
    service: PosterService, request: Request, max_files: int
) -> tuple[Slot, list[Upload]]:
    """A place in the queue (or ``busy``), then the posters, read within the time limit:
    a client that uploads slowly cannot hold a place forever."""
    slot = service.admit()
    try:
        read = read_uploads(request, service.config, FILE_FIELDS, max_files)
        uploads = await asyncio.wait_for(read, service.config.timeout_s)
    except TimeoutError:
        slot.release()
        raise RequestError(
            "timeout",
            f"the upload took longer than this server's {service.config.timeout_s:g} s limit",
            "send fewer or smaller posters at a time",
            status=408,
        ) from None
    except BaseException:
        slot.release()
        raise
    return slot, uploads


async def _run(service: PosterService, slot: Slot, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread, within the request's remaining time."""
    future = service.submit(slot, fn, *args)
    remaining = service.config.timeout_s - (time.monotonic() - slot.admitted_at)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), max(remaining, 0.001))
    except TimeoutError:
        raise RequestError(
            "timeout",
            f"the analysis took longer than this server's {service.config.timeout_s:g} s limit",
            "send fewer or smaller posters at a time, or start the server with a larger --timeout",
            status=504,
        ) from None


def parse_threshold(value: str) -> float | None:
    """``auto`` -> None (the model's per-genre thresholds); else a probability in [0, 1]."""
    if value.strip().lower() == "auto":
        return None
    try:
        t = float(value)
    except ValueError:
        t = float("nan")
    if not 0.0 <= t <= 1.0:
        raise RequestError(
            "bad_parameter",
            f"threshold: expected 'auto' or a number in [0, 1], got {value!r}",
            "leave it out (or 'auto') for the model's tuned per-genre thresholds",
            status=422,
        )
    return t


async def read_uploads(
    request: Request, cfg: ServeConfig, fields: tuple[str, ...], max_files: int
) -> list[Upload]:
    """The posters of a multipart request, or RequestError for a form the API does not take."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError(
            "bad_request",
            f"expected a multipart/form-data upload, got {content_type or 'no content type'!r}",
            f"send the posters as form field {fields[0]!r}, e.g. "
            f"curl -F {fields[0]}=@poster.jpg URL",
            status=415,
        )
    limit = max_files * cfg.max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    parser = MultiPartParser(
        request.headers,
        _bounded(request.stream(), limit),
        max_files=max_files,
        max_fields=MAX_FORM_FIELDS,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise RequestError(
                "too_many_files",
                f"more than {max_files} files in one request",
                f"send at most {max_files} posters per request"
                + (", or start the server with a larger --max-files" if max_files > 1 else ""),
                status=413,
            ) from None
        if exc.message.startswith("Too many fields"):
            raise _wrong_field("too many text fields", fields) from None
        raise RequestError(
            "bad_request", f"malformed multipart upload ({exc.message})", status=400
        ) from None
    try:
        uploads: list[Upload] = []
        for name, value in form.multi_items():
            if name not in fields:
                raise _wrong_field(f"unexpected form field {name!r}", fields)
            if not isinstance(value, UploadFile):
                raise _wrong_field(f"form field {name!r} holds text, not a file", fields)
            data = await value.read()
            uploads.append(Upload(display_name(value.filename, len(uploads)), data))
    finally:
        await form.close()
    if not uploads:
        raise RequestError(
            "no_files",
            "no posters in the request",
            f"send one or more files as form field {fields[0]!r}",
            status=400,
        )
    return uploads


async def _bounded(stream: AsyncGenerator[bytes, None], limit: int) -> AsyncGenerator[bytes, None]:
    """The request body, refused as ``too_large`` as soon as it passes ``limit`` bytes
    (a client may lie in Content-Length or send chunked)."""
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit, at_least=True)
        yield chunk


def _too_large(size: int, limit: int, at_least: bool = False) -> RequestError:
    return RequestError(
        "too_large",
        f"the upload is {'over ' if at_least else ''}{size_words(size)}, over this "
        f"server's {size_words(limit)} limit per request",
        "send fewer or smaller posters, or start the server with a larger --max-upload-mb",
        status=413,
    )


def _wrong_field(what: str, fields: tuple[str, ...]) -> RequestError:
    return RequestError(
        "wrong_field",
        what,
        f"send posters as file uploads in form field {fields[0]!r}; options "
        "(explain, top_k, threshold, cues) go in the query string",
        status=400,
    )


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with error, kind and hint, never an HTML page or a traceback."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body"))
            problems.append(f"{where}: {e.get('msg', 'invalid')}")
        err = RequestError(
            "bad_parameter",
            "; ".join(problems) or "invalid parameters",
            "see /docs for the parameters",
            status=422,
        )
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        body = {"error": str(exc.detail), "kind": kind}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        import logging

        logging.getLogger("postergenre.serve").exception("unexpected error")
        body = {
            "error": f"internal error ({type(exc).__name__})",
            "kind": "internal",
            "hint": "see the server's log; the server keeps serving",
        }
        return JSONResponse(body, status_code=500)
