"""The one HTML renderer of cimsim: self-contained pages (no external files, opens offline).

``report.html`` (``cimsim.report``) and ``sweep.html`` (``cimsim.sweep``) are built from these
pieces, so both pages look alike and escape alike. Every function returns a fragment of HTML
as a string; text and values are escaped here, never by the caller.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["MISSING", "collapsed", "figure", "heading", "items", "key_values", "page",
           "paragraph", "preformatted", "rows", "table"]

MISSING = "—"
"""How a missing value (None, NaN, pandas NA) is shown in a table cell."""

# Wide tables scroll inside their own box (.scroll) so that the page itself never grows
# wider than the window; images shrink to the window; TOML and notes wrap. A browser test
# (tests/test_browser.py) holds the pages to this.
_CSS = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1400px;line-height:1.35}"
    "h2{margin-top:1.6em}"
    ".scroll{overflow-x:auto;max-width:100%;margin-bottom:1.5em}"
    "table{border-collapse:collapse;font-size:12px}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top}"
    "td{white-space:nowrap}th{background:#eee;max-width:12em}"
    "img{max-width:100%;height:auto;display:block;margin-bottom:1em}"
    "pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;padding:.5em}"
    "details{margin-bottom:1em}summary{cursor:pointer;font-weight:bold}"
    "table.summary{font-size:14px}table.summary td,table.summary th{text-align:left;"
    "white-space:normal;max-width:none;padding:3px 8px}"
)


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def page(title: str, body: Iterable[str], *, css: str = "") -> str:
    """A whole HTML document: ``title``, the fragments of ``body`` in order, and ``css`` after
    the shared style sheet (a page's own rules win)."""
    return "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}{css}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *body,
        "</body></html>",
    ]) + "\n"


def heading(text: str) -> str:
    """A section heading (``<h2>``)."""
    return f"<h2>{html.escape(text)}</h2>"


def paragraph(*lines: str) -> str:
    """A paragraph; the lines are separated by line breaks."""
    return "<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>"


def preformatted(text: str) -> str:
    """Text shown as is, in a fixed-width font (a TOML file, a log)."""
    return f"<pre>{html.escape(text)}</pre>"


def items(entries: Mapping[str, Any] | Iterable[str]) -> str:
    """A bulleted list: ``key: value`` per entry of a mapping, or one line per string."""
    if isinstance(entries, Mapping):
        lines = [f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
                 for k, v in entries.items()]
    else:
        lines = [f"<li>{html.escape(str(e))}</li>" for e in entries]
    return "<ul>" + "".join(lines) + "</ul>"


def key_values(entries: Mapping[str, Any], fmt: Callable[[Any], str] = str) -> str:
    """A two-column table, one row per entry: the key as a row header, ``fmt(value)``."""
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(fmt(v))}</td></tr>"
                   for k, v in entries.items())
    return f"<div class='scroll'><table>{body}</table></div>"


def rows(entries: Iterable[Sequence[str]], *, header: Sequence[str] | None = None,
         css_class: str = "") -> str:
    """A small table of text rows (the first cell of each a row header), for a summary.

    Parameters
    ----------
    entries : iterable of sequences of str
        One sequence of cell texts per row; rows may differ in length.
    header : sequence of str, optional
        Column titles.
    css_class : str
        The table's CSS class (``'summary'``: larger text that wraps).
    """
    head = ("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + "</tr></thead>") if header else ""
    body = "".join(
        "<tr>" + "".join((f"<th>{html.escape(c)}</th>" if i == 0 else
                          f"<td>{html.escape(c)}</td>") for i, c in enumerate(row)) + "</tr>"
        for row in entries)
    attr = f" class='{html.escape(css_class)}'" if css_class else ""
    return f"<div class='scroll'><table{attr}>{head}<tbody>{body}</tbody></table></div>"


def collapsed(title: str, *fragments: str) -> str:
    """``fragments`` inside a ``<details>`` element, closed until the reader opens it."""
    return f"<details><summary>{html.escape(title)}</summary>" + "".join(fragments) + "</details>"


def figure(png: bytes, alt: str) -> str:
    """A PNG image embedded as a data URI."""
    b64 = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def table(frame: pd.DataFrame, fmt: Callable[[str, Any], str] | None = None, *,
          row_classes: Sequence[str] | None = None) -> str:
    """``frame`` as a table: a header row of column names, then one row per frame row.

    Parameters
    ----------
    frame : DataFrame
        Its index is not shown.
    fmt : callable, optional
        ``fmt(column, value) -> text`` for every present value (default ``str``); missing
        values are shown as :data:`MISSING`.
    row_classes : sequence of str, optional
        One CSS class per row (``''`` for none), for a page's own highlighting rules.
    """
    if not len(frame.columns):
        return "<p>(empty)</p>"
    cols = [str(c) for c in frame.columns]
    # long snake_case names may break after an underscore, so a header is a few words wide
    # instead of stretching its column to the full name
    head = "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in cols)
    body = []
    classes = list(row_classes) if row_classes is not None else [""] * len(frame)
    for cls, values in zip(classes, frame.itertuples(index=False, name=None), strict=True):
        cells = "".join(
            f"<td>{html.escape(MISSING if _is_missing(v) else (fmt or _plain)(c, v))}</td>"
            for c, v in zip(cols, values, strict=True))
        attr = f" class='{html.escape(cls)}'" if cls else ""
        body.append(f"<tr{attr}>{cells}</tr>")
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>\n"
            + "\n".join(body) + "\n</tbody></table></div>")


def _plain(_column: str, value: Any) -> str:
    return str(value)
