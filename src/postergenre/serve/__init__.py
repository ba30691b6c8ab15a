"""``postergenre serve``: a web page to drop posters on, and an HTTP API, in one process.

The model and its extractors are loaded once, at start-up; see :mod:`postergenre.serve.app`
for the routes and :class:`~postergenre.serve.config.ServeConfig` for the limits. Importing
this package is cheap: FastAPI and the model are imported only when a server is made.
"""

from __future__ import annotations

from postergenre.serve.config import ServeConfig

__all__ = ["ServeConfig"]
