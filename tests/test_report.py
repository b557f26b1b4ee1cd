"""Reports: cost columns, files written, JSON round trip, self-contained HTML, figures."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cimsim
from cimsim.config import ADCKind
from cimsim.report import (
    Report,
    _json_default,
    plot_area_by_component,
    plot_energy_per_layer,
    plot_latency_per_layer,
)


@pytest.fixture(scope="module")
def sim():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(32, 8)
    sim = cimsim.deploy(model, cimsim.load_chip("rram-22nm"), x)
    sim(x[:10])
    return sim


@pytest.fixture(scope="module")
def rep(sim) -> Report:
    return sim.report()


def test_layers_keep_units_in_column_names_issue9(rep):
    """report.layers once renamed ``latency_ns_per_inference`` to ``latency_ns``."""
    assert "latency_ns_per_inference" in rep.layers.columns
    assert "latency_ns" not in rep.layers.columns
    unitless = [c for c in rep.layers.columns
                if c.startswith(("energy", "latency", "area")) and not c.endswith(
                    ("_pj_per_inference", "_ns_per_inference", "_um2"))]
    assert unitless == []


def test_layer_rows_are_the_works(sim, rep):
    """Report.from_sim reads SimModel.work(): one row per LayerWork, its fields as they are,
    and its counts per inference: the run's totals over its 10 inferences (a count left as
    the run's total reported 10x the per-inference conversions or DAC pulses)."""
    work = sim.work()
    pulse = ("dac", "pulse", work.chip.dac_bits)
    layers = rep.layers.set_index("layer")
    assert list(layers.index) == [w.name for w in work.layers]
    for w in work.layers:
        row = layers.loc[w.name]
        assert (row["kind"], row["n_inputs"], row["n_outputs"], row["n_matrices"],
                row["n_arrays"], bool(row["input_signed"])) == (
            w.kind, w.n_inputs, w.n_outputs, w.n_matrices, w.n_arrays, w.input_signed)
        assert row["n_macs_per_inference"] == w.events.get(("layer", "mac", 0)) / 10
        assert w.n_adc_conversions > 0 and w.events.get(pulse) > 0
        assert row["n_conversions_per_inference"] == w.n_adc_conversions / 10
        assert row["n_dac_pulses_per_inference"] == w.events.get(pulse) / 10
        assert dict(rep.layer_events[w.name]) == dict(w.events)
    assert (work.layers[0].n_inputs, work.layers[0].n_outputs) == (8, 16)
    assert rep.totals["n_inferences"] == work.n_inferences == 10


def test_json_helper_takes_numpy_scalars_and_enums_only():
    assert _json_default(np.float32(1.5)) == 1.5 and type(_json_default(np.int64(3))) is int
    assert _json_default(ADCKind.SAR) == "sar"

    class HasItem:  # not a NumPy scalar: refused, whatever attributes it has
        def item(self):
            return 1

    with pytest.raises(TypeError, match="cannot serialise HasItem"):
        _json_default(HasItem())


def test_cost_columns_and_totals(rep):
    layers = rep.layers.set_index("layer")
    assert list(layers.index) == ["0", "2"]
    for col in ("energy_pj_per_inference", "latency_ns_per_inference", "area_um2",
                "energy_adc_pj_per_inference", "energy_cell_pj_per_inference"):
        assert col in layers.columns and (layers[col] > 0).all(), col
    parts = [c for c in layers.columns if c.startswith("energy_") and c.endswith("_inference")
             and c != "energy_pj_per_inference"]
    assert np.allclose(layers[parts].sum(axis=1), layers["energy_pj_per_inference"])
    t = rep.totals
    for key in ("energy_pj_per_inference", "area_mm2", "latency_ns_per_inference", "tops",
                "tops_per_w", "tops_per_mm2", "tops_1b", "tops_per_w_1b", "tops_per_mm2_1b"):
        assert t[key] > 0, key
    assert t["tops_per_w_1b"] == pytest.approx(t["tops_per_w"] * 64)
    assert t["energy_pj_per_inference"] == pytest.approx(
        rep.components["energy_pj_per_inference"].sum())
    assert t["latency_ns_per_inference"] == pytest.approx(
        layers["latency_ns_per_inference"].sum())
    assert t["tops_per_w"] == pytest.approx(
        2 * t["n_macs_per_inference"] / t["energy_pj_per_inference"])
    assert t["area_mm2"] == pytest.approx(rep.area["area_um2"].sum() * 1e-6)
    assert "1 MAC = 2 ops" in t["ops_convention"]
    # per (layer, component) energy and area
    b = rep.breakdown
    assert set(b.columns) >= {"layer", "component", "energy_pj_per_inference", "area_um2"}
    by_layer = b.groupby("layer")["energy_pj_per_inference"].sum()
    assert np.allclose(by_layer.loc[["0", "2"]], layers["energy_pj_per_inference"])
    comp = rep.components
    assert {"layer", "component", "action", "bits", "n_events_per_inference",
            "energy_pj_per_inference"} <= set(comp.columns)
    assert ((comp["component"] == "adc") & (comp["action"] == "leak")).any()


