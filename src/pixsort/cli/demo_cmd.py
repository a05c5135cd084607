"""``pixsort demo``: cluster a real labelled image set that ships with scikit-learn
(no network, no external data) and show the report (:mod:`pixsort.workflows.demo`)."""

from __future__ import annotations

from pathlib import Path

import typer

from pixsort.cli._common import fail


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Path = typer.Option(Path("pixsort-demo"), "--out", help="Folder for the digits and the report."),
    seed: int = typer.Option(0, help="Random seed."),
    view: str = typer.Option("tsne", help="2-D view: tsne | umap | pca."),
) -> None:
    """Cluster scikit-learn's hand-written digits (1,797 real 8x8 images, 10 classes)
    with k chosen without labels, score against the true digits, and write a report."""
    import time

    from rich.console import Console
    from rich.markup import escape

    from pixsort.workflows.demo import DEMO_K_RANGE, run_demo

    console = Console()
    start = time.perf_counter()
    try:
        result = run_demo(out, random_state=seed, view=view).outputs
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    m = result.metrics
    console.print(
        f"[bold]{m['n_images']} digit images[/] -> [bold]{m['n_clusters']} clusters[/] "
        f"(k chosen by {m.get('k_criterion', 'the default criterion')} over {DEMO_K_RANGE[0]}..{DEMO_K_RANGE[1]})"
    )
    console.print(
        f"against the true digits: accuracy {m['accuracy']:.3f}  NMI {m['nmi']:.3f}  "
        f"ARI {m['ari']:.3f}  purity {m['purity']:.3f}"
    )
    for note in m.get("k_notes", []):
        console.print(f"[bold yellow]note:[/] {escape(note)}")
    console.print(f"done in {time.perf_counter() - start:.0f} s")
    console.print(f"Report: {result.report}")
