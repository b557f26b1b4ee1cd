"""One colour per cost component in every figure of a report."""

from __future__ import annotations

import pandas as pd
from matplotlib.colors import to_hex

import cimsim
from cimsim.cost import COMPONENTS
from cimsim.cost.area import chip_area_um2
from cimsim.report import PALETTE, component_color, plot_area_by_component, plot_energy_per_layer


def test_energy_and_area_figures_colour_a_component_alike():
    """The frames in the orders a report has them: energy columns in ``COMPONENTS`` order, area
    rows in the chip's instance order (cell, adc, dac, ...), where adc and dac swap places."""
    chip = cimsim.load_chip("rram-22nm")
    layers = pd.DataFrame({"layer": ["0", "2"], "energy_pj_per_inference": [36.0, 36.0],
                           **{f"energy_{c}_pj_per_inference": [1.0 + i, 2.0 + i]
                              for i, c in enumerate(COMPONENTS)}})
    area_um2 = chip_area_um2(chip)
    area = pd.DataFrame({"component": list(area_um2), "area_um2": list(area_um2.values())})
    assert list(area["component"]) != [c for c in COMPONENTS if c in area_um2]

    ax = plot_energy_per_layer(layers).axes[0]
    energy = {c.get_label(): to_hex(c.patches[0].get_facecolor()) for c in ax.containers}
    ax = plot_area_by_component(area).axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    by_area = {n: to_hex(p.get_facecolor()) for n, p in zip(names, ax.patches, strict=True)}

    common = set(energy) & set(by_area)
    assert {"cell", "adc", "dac", "shift_add", "accumulator", "buffer"} <= common
    for comp in common:
        assert energy[comp] == by_area[comp] == component_color(comp), comp
    assert len(set(energy.values())) == len(energy)
    assert len(set(by_area.values())) == len(by_area)


def test_component_colours_are_distinct_and_fixed():
    colours = [component_color(c) for c in COMPONENTS]
    assert len(set(colours)) == len(COMPONENTS) and set(colours) <= set(PALETTE)
    assert component_color("something_new") == component_color("something_new")
    # a name outside the components: a colour of its own, no component's (the palette's ten
    # are the ten components')
    assert component_color("something_new") not in PALETTE