def test_area_and_energy_percentages_are_percent_of_their_totals(rep):
    """``area_pct`` of the area table is each instance kind's share of the whole chip's area in
    percent (100 x its um^2 over the sum, the shares summing to 100), and ``energy_pct`` of the
    breakdown each component's share of its layer's energy in percent: guards against a
    fraction (0..1) written under a ``_pct`` name."""
    area = rep.area
    total = float(area["area_um2"].sum())
    assert total > 0
    assert np.allclose(area["area_pct"], 100.0 * area["area_um2"] / total)
    assert float(area["area_pct"].sum()) == pytest.approx(100.0)
    b = rep.breakdown
    for layer, rows in b.groupby("layer"):
        e = rows["energy_pj_per_inference"]
        assert np.allclose(rows["energy_pct"], 100.0 * e / e.sum()), layer
        assert float(rows["energy_pct"].sum()) == pytest.approx(100.0), layer


def test_save_load_round_trip_and_html(rep, tmp_path):
    paths = rep.save(tmp_path / "a")
    names = {p.name for p in paths}
    assert {"layers.csv", "components.csv", "area.csv", "breakdown.csv", "report.json",
            "report.html", "energy_per_layer.png", "area_by_component.png",
            "latency_per_layer.png"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    for png in ("energy_per_layer.png", "area_by_component.png", "latency_per_layer.png"):
        assert (tmp_path / "a" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    assert data["cimsim_version"] == cimsim.__version__
    assert data["chip"]["name"] == "rram-22nm" and data["chip"]["adc"]["bits"] == 6

    back = Report.load(tmp_path / "a")
    assert back.chip == rep.chip
    assert back.totals == json.loads(json.dumps(rep.totals))
    for name in ("layers", "components", "area", "breakdown", "blocks"):
        a, b = getattr(rep, name), getattr(back, name)
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b, check_dtype=False,
                                      check_exact=False, rtol=1e-12)
    assert back.layer_events.keys() == rep.layer_events.keys()
    for key in rep.layer_events:
        assert dict(back.layer_events[key]) == dict(rep.layer_events[key])
    # re-render from the saved JSON (what `cimsim report DIR` does)
    back.save(tmp_path / "b")
    assert (tmp_path / "b" / "report.html").is_file()
    assert Report.load(tmp_path / "b" / "report.json").totals == back.totals

    page = (tmp_path / "a" / "report.html").read_text()
    assert "<img" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # opens offline
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    assert base64.b64decode(page[start:page.index("'", start)])[:4] == b"\x89PNG"
    for name in ("Summary", "layers", "breakdown", "components", "area", "blocks", "digital",
                 "all totals"):
        assert f"<h2>{name}</h2>" in page, name
    for frame in (rep.layers, rep.components, rep.area, rep.breakdown, rep.blocks):
        for col in frame.columns:
            # headers may break after an underscore (_html.table)
            assert f"<th>{col.replace('_', '_<wbr>')}</th>" in page, col
    for layer in rep.layers["layer"]:
        assert f"<td>{layer}</td>" in page
    with pytest.raises(FileNotFoundError):
        Report.load(tmp_path / "missing")


def test_a_saved_report_reads_its_numbers_back_and_refuses_damaged_ones(rep, tmp_path):
    """An infinite figure (an exact layer's SQNR) came back as the string 'inf' (a mean of
    the column was a TypeError); a figure edited to text failed in the rendering with a
    traceback naming no file; an empty chip re-rendered as the default chip."""
    from cimsim.errors import CimsimError
    rep.save(tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "report.json").read_text())

    def load(edit):
        data = json.loads(json.dumps(saved))
        edit(data)
        folder = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(data))
        return Report.load(folder)

    back = load(lambda d: d["layers"][0].update(sqnr_db="inf"))
    assert back.layers["sqnr_db"].iloc[0] == np.inf and back.layers["sqnr_db"].dtype == float
    # null, the file's NaN, in a headline figure: rendered as nan (it failed in the rendering
    # on formatting None, a traceback from `cimsim report`)
    back = load(lambda d: (d["totals"].update(energy_pj_per_inference=None, tops_per_w=None),
                           d["summary"].update(float_accuracy=None, simulated_accuracy=None)))
    assert np.isnan(back.totals["energy_pj_per_inference"])
    assert np.isnan(back.summary["simulated_accuracy"])
    assert back.save(tmp_path / "nan")  # every file rendered
    for edit, fragment in [
        (lambda d: d["totals"].update(energy_pj_per_inference="abc"),
         r"'totals': 'energy_pj_per_inference' is 'abc', not a number"),
        (lambda d: d["layers"][1].update(latency_ns_per_inference=[1]),
         r"'layers' row 1: 'latency_ns_per_inference' is \[1\], not a number"),
        (lambda d: d.update(chip={}), r"'chip' is empty"),
        (lambda d: d.update(totals={}), r"'totals' is empty"),
    ]:
        with pytest.raises(CimsimError, match=r"report\.json: not a report cimsim saved .*"
                                              + fragment):
            load(edit)


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: [row.pop("area_um2") for row in d["area"]], "Column not found: area_um2"),
    (lambda d: [row.pop("component") for row in d["area"]], "'component'"),
    (lambda d: d["summary"].pop("float_accuracy"), "'float_accuracy'"),
])
def test_cimsim_report_of_a_file_that_loads_but_cannot_render_is_one_line(
        rep, tmp_path, capsys, edit, fragment):
    """A report.json that loads but lacks what a figure or table reads (an area row without
    its area or component, one accuracy of the two): ``cimsim report`` was a traceback out of
    the rendering; now one line naming the file, and nothing written."""
    from cimsim.cli import main

    rep.set_accuracy(0.9, 0.8, 10)
    rep.save(tmp_path / "a")
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    edit(data)
    (tmp_path / "a" / "report.json").write_text(json.dumps(data))
    assert main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "report.json: not a report cimsim saved" in err
    assert fragment in err
    assert not (tmp_path / "b").exists()


