"""Errors of one HTTP request, each with the JSON body and status the client gets.

Every error body has the keys of ``analyze --json``'s failure lines: ``error`` (one line),
``kind`` (machine-readable) and ``hint`` (how to fix it). Poster kinds are the CLI's own
(``empty``, ``not_image``, ``corrupt``, ``too_large``, ``too_small``); the request kinds
are below.
"""

from __future__ import annotations

from typing import Any

from postergenre.errors import PosterGenreError

#: HTTP status of each poster failure kind (any other: 422).
POSTER_STATUS = {"too_large": 413, "not_image": 415}


class RequestError(PosterGenreError):
    """A request the server refuses as a whole (``status`` 4xx or 5xx), with a hint.

    Kinds: ``no_files``, ``too_many_files``, ``too_large``, ``wrong_field``,
    ``bad_parameter``, ``bad_request``, ``busy``, ``not_ready``, ``timeout``,
    ``not_found``, ``internal``.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        hint: str | None = None,
        *,
        status: int = 400,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message, "kind": self.kind}
        if self.hint:
            out["hint"] = self.hint
        return out

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def poster_status(kinds: list[str]) -> int:
    """The status of a response whose posters failed with ``kinds`` (one shared, or 422)."""
    statuses = {POSTER_STATUS.get(k, 422) for k in kinds}
    return statuses.pop() if len(statuses) == 1 else 422
