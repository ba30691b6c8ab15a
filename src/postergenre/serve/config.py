"""What ``postergenre serve`` is allowed to do: address, model, and the limits on requests."""

from __future__ import annotations

from dataclasses import dataclass

from postergenre.errors import ConfigError

#: Loopback only unless the user says otherwise: analysing posters for the whole network
#: is a deliberate choice (``--host 0.0.0.0``).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: A 600 dpi scan of a one-sheet is about 25 MB as a high-quality JPEG.
DEFAULT_MAX_FILE_BYTES = 25 * 1024 * 1024
#: Below the CLI's 50 MP: a server holds several decoded posters at once.
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_FILES = 16
#: Requests admitted at once (running or waiting for the model); the next gets 503.
DEFAULT_QUEUE = 8
DEFAULT_TIMEOUT_S = 60.0
#: Requests decoded and analysed side by side. The model itself runs one batch at a time
#: (the analyzer serialises it); a second thread decodes the next request's posters meanwhile.
DEFAULT_THREADS = 2
#: Multipart overhead allowed on top of the files themselves (headers, boundaries).
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server process.

    ``model``: a bundle folder (None: the shipped model); ``prior``: a genre-mix file the
    model's probabilities and thresholds are adapted to (``analyze --prior``).
    ``max_file_bytes`` and ``max_pixels`` bound each poster (bytes on the wire, width x
    height from its header);
    ``max_files`` the posters in one request; ``queue`` the requests admitted at once;
    ``timeout_s`` one request's analysis, counted from its admission.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    model: str | None = None
    prior: str | None = None
    device: str = "auto"
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_files: int = DEFAULT_MAX_FILES
    queue: int = DEFAULT_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S
    threads: int = DEFAULT_THREADS
    cues: int = 5
    access_log: bool = False

    def __post_init__(self) -> None:
        _at_least("port", self.port, 0)
        if self.port > 65535:
            raise ConfigError(f"port: expected 0..65535, got {self.port}")
        _at_least("max_file_bytes", self.max_file_bytes, 1)
        _at_least("max_pixels", self.max_pixels, 1)
        _at_least("max_files", self.max_files, 1)
        _at_least("queue", self.queue, 1)
        _at_least("threads", self.threads, 1)
        _at_least("cues", self.cues, 1)
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s: expected > 0 seconds, got {self.timeout_s}")


def _at_least(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name}: expected an integer >= {low}, got {value!r}")
