"""Run the app under uvicorn: bind first (clear errors, port 0 allowed), then serve.

The model loads in the background while the page is already served; the command says on
stderr when it is ready, and stops with the loading error (exit 1) if it cannot load.
Uploads that Starlette spools past 1 MB go to a private temporary directory, removed at exit.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from postergenre.errors import ConfigError
from postergenre.serve.config import ServeConfig

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def require_stack() -> None:
    """ConfigError naming what is missing when the optional ``serve`` extra is not installed."""
    import importlib.util

    wanted = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}
    missing = [pkg for mod, pkg in wanted.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(
            f"postergenre serve needs {', '.join(missing)}, which is not installed",
            hint='pip install "postergenre[serve]"',
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port), or ConfigError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(
            f"--host {host}: not an address of this machine ({exc.strerror})",
            hint="use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            hint="choose another --port (0 picks a free one), or stop what uses this one",
        ) from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


@contextlib.contextmanager
def private_tempdir() -> Iterator[str]:
    """Point :mod:`tempfile` (and so Starlette's spooled uploads) at a fresh directory."""
    saved = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="postergenre-serve-") as path:
        tempfile.tempdir = path
        try:
            yield path
        finally:
            tempfile.tempdir = saved


class _Stop(Exception):
    """Ctrl-C or SIGTERM, after uvicorn's graceful shutdown re-raised it."""


@contextlib.contextmanager
def _stop_quietly() -> Iterator[None]:
    """End on Ctrl-C / SIGTERM through our own clean-up (exit 0), not by the signal.

    uvicorn shuts down gracefully on these, then raises the signal again under the handlers
    that were in place before it: with the default ones the process would die there,
    before the temporary directory is removed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _Stop(signum)

    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stop:
        pass
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_server(config: ServeConfig, say: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM). Raises the model's loading error, if any."""
    import uvicorn

    from postergenre.serve.app import create_app

    def default_say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    tell = say or default_say
    sock = bind(config.host, config.port)
    url = url_of(sock)
    failure: list[BaseException] = []
    server: Any = None

    def on_ready(service: Any) -> None:
        took = f" in {service.load_seconds:.1f} s" if service.load_seconds is not None else ""
        tell(f"postergenre serve: model loaded{took}; ready at {url}")

    def on_error(exc: BaseException) -> None:
        failure.append(exc)
        if server is not None:
            server.should_exit = True

    with private_tempdir():
        app = create_app(config, on_ready=on_ready, on_error=on_error)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=config.access_log,
                timeout_graceful_shutdown=5,
            )
        )
        if config.host not in LOOPBACK:
            tell(
                f"postergenre serve: listening on {config.host}: anyone who can reach this "
                "machine can use it"
            )
        tell(f"postergenre serve: serving {url} (loading the model...)")
        try:
            with _stop_quietly():
                server.run(sockets=[sock])
        finally:
            sock.close()
        tell("postergenre serve: stopped")
    if failure:
        raise failure[0]
