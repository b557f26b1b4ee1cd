"""``cimsim._html``: the shared page pieces escape, mark missing values and highlight rows."""

from __future__ import annotations

import base64
import math

import pandas as pd

from cimsim import _html


def test_table_escapes_formats_and_marks_missing():
    frame = pd.DataFrame({"name": ["<b>", "a&b"], "x_pj": [1.5, math.nan],
                          "n": pd.array([3, None], dtype="Int64")})
    text = _html.table(frame, lambda col, v: f"{v:.2f}" if col == "x_pj" else str(v),
                       row_classes=["front", ""])
    assert "<th>name</th><th>x_pj</th><th>n</th>" in text
    assert "<tr class='front'><td>&lt;b&gt;</td><td>1.50</td><td>3</td></tr>" in text
    assert f"<tr><td>a&amp;b</td><td>{_html.MISSING}</td><td>{_html.MISSING}</td></tr>" in text
    assert _html.table(pd.DataFrame()) == "<p>(empty)</p>"


def test_page_is_self_contained():
    png = b"\x89PNG\r\n\x1a\nrest"
    page = _html.page("t <1>", [_html.heading("h"), _html.figure(png, "fig"),
                                _html.items({"k": "<v>"}), _html.key_values({"a": 0.5}),
                                _html.preformatted("x < y")], css="p{color:red}")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>t &lt;1&gt;</title>" in page and "<h1>t &lt;1&gt;</h1>" in page
    assert "p{color:red}</style>" in page and "<h2>h</h2>" in page
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    assert base64.b64decode(page[start:page.index("'", start)]) == png
    assert "<li><b>k</b>: &lt;v&gt;</li>" in page and "<tr><th>a</th><td>0.5</td></tr>" in page
    assert "<pre>x &lt; y</pre>" in page and "http" not in page
