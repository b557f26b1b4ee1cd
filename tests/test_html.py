"""``cimsim._html`` and the pages built from it: the shared pieces escape, mark missing values
and highlight rows; report.html opens with a summary whose figures are report.json's; the sweep
page opens with the Pareto plot and the front."""

from __future__ import annotations

import base64
import html
import json
import math
import re

import pandas as pd
import pytest

import cimsim
from cimsim import _html
from cimsim.report import Report, _source_for_users
from cimsim.sweep.files import sweep_html
from tests.conftest import mlp_report


def test_table_escapes_formats_and_marks_missing():
    frame = pd.DataFrame({"name": ["<b>", "a&b"], "x_pj": [1.5, math.nan],
                          "n": pd.array([3, None], dtype="Int64")})
    text = _html.table(frame, lambda col, v: f"{v:.2f}" if col == "x_pj" else str(v),
                       row_classes=["front", ""])
    # a header may break after an underscore; the table scrolls in its own box
    assert "<th>name</th><th>x_<wbr>pj</th><th>n</th>" in text
    assert text.startswith("<div class='scroll'><table>") and text.endswith("</table></div>")
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


def test_rows_and_collapsed_escape():
    text = _html.rows([("a<", "1"), ("b",)], header=("k", "v&"), css_class="summary")
    assert "<table class='summary'>" in text and "<th>v&amp;</th>" in text
    assert "<tr><th>a&lt;</th><td>1</td></tr><tr><th>b</th></tr>" in text
    assert _html.collapsed("t<", "<p>x</p>") == (
        "<details><summary>t&lt;</summary><p>x</p></details>")


@pytest.fixture(scope="module")
def rep() -> Report:
    return mlp_report("jia-jssc20", 24, 6)


def _summary(page: str) -> dict[str, tuple[str, str]]:
    """The summary table of a report page: quantity -> (value, basis), unescaped."""
    block = page[page.index("<h2>Summary</h2>"):]
    block = block[:block.index("</table>")]
    rows = re.findall(r"<tr><th>([^<]*)</th><td>([^<]*)</td><td>([^<]*)</td></tr>", block)
    return {html.unescape(k): (html.unescape(v), html.unescape(b)) for k, v, b in rows}


def test_report_page_opens_with_the_summary_equal_to_the_json(rep, tmp_path):
    rep.set_accuracy(0.875, 0.8125, 16)
    rep.save(tmp_path)
    page = (tmp_path / "report.html").read_text()
    saved = json.loads((tmp_path / "report.json").read_text())
    t, s = saved["totals"], saved["summary"]
    assert s == {"float_accuracy": 0.875, "simulated_accuracy": 0.8125, "n_eval_inputs": 16}
    summary = _summary(page)
    assert summary["accuracy"] == ("87.50 % float, 81.25 % simulated on 16 inputs", "simulated")
    assert summary["energy per inference"][0] == f"{t['energy_pj_per_inference']:,.1f} pJ"
    assert summary["latency per inference"][0] == f"{t['latency_ns_per_inference']:,.1f} ns"
    assert summary["TOPS/W"][0] == f"{t['tops_per_w']:.3f} TOPS/W"
    assert summary["area"][0] == (f"{t['area_mm2_used']:.4f} mm2 used of "
                                  f"{t['area_mm2']:.4f} mm2 chip")
    # the macro holds one array: the two layers take turns on it
    assert summary["arrays"][0] == (f"{t['n_arrays_used']} used of {t['n_arrays_available']}"
                                    " (time-multiplexed)")
    # jia-jssc20 scales ADC and cell energy and area to the paper; its ADC timing is the tables'
    assert summary["energy per inference"][1].startswith("calibrated (adc, cell scaled")
    assert summary["area"][1].startswith("calibrated (adc, cell scaled")
    assert summary["latency per inference"][1] == "predicted (technology tables)"
    assert summary["chip"][0] == f"jia-jssc20: {rep.chip.description}"
    # order: summary, figures, tables, chip TOML, notes, then the totals closed in <details>
    marks = ["<h2>Summary</h2>", "<h2>Figures</h2>", "<img ", "<h2>layers</h2>",
             "<h2>chip configuration (TOML)</h2>", "<h2>notes</h2>", "<h2>all totals</h2>"]
    at = [page.index(m) for m in marks]
    assert at == sorted(at)
    assert "<h2>all totals</h2>\n<details><summary>" in page
    assert "n_conversions_per_inference" in page[page.index("<h2>all totals</h2>"):]
    source = page[page.index("<p>source: "):]
    assert "docs/" not in summary["chip"][1] and "docs/" not in source[:source.index("</p>")]
    assert Report.load(tmp_path).summary == s


def test_report_page_without_labels_shows_output_fidelity(rep):
    rep.summary.clear()
    rep.set_output_fidelity(0.99871, 5)
    summary = _summary(rep.to_html(images={}))
    assert summary["output fidelity"] == ("cosine to float 0.9987 on 5 inputs", "simulated")
    rep.summary.clear()
    assert _summary(rep.to_html(images={}))["accuracy"][0].startswith("not measured")
    with pytest.raises(ValueError, match="simulated_accuracy"):
        rep.set_accuracy(0.5, 1.5, 3)
    with pytest.raises(ValueError, match="cosine"):
        rep.set_output_fidelity(1.2, 3)
    for bad in (-3, 2.5, True):  # a count of inputs (-3 was saved and shown)
        with pytest.raises(ValueError, match="n_inputs"):
            rep.set_accuracy(0.5, 0.5, bad)
        with pytest.raises(ValueError, match="n_inputs"):
            rep.set_output_fidelity(0.5, bad)


@pytest.mark.parametrize("source, shown", [
    ("NeuroSim V1.4 Param.cpp defaults (Peng et al., IEDM 2019; docs/technology.md [NeuroSim])",
     "NeuroSim V1.4 Param.cpp defaults (Peng et al., IEDM 2019)"),
    ("reference model (no hardware); docs/hardware-model.md", "reference model (no hardware)"),
    ("Jia et al., IEEE JSSC 55(9) 2020", "Jia et al., IEEE JSSC 55(9) 2020"),
    ("docs/validation.md", "not given"),
])
def test_source_line_cites_no_file_of_ours(source, shown):
    assert _source_for_users(source) == shown


def test_every_preset_source_shown_without_docs_paths():
    for name in ("ideal", "isaac-32nm", "jia-jssc20", "neurosim-rram-22nm", "rram-22nm",
                 "sram-65nm", "wang-vlsi22"):
        assert "docs/" not in _source_for_users(cimsim.load_chip(name).source)


def test_sweep_page_opens_with_plot_then_front_then_all():
    frame = pd.DataFrame({"adc_bits": [4, 6, 8], "accuracy": [0.5, 0.9, 0.9],
                          "energy_pj_per_inference": [30.0, 10.0, 20.0],
                          "on_front": [False, True, False], "point_id": ["a", "b", "c"]})
    page = sweep_html(frame, b"\x89PNG", {"model": "m", "chip": "c<"})
    marks = ["<img ", "<h2>Pareto front</h2>", "<h2>All points</h2>", "<h2>Settings</h2>"]
    at = [page.index(m) for m in marks]
    assert at == sorted(at)
    front = page[at[1]:at[2]]
    assert front.count("<tr><td>") == 1 and "<td>b</td>" in front
    assert "3 points, 1 on the Pareto front" in page and "c&lt;" in page
    every = page[at[2]:at[3]]
    assert every.count("<tr") == 4 and every.count("class='front'") == 1