def test_plot_functions_take_frames_return_figures(rep):
    from matplotlib.figure import Figure

    for fig in (plot_energy_per_layer(rep.layers), plot_area_by_component(rep.area),
                plot_latency_per_layer(rep.layers)):
        assert isinstance(fig, Figure)
        assert fig.axes and fig.axes[0].patches  # bars drawn


def test_report_before_any_forward_has_zero_cost():
    model = nn.Sequential(nn.Linear(8, 4))
    sim = cimsim.deploy(model, cimsim.load_chip("rram-22nm"), torch.randn(8, 8))
    with pytest.warns(UserWarning, match="no inference"):  # the zeros were silent
        rep = sim.report()
    assert rep.totals["n_inferences"] == 0
    assert rep.totals["energy_pj_per_inference"] == 0.0
    assert rep.totals["latency_ns_per_inference"] == 0.0
    assert rep.totals["area_mm2"] > 0  # the chip exists


# --- issue 16: the headline (used part beside the chip, caveats, reload line) --------------
def _over_capacity_report() -> Report:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(array=chip.array.replace(n_rows=4, n_cols=8, rows_per_conversion=None,
                                                 n_tiles=1, arrays_per_tile=2,
                                                 allow_time_multiplexing=True))
    x = torch.randn(32, 8)
    sim = cimsim.deploy(model, chip, x)
    sim(x[:10])
    return sim.report()


def test_breakdown_area_is_each_layers_own_arrays_and_tile_share():
    """The breakdown's ``area_um2`` of a (layer, component) is the footprint of that layer's
    own arrays with their tile share (``occupied_area_um2`` at the layer's ``n_arrays``), so a
    layer spread over several arrays carries all of them: on 4 x 8 arrays each layer needs
    more than one. Guards the layer's array count in the breakdown."""
    from cimsim.cost.area import occupied_area_um2

    rep = _over_capacity_report()
    n_arrays = rep.layers.set_index("layer")["n_arrays"]
    assert (n_arrays.loc[["0", "2"]] > 1).all()
    b = rep.breakdown
    for layer in ("0", "2"):
        want = occupied_area_um2(rep.chip, int(n_arrays.loc[layer]))
        rows = b[b["layer"] == layer].set_index("component")["area_um2"]
        for comp, area in rows.items():
            assert area == pytest.approx(want.get(comp, 0.0)), (layer, comp)
        # together the layer's rows are its whole footprint, as its own area_um2 says
        assert rows.sum() == pytest.approx(rep.layers.set_index("layer").loc[layer, "area_um2"])


