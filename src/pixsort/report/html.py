"""A small HTML report builder: sections of text, key figures, tables and images.

Images and links are referenced by relative path, so the report folder can be zipped or
served as is; tables come from pandas DataFrames; galleries of thumbnails link to
the images.  No template engine, no JS.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
color:#1d2330;padding:0 1rem;line-height:1.45}
h1{font-size:1.7rem;margin-bottom:.2rem} h2{border-bottom:1px solid #dde;padding-bottom:.2rem;margin-top:2.2rem}
.sub{color:#667;margin-top:0} .kv{display:flex;flex-wrap:wrap;gap:.6rem;margin:.8rem 0}
.kv div{background:#f3f5fa;border-radius:6px;padding:.45rem .8rem} .kv b{display:block;font-size:1.15rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
td,th{border:1px solid #dde;padding:.25rem .55rem;text-align:right}
th{background:#f3f5fa} td:first-child,th:first-child{text-align:left}
figure{margin:.8rem 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #eee} figcaption{color:#556;font-size:.85rem}
.note{color:#556;font-size:.9rem}
.gallery{display:flex;flex-wrap:wrap;gap:.4rem} .thumb{margin:0;max-width:140px}
.thumb figcaption{font-size:.75rem;word-break:break-all}
.warn{background:#fff4e0;border-left:4px solid #e08a00;padding:.5rem .8rem}
"""


@dataclass
class HtmlReport:
    """Collects report parts in order and writes ``index.html``-style pages.

    Example::

        rep = HtmlReport("Clusters of chest_xray", subtitle="k=2 chosen by silhouette")
        rep.section("Summary")
        rep.key_values({"images": 5216, "skipped": 0})
        rep.image("silhouette_k2.png", caption="Silhouette plot, k=2")
        rep.table(df, caption="Cluster by class")
        rep.write(out_dir / "report.html")
    """

    title: str
    subtitle: str = ""
    _parts: list[str] = field(default_factory=list)

    def section(self, heading: str, text: str = "") -> HtmlReport:
        self._parts.append(f"<h2>{html.escape(heading)}</h2>")
        if text:
            self.paragraph(text)
        return self

    def paragraph(self, text: str, css_class: str = "") -> HtmlReport:
        cls = f' class="{css_class}"' if css_class else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def key_values(self, values: dict[str, object]) -> HtmlReport:
        cells = "".join(f"<div>{html.escape(str(k))}<b>{html.escape(_fmt(v))}</b></div>" for k, v in values.items())
        self._parts.append(f'<div class="kv">{cells}</div>')
        return self

    def table(self, frame: pd.DataFrame, caption: str = "", index: bool = True, max_rows: int = 200) -> HtmlReport:
        shown = frame.head(max_rows)
        body = shown.to_html(index=index, border=0, float_format=lambda x: f"{x:.4g}", escape=True)
        if caption:
            self._parts.append(f'<p class="note">{html.escape(caption)}</p>')
        self._parts.append(body)
        if len(frame) > max_rows:
            self.paragraph(f"… {len(frame) - max_rows} more rows in the CSV.", "note")
        return self

    def link(self, href: str | os.PathLike, text: str) -> HtmlReport:
        """A paragraph holding one link (a relative path or URL)."""
        target = html.escape(Path(href).as_posix() if isinstance(href, os.PathLike) else str(href))
        self._parts.append(f'<p><a href="{target}" data-testid="link">{html.escape(text)}</a></p>')
        return self

    def image(self, path: str | os.PathLike, caption: str = "", width: int | None = None) -> HtmlReport:
        style = f' style="width:{width}px"' if width else ""
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        src, alt = html.escape(Path(path).as_posix()), html.escape(caption)
        self._parts.append(f'<figure><img src="{src}" alt="{alt}"{style}>{cap}</figure>')
        return self

    def gallery(self, items: list[tuple[str, str | None, str]], caption: str = "", side: int = 96) -> HtmlReport:
        """A row of thumbnails: ``(thumbnail src, link href or None, caption)`` each, relative paths."""
        if caption:
            self._parts.append(f'<p class="note">{html.escape(caption)}</p>')
        cells = []
        for src, href, text in items:
            img = f'<img src="{html.escape(src)}" alt="{html.escape(text)}" style="width:{side}px">'
            if href:
                img = f'<a href="{html.escape(href)}">{img}</a>'
            cells.append(f'<figure class="thumb">{img}<figcaption>{html.escape(text)}</figcaption></figure>')
        self._parts.append(f'<div class="gallery">{"".join(cells)}</div>')
        return self

    def render(self) -> str:
        sub = f'<p class="sub">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{sub}{''.join(self._parts)}</body></html>"
        )

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
