"""Typed errors. Each carries a hint that tells the user how to fix the problem.

Only the CLI turns these into exit codes (see ``postergenre.cli``).
"""

from __future__ import annotations


class PosterGenreError(Exception):
    """Base class of every error postergenre raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class PosterError(PosterGenreError):
    """A poster file could not be turned into an RGB image.

    ``kind`` is a short machine-readable reason, used as the ``status`` of store rows:
    ``missing``, ``empty``, ``unreadable``, ``not_image``, ``corrupt``, ``too_large``,
    ``too_small``.
    """

    def __init__(self, path: object, kind: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}", hint)
        self.path = path
        self.kind = kind


class WeightsError(PosterGenreError):
    """A pretrained file is missing, corrupt, or could not be fetched."""

    hint = (
        "run `postergenre weights fetch`, "
        "or `postergenre weights import FILE` for a file got by hand"
    )


class StoreError(PosterGenreError):
    """A feature store is missing, damaged, or made with another extractor config."""


class ModelError(PosterGenreError):
    """A model bundle is missing, unsafe, or does not match the features given to it."""


class ConfigError(PosterGenreError):
    """An option or configuration value is invalid."""


class DataError(PosterGenreError):
    """Labels or training data are unusable (no rows, no genres, bad columns)."""
