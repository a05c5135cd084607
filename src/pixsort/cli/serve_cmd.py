"""``pixsort serve MODEL``: answer uploads over HTTP with a saved classifier or clusterer."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import typer

from pixsort.cli._common import console, existing_path, fail


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    model: Path = typer.Argument(..., help="A model folder saved by `pixsort train` or `pixsort cluster`."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on. The default answers this machine only."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    max_upload_mb: float = typer.Option(20.0, min=0.001, help="Largest request body accepted (413 above it)."),
    api_key: str | None = typer.Option(
        None, envvar="PIXSORT_API_KEY", help="Require this key in the X-API-Key header (or set PIXSORT_API_KEY)."
    ),
    workers: int = typer.Option(1, min=1, help="Server processes; each loads the model once."),
    max_batch: int = typer.Option(
        32, min=1, help="Most images stacked into one model call across concurrent requests."
    ),
    threads: int | None = typer.Option(
        None, min=1, help="torch threads per process (default: the cores, shared out among the workers)."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
) -> None:
    """Serve MODEL: an upload page at /, POST /predict, GET /model, GET /health, docs at /docs."""
    import uvicorn

    from pixsort.models import ModelFileError, read_model_json
    from pixsort.runtime import available_cores

    existing_path(model)
    try:
        meta = read_model_json(model)
    except ModelFileError as exc:
        raise fail(str(exc)) from None

    url = f"http://{_url_host(host)}:{port}"
    console.print(f"[bold]pixsort serve[/]: {meta['kind']} [bold]{model.resolve().name}[/] at [link={url}/]{url}/[/]")
    console.print(f"  upload page {url}/   API docs {url}/docs")
    console.print(f"  uploads up to {max_upload_mb:g} MB per request; stop with Ctrl+C")
    if api_key:
        console.print("  API key required (X-API-Key header) for /predict, /model and /thumbnails")
    elif not _is_loopback(host):
        console.print(
            f"[yellow]warning:[/] listening on {host} without an API key: anyone who reaches it can use the model"
        )

    if workers == 1:
        from pixsort.serve.app import create_app

        try:
            application = create_app(
                model, max_upload_mb=max_upload_mb, api_key=api_key or None, max_batch=max_batch, threads=threads
            )
        except (ModelFileError, ValueError, TypeError) as exc:
            raise fail(f"cannot serve {model}: {exc}") from None
        uvicorn.run(application, host=host, port=port, log_level=log_level)
        return

    # several processes: each builds its own app from the environment
    os.environ["PIXSORT_MODEL"] = str(model.resolve())
    os.environ["PIXSORT_MAX_UPLOAD_MB"] = str(max_upload_mb)
    os.environ["PIXSORT_MAX_BATCH"] = str(max_batch)
    os.environ["PIXSORT_THREADS"] = str(threads or max(1, available_cores() // workers))
    if api_key:
        os.environ["PIXSORT_API_KEY"] = api_key
    uvicorn.run(
        "pixsort.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers, log_level=log_level
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
