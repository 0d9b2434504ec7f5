"""Self-contained HTML reports: figures embedded as base64 PNG, no external files or scripts."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Iterable, Sequence

from mertk.shards.io import write_bytes_atomic

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}img{max-width:100%}.card{border:1px solid #ddd;padding:1em;margin:1em 0;border-radius:6px}
.muted{color:#777}
"""


def png_data_uri(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def png_bytes(image) -> bytes:
    """PNG bytes of a uint8 image array (grey, or BGR as OpenCV draws it)."""
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover
        raise ValueError("could not encode PNG")
    return encoded.tobytes()


def figure_png(figure) -> bytes:
    """Render a matplotlib figure to PNG bytes (deterministic: no metadata timestamps) and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def img(png_bytes: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="{png_data_uri(png_bytes)}" alt="{html.escape(alt)}"{size}>'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def page(title: str, sections: Iterable[str]) -> str:
    """A whole HTML document; `sections` are HTML fragments (escape user text with html.escape)."""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def write_page(path: Path | str, title: str, sections: Iterable[str]) -> Path:
    path = Path(path)
    write_bytes_atomic(path, page(title, sections).encode("utf-8"))
    return path
