"""The ``pixsort`` command line.  Each command lives in its own module and holds no
logic: it parses options, calls one :mod:`pixsort.workflows` function, and prints.  Heavy imports (torch,
sklearn) happen inside the commands so ``pixsort --help`` stays instant."""

from __future__ import annotations

import importlib
import sys

import typer

from pixsort import __version__

app = typer.Typer(
    name="pixsort",
    help="Sort pictures into classes and clusters, and serve those decisions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# command modules; each exposes ``register(app)``
_COMMAND_MODULES = [
    "pixsort.cli.inspect_cmd",
    "pixsort.cli.cluster_cmd",
    "pixsort.cli.embed_cmd",
    "pixsort.cli.audit_cmd",
    "pixsort.cli.classify_cmd",
    "pixsort.cli.calibrate_cmd",
    "pixsort.cli.table_cmd",
    "pixsort.cli.serve_cmd",
    "pixsort.cli.export_cmd",
    "pixsort.cli.demo_cmd",
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"pixsort {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool | None = typer.Option(
        None, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Sort pictures into classes and clusters, and serve those decisions."""


for _name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    from pixsort.base.runtime import tune_cpu

    tune_cpu()
    app(prog_name="pixsort")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