def test_a_small_figure_keeps_its_significant_digits():
    """One small layer on a 2688-array chip: a TOPS/mm^2 of 1.26e-05 read 0.0000 and a
    TOPS/W of 0.00067 read 0.001; ordinary figures keep their fixed decimals."""
    from cimsim.report import headline_lines

    lines = headline_lines({"tops_per_w": 0.00067, "tops_per_mm2": 1.2637e-05,
                            "tops_per_mm2_used": 0.034, "area_mm2": 31.26184,
                            "area_mm2_used": 3e-6, "energy_pj_per_inference": 0.0})
    assert lines == [f"{'energy per inference':<24}0.0 pJ",
                     f"{'area':<24}31.2618 mm2 chip, 3e-06 mm2 used part",
                     f"{'TOPS/W':<24}0.00067",
                     f"{'TOPS/mm2':<24}1.26e-05 chip, 0.0340 used part"]


def test_headline_shows_the_used_part_beside_the_chip_issue16(rep):
    lines = rep.headline_lines()
    t = rep.totals
    (area,) = [s for s in lines if s.startswith("area ")]
    assert f"{t['area_mm2']:.4f} mm2 chip" in area and f"{t['area_mm2_used']:.4f} mm2 used" in area
    (tops,) = [s for s in lines if s.startswith("TOPS/mm2")]
    assert f"{t['tops_per_mm2_used']:.4f} used part" in tops
    assert t["tops_per_mm2_used"] > t["tops_per_mm2"]  # 2 arrays of a 2688-array chip
    assert not any("meaningless" in s or "reloading" in s for s in lines)
    assert lines[-1] == f"{'arrays used':<24}{t['n_arrays_used']} of {t['n_arrays_available']}"


def test_used_part_1b_figures_use_the_used_area(rep):
    """The 1b-normalised TOPS/mm^2 of the used part is the used part's TOPS/mm^2 times
    ``input_bits x weight_bits`` (8 x 8 = 64 on rram-22nm), not the whole chip's: the run uses
    2 arrays of 2688, so the two differ. Guards ``tops_per_mm2_used_1b``'s area."""
    t = rep.totals
    assert t["area_mm2_used"] < t["area_mm2"]
    assert t["tops_per_mm2_used"] == pytest.approx(t["tops"] / t["area_mm2_used"])
    assert t["tops_per_mm2_used_1b"] == pytest.approx(t["tops_per_mm2_used"] * 64)
    assert t["tops_per_mm2_1b"] == pytest.approx(t["tops"] / t["area_mm2"] * 64)
    assert t["tops_1b"] == pytest.approx(t["tops"] * 64)


def test_time_multiplexed_report_has_a_reprogramming_line_issue16(tmp_path):
    rep = _over_capacity_report()
    t = rep.totals
    assert t["time_multiplexed"] and t["reprogramming_latency_ns_per_inference"] > 0
    line = rep.layers.set_index("layer").loc["(reprogramming)"]
    assert line["kind"] == "reprogramming"
    assert line["latency_ns_per_inference"] == pytest.approx(
        t["reprogramming_latency_ns_per_inference"])
    assert line["energy_cell_pj_per_inference"] > 0  # the cell writes
    # one forward call of 10 inferences rewrites the arrays beyond the chip's 2 once
    # (docs/hardware-model.md: over = needed - have): per inference a tenth of that (the
    # call's total, reported as is, was 10x the arrays rewritten per inference)
    assert t["n_arrays_available"] == 2 and t["n_arrays_used"] > 2
    assert t["n_reprogrammed_arrays_per_inference"] == pytest.approx(
        (t["n_arrays_used"] - 2) / 10, rel=1e-12)
    assert t["latency_ns_per_inference"] == pytest.approx(
        rep.layers["latency_ns_per_inference"].sum())
    assert t["area_mm2_used"] <= t["area_mm2"]
    (reload,) = [s for s in rep.headline_lines() if "reloading" in s]
    assert f"{t['reprogramming_latency_ns_per_inference']:,.1f} ns" in reload
    # more arrays used than the chip has: the line says why (the HTML summary did already)
    assert rep.headline_lines()[-1] == (f"{'arrays used':<24}{t['n_arrays_used']} of "
                                        f"{t['n_arrays_available']} (time-multiplexed)")
    rep.save(tmp_path)  # the reload row goes through CSV, JSON and the figures
    assert "(reprogramming)" in (tmp_path / "layers.csv").read_text()


