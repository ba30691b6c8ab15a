"""``postergenre serve``: the web page and the HTTP API (needs the ``serve`` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from postergenre.cli.analyze import Device
from postergenre.cli.common import ModelDir, PriorFile
from postergenre.serve.config import (
    DEFAULT_HOST,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_PORT,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT_S,
    ServeConfig,
)

HELP = (
    "Serve a web page to drop posters on (genre bars, predicted genres, the cues behind "
    "them, the card) and an HTTP API (POST /api/analyze, POST /api/card, GET /api/health, "
    "GET /api/model; OpenAPI docs at /docs). The model loads once, at start-up. Listens on "
    "127.0.0.1 only, unless --host says otherwise."
)


def register(app: typer.Typer) -> None:
    @app.command("serve", help=HELP)
    def serve_cmd(
        host: Annotated[
            str,
            typer.Option(
                "--host", help="Address to listen on; 0.0.0.0 serves every network interface."
            ),
        ] = DEFAULT_HOST,
        port: Annotated[
            int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
        ] = DEFAULT_PORT,
        model: ModelDir = None,
        prior: PriorFile = None,
        device: Annotated[Device, typer.Option("--device", help="Where models run.")] = Device.auto,
        max_upload_mb: Annotated[
            float,
            typer.Option("--max-upload-mb", min=0.01, help="Largest poster file accepted, in MB."),
        ] = DEFAULT_MAX_FILE_BYTES / 2**20,
        max_pixels: Annotated[
            int,
            typer.Option("--max-pixels", min=1, help="Largest poster accepted, width x height."),
        ] = DEFAULT_MAX_PIXELS,
        max_files: Annotated[
            int, typer.Option("--max-files", min=1, help="Posters accepted in one request.")
        ] = DEFAULT_MAX_FILES,
        queue: Annotated[
            int,
            typer.Option(
                "--queue",
                min=1,
                help="Requests admitted at once (analysing or waiting); more get 503 + "
                "Retry-After.",
            ),
        ] = DEFAULT_QUEUE,
        timeout: Annotated[
            float,
            typer.Option("--timeout", min=0.1, help="Seconds one request may take (then 504)."),
        ] = DEFAULT_TIMEOUT_S,
        access_log: Annotated[
            bool, typer.Option("--access-log", help="Log every request on stdout.")
        ] = False,
    ) -> None:
        from postergenre.serve.server import require_stack, run_server

        require_stack()
        config = ServeConfig(
            host=host,
            port=port,
            model=None if model is None else str(model),
            prior=None if prior is None else str(prior),
            device=device.value,
            max_file_bytes=int(max_upload_mb * 2**20),
            max_pixels=max_pixels,
            max_files=max_files,
            queue=queue,
            timeout_s=timeout,
            access_log=access_log,
        )
        run_server(config)
