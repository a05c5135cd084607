"""``pixsort serve MODEL``: answer uploads over HTTP with a saved classifier or clusterer."""

from __future__ import annotations

import functools
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
        None, min=1, help="Inference threads per process (default: the cores, shared out among the workers)."
    ),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="A host name the server answers for (Host header), besides localhost, 127.0.0.1, [::1] and --host; "
        "repeatable; '*' allows any. Others get 400 (no DNS rebinding).",
    ),
    request_timeout: float = typer.Option(
        30.0, min=0.001, help="Seconds a client may take to send a request's headers, and again its body (408)."
    ),
    max_pixels: int = typer.Option(
        40_000_000, min=1, help="Largest upload in pixels, from its header (422 above it; the model's limit too)."
    ),
    max_decoded_mb: float = typer.Option(
        160.0, min=0.001, help="Most memory one request's images may take decoded, judged from headers (413)."
    ),
    runtime: str = typer.Option(
        "torch",
        "--runtime",
        help="torch | onnx: a classifier through ONNX Runtime on MODEL/model.onnx "
        "(exported and checked against torch first when missing or stale).",
    ),
) -> None:
    """Serve MODEL: an upload page at /, POST /predict, GET /model, GET /health, docs at /docs."""
    import uvicorn

    from pixsort.base.errors import ModelFileError
    from pixsort.serve.security import LOOPBACK_HOSTS
    from pixsort.serve.settings import ServeSettings
    from pixsort.serve.timeouts import uvicorn_options

    existing_path(model)
    if api_key is None and os.environ.get("PIXSORT_API_KEY") is not None:
        api_key = os.environ["PIXSORT_API_KEY"]  # click reads an empty variable as unset: it is not
    if api_key is not None and not api_key.strip():
        raise fail(
            "--api-key (or PIXSORT_API_KEY) is empty: an empty key is not a key; leave it out to serve without one"
        )
    hosts = list(LOOPBACK_HOSTS) + ([] if host in ("0.0.0.0", "::", "") else [host]) + list(allowed_host)
    try:
        settings = ServeSettings(
            max_upload_mb=max_upload_mb, api_key=api_key, max_batch=max_batch, threads=threads,
            runtime=runtime, allowed_hosts=tuple(dict.fromkeys(hosts)), request_timeout_s=request_timeout,
            max_pixels=max_pixels, max_decoded_mb=max_decoded_mb,
        )  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from None

    if workers == 1:
        from pixsort.serve.app import create_app

        # the app (and the model, loaded once) first: a bad model folder is an error
        # before anything is said about serving it
        try:
            application = create_app(model, settings)
        except ModelFileError as exc:
            raise fail(str(exc)) from None
        except Exception as exc:  # a folder that reads as a model but does not load (weights gone, corrupt)
            raise fail(f"cannot serve {model}: {type(exc).__name__}: {exc}") from None
        _announce(application.state.predictor.kind, model, host, port, settings)
        uvicorn.run(application, host=host, port=port, log_level=log_level, **uvicorn_options(settings))
        return

    # several processes: each builds its own app (and loads the model once) by calling
    # a picklable factory; the parent only reads the model's metadata to say what it serves
    from pixsort.base.modelfile import read_model_meta
    from pixsort.base.runtime import available_cores
    from pixsort.serve.app import create_app

    try:
        kind = read_model_meta(model)["kind"]
        if runtime == "onnx":  # export once here, not in every worker at the same time
            from pixsort.workflows import ensure_onnx_export

            ensure_onnx_export(model)
    except ModelFileError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # an export that failed its parity check, or onnx not installed
        raise fail(f"cannot serve {model}: {type(exc).__name__}: {exc}") from None
    settings = settings.replace(threads=threads or max(1, available_cores() // workers))
    _announce(kind, model, host, port, settings)
    run_workers(
        functools.partial(create_app, str(model.resolve()), settings),
        workers=workers, host=host, port=port, log_level=log_level, **uvicorn_options(settings),
    )  # fmt: skip


def run_workers(factory, *, workers: int, host: str, port: int, log_level: str, **options) -> None:
    """Serve the app that ``factory()`` builds in ``workers`` processes, as ``uvicorn.run``
    does for an import string: bind the socket here, then let uvicorn's Multiprocess
    supervisor spawn the workers (each calls ``factory``, so it must pickle) and keep
    them alive until SIGINT/SIGTERM."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # uvicorn.run refuses a non-string app with workers > 1; its Config and
    # supervisor take a picklable factory as they are
    config = uvicorn.Config(
        app=factory, factory=True, host=host, port=port, workers=workers, log_level=log_level, **options
    )
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    # (uvicorn.run's clean-up after this removes a unix socket file: none is used here)


def _announce(kind: str, model: Path, host: str, port: int, settings) -> None:
    url = f"http://{_url_host(host)}:{port}"
    console.print(f"[bold]pixsort serve[/]: {kind} [bold]{model.resolve().name}[/] at [link={url}/]{url}/[/]")
    console.print(f"  upload page {url}/   API docs {url}/docs")
    if settings.runtime != "torch":
        console.print("  runtime: onnx (ONNX Runtime on the model's exported model.onnx)")
    console.print(f"  uploads up to {settings.max_upload_mb:g} MB per request; stop with Ctrl+C")
    if settings.api_key:
        console.print("  API key required (X-API-Key header) for /predict, /model and /thumbnails")
    elif not _is_loopback(host):
        console.print(
            f"[yellow]warning:[/] listening on {host} without an API key: anyone who reaches it can use the model"
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