def test_arrays_used_line_at_exactly_the_stored_sets_is_taking_turns():
    """A run that uses exactly as many arrays as the chip holds weight sets for
    (``n_arrays_used == n_array_slots``, beyond ``n_arrays_available``) switches stored sets
    and rewrites none: the headline's last line says so, and one array more is
    time-multiplexed. Guards the ``<=`` of the boundary (docs: within the slots, layers take
    turns)."""
    from cimsim.report import headline_lines

    totals = {"n_arrays_used": 4, "n_arrays_available": 2, "time_multiplexed": True,
              "n_array_slots": 4}
    assert headline_lines(totals)[-1] == (
        f"{'arrays used':<24}4 of 2 (layers take turns, switching stored weight sets: "
        "none rewritten)")
    assert headline_lines({**totals, "n_arrays_used": 5})[-1] == (
        f"{'arrays used':<24}5 of 2 (time-multiplexed)")


def test_ideal_chip_cost_lines_say_meaningless_issue16(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    x = torch.randn(16, 8)
    sim = cimsim.deploy(model, cimsim.load_chip("ideal"), x)
    sim(x)
    rep = sim.report()
    assert rep.totals["cost_meaningful"] is False
    lines = rep.headline_lines()
    assert lines[0].startswith("cost figures") and "mean nothing" in lines[0]
    costs = [s for s in lines if s.split()[0] in ("energy", "area", "latency", "TOPS/W",
                                                  "TOPS/mm2")]
    assert len(costs) == 5 and all(s.endswith("[meaningless]") for s in costs)
    assert not lines[-1].endswith("[meaningless]")  # arrays used is a count, not a cost
    rep.save(tmp_path)
    assert "Cost figures meaningless" in (tmp_path / "report.html").read_text()


def test_saving_over_an_earlier_report_leaves_none_of_its_files(rep, tmp_path):
    """A figure or table an earlier report wrote into the folder, which this report does not
    write (no fidelity measured, no blocks), stayed and passed for this one's; a file of the
    user's own stays."""
    names = {p.name for p in rep.save(tmp_path)}
    stale = [n for n in ("fidelity_per_layer.png", "blocks.csv") if n not in names]
    assert stale  # the fixture measured no fidelity
    for name in stale:
        (tmp_path / name).write_bytes(b"from an earlier report")
    (tmp_path / "notes.txt").write_text("mine")
    assert {p.name for p in rep.save(tmp_path)} == names
    assert not any((tmp_path / name).exists() for name in stale)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_save_onto_a_file_names_it(rep, tmp_path):
    target = tmp_path / "report.txt"
    target.write_text("mine")
    with pytest.raises(FileExistsError, match="is a file; out_dir must be a folder"):
        rep.save(target)
    assert target.read_text() == "mine"


def test_report_json_is_strict_json_and_odd_layer_names_are_drawn(tmp_path):
    """report.json held bare Infinity (a chip's on/off ratio) and NaN (a reprogramming row),
    which strict JSON readers refuse; a layer named with a $ failed the save in matplotlib's
    math mode."""
    name = "x$^{$y"

    class W(nn.Module):
        def __init__(self):
            super().__init__()
            self.d = nn.ModuleDict({name: nn.Linear(16, 4)})

        def forward(self, x):
            return self.d[name](x)

    x = torch.randn(24, 16)
    chip = cimsim.load_chip("pcm-22nm")
    chip = chip.replace(array=chip.array.replace(n_rows=4, n_cols=8, rows_per_conversion=None,
                                                 n_tiles=1, arrays_per_tile=1,
                                                 allow_time_multiplexing=True))
    sim = cimsim.deploy(W(), chip, x[:8])
    sim(x[8:])
    sim.report().save(tmp_path)
    text = (tmp_path / "report.json").read_text()

    def refuse(token):
        raise ValueError(token)

    doc = json.loads(text, parse_constant=refuse)
    assert doc["chip"]["device"]["on_off_ratio"] == "inf"
    assert (tmp_path / "energy_per_layer.png").stat().st_size > 0
    again = Report.load(tmp_path)
    assert again.chip == sim.chip
    again.save(tmp_path / "again")
    assert (tmp_path / "again" / "report.json").read_text() == text


def test_a_save_that_fails_leaves_the_folder_as_it_was(rep, tmp_path, monkeypatch):
    """Was: the tables and report.json were written before the figures, so a failing figure
    left new tables beside an earlier report's page and images."""
    rep.save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(self):
        raise ValueError("a figure failed")

    monkeypatch.setattr(Report, "figures", broken)
    with pytest.raises(ValueError, match="a figure failed"):
        rep.save(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_undefined_output_cosine_is_recorded_and_shown_as_such(sim, tmp_path):
    """output_cosine gives NaN where non-finite outputs leave it undefined: the report refused
    it after the whole simulation; it is kept, saved and read back, shown as undefined."""
    rep = sim.report()
    with pytest.raises(ValueError, match=r"allowed: a number in \[-1, 1\], or NaN"):
        rep.set_output_fidelity(1.5, 10)
    rep.set_output_fidelity(float("nan"), 10)
    shown = dict((row[0], row[1]) for row in rep.summary_rows())
    assert shown["output fidelity"] == "cosine to float undefined (outputs not finite) on 10 inputs"
    rep.save(tmp_path)
    back = dict((row[0], row[1]) for row in Report.load(tmp_path).summary_rows())
    assert back["output fidelity"] == shown["output fidelity"]


def test_layer_plots_scale_their_unit_and_keep_the_legend_off_the_bars():
    """A whole model's energy axis read "1e9" above "pJ"; a ViT's equal bars had the legend
    over them; the latency bars wore the cell's colour."""
    import matplotlib

    matplotlib.use("Agg")
    from cimsim.report import LATENCY_COLOR, PALETTE, plot_energy_per_layer, plot_latency_per_layer

    layers = pd.DataFrame({"layer": [f"blocks.{i}" for i in range(6)],
                           "energy_adc_pj_per_inference": [3e8] * 6,
                           "energy_cell_pj_per_inference": [1e8] * 6,
                           "energy_pj_per_inference": [4e8] * 6,
                           "latency_ns_per_inference": [6e5] * 6})
    ax = plot_energy_per_layer(layers).axes[0]
    assert ax.get_ylabel() == "energy per inference (µJ)"
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert "400" in ticks and not ax.yaxis.get_offset_text().get_text()
    assert ax.get_legend().get_bbox_to_anchor().x0 >= ax.get_window_extent().x1 - 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cell", "adc"]  # as stacked
    ax = plot_latency_per_layer(layers).axes[0]
    assert ax.get_ylabel() == "latency per inference (µs)"
    assert LATENCY_COLOR not in PALETTE
    small = layers.assign(energy_adc_pj_per_inference=[300.0] * 6,
                          energy_cell_pj_per_inference=[100.0] * 6)
    assert plot_energy_per_layer(small).axes[0].get_ylabel() == "energy per inference (pJ)"


def test_large_headline_figures_are_also_given_in_a_readable_unit():
    """A whole model's summary read "6,778,795,867.8 pJ" and "9,168,030.0 ns"."""
    from cimsim.report import headline_lines, readable

    lines = headline_lines({"energy_pj_per_inference": 6778795867.8,
                            "latency_ns_per_inference": 9168030.0})
    assert lines[0].endswith("6,778,795,867.8 pJ (6.78 mJ)")
    assert lines[1].endswith("9,168,030.0 ns (9.17 ms)")
    assert headline_lines({"energy_pj_per_inference": 357400.0})[0].endswith("357,400.0 pJ")
    assert readable(999999.9, "ns") == "1 ms" and readable(1.5e13, "pJ") == "15 J"


def test_a_long_table_shows_its_first_rows_on_the_page_and_all_in_its_csv(rep):
    """MobileNetV2's 7,173 block rows made a 2.6 MB page: the page holds the first rows."""
    import dataclasses

    from cimsim import report as report_module

    many = pd.concat([rep.blocks] * (report_module._PAGE_ROWS // max(len(rep.blocks), 1) + 2),
                     ignore_index=True)
    big = dataclasses.replace(rep, blocks=many)
    page = big.to_html()
    assert f"the first {report_module._PAGE_ROWS} of {len(many)} rows; blocks.csv has all" in page
    # the rows beyond are not on the page: the table after that caption has the first rows
    table = page.split("blocks.csv has all", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == report_module._PAGE_ROWS + 1  # and its header row
    small = rep.to_html()
    assert f"of {len(rep.blocks)} rows; blocks.csv" not in small
