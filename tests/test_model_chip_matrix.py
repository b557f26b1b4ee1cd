"""Models of every family on every chip: the cross product ``scripts/audit_models_on_chips.py``
runs (docs/model-chip-matrix.md), a small subset by default and the whole of it as ``slow``.

Every chip (presets, published macros, the hypothetical macros of tests/data/chips) hosts a
handful of models covering the layer kinds (attention + embedding + tied head, depthwise conv,
recurrent layers, transposed, 1-d and 3-d convs, weights computed in the forward): each runs,
gives finite outputs, maps or lists every weight matrix (and lists the same modules on every
chip), and its report's per-component and per-layer energies sum to its total. A chip with
1-b inputs refuses a signed activation naming the layer, and runs with the zero-point quantizer
the refusal suggests.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import cimsim
from scripts.audit_models_on_chips import (
    audit_pair,
    chip_configs,
    model_cases,
    report_sums,
)

from .mapping.conftest import check_every_matrix
from .mapping.test_new_models import ZOO
from .mapping.test_zoo2 import ZOO2
from .mapping.test_zoo7 import _DIGITAL as DIGITAL7

CASES = model_cases()
CHIPS = chip_configs()

# what each smoke model keeps digital, on every chip (the zoos' own lists)
SMOKE = {
    "gpt-tied-head": {"emb", "blocks.layers.0.self_attn", "blocks.layers.1.self_attn"},
    "convnext": set(),
    "stacked-rnn": set(),
    "unet": set(),
    "video": set(),
    "tcn": set(),
    "glow": DIGITAL7["glow"],
}
assert set(SMOKE) <= set(CASES) and {"gpt-tied-head", "convnext"} <= set(ZOO)
assert {"stacked-rnn", "unet"} <= set(ZOO2)


def _deploy(name: str, chip):
    """(model, args, sim, outputs): deployed with noise on, seed 0, on its example inputs;
    time-multiplexed where the chip has too few arrays, zero-point inputs on 1-b input chips."""
    case = CASES[name]
    model, args, batch_dim = case.build()
    if chip.input_bits == 1:
        chip = chip.replace(quant=chip.quant.replace(act_zero_point=True))
    chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # what stays digital: checked below
        sim = cimsim.deploy(model, chip, args, seed=0, batch_dim=batch_dim,
                            exclude=case.exclude)
    torch.manual_seed(0)
    with torch.no_grad():
        return model, args, sim, sim(*args)


@pytest.mark.parametrize("name", list(SMOKE))
@pytest.mark.parametrize("chip", list(CHIPS))
def test_every_chip_runs_the_model_finite_with_every_matrix_accounted(chip, name):
    model, args, sim, got = _deploy(name, CHIPS[chip])
    outs = got if isinstance(got, tuple) else (got,)
    assert all(torch.isfinite(o).all() for o in outs)
    check_every_matrix(model, sim, SMOKE[name], CASES[name].not_matrices)
    report = sim.report()
    # a time-multiplexed model: one more row, what reprogramming the arrays costs
    assert [n for n in report.layers["layer"] if n != "(reprogramming)"] == list(sim.sim_layers)
    total, components_sum, layers_sum = report_sums(report)
    assert total > 0 and components_sum and layers_sum


@pytest.mark.parametrize("chip", [c for c in CHIPS if CHIPS[c].input_bits == 1])
def test_one_bit_input_chips_refuse_a_signed_activation_naming_the_layer(chip):
    """The refusal named no layer ('a layer whose calibration inputs go below 0'): in a model
    of 20 layers the user could not tell which to exclude."""
    model, args, _ = CASES["convnext"].build()
    cfg = CHIPS[chip].replace(array=CHIPS[chip].array.replace(allow_time_multiplexing=True))
    with pytest.raises(cimsim.ConfigError,
                       match=r"layer 'stem': input_bits = 1 cannot hold signed .*"
                             r"quant.act_zero_point = true.*exclude=\['stem'\]"):
        cimsim.deploy(model, cfg, args)
    # the advice works: the next layer with signed inputs (a conv's output) is named next
    with pytest.raises(cimsim.ConfigError, match=r"layer 'dw\S*': input_bits = 1"):
        cimsim.deploy(model, cfg, args, exclude=["stem"])


@pytest.mark.parametrize("chip", ["rram-22nm", "published/hermes-jssc22",
                                  "hypothetical/pcm-2dev-pwm"])
def test_same_seed_same_outputs(chip):
    a = _deploy("gpt-tied-head", CHIPS[chip])[3]
    b = _deploy("gpt-tied-head", CHIPS[chip])[3]
    assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_every_model_on_every_chip(name):
    """The whole matrix of the audit script (minutes): no pair crashes, every output is
    finite, every matrix mapped or listed, every report sums."""
    bad = []
    for chip, cfg in CHIPS.items():
        row = audit_pair(CASES[name], chip, cfg, noise_off_above=-1)
        if (row["status"] != "ok" or row["n_nonfinite"] or row["unaccounted"]
                or not (row["component_sum_ok"] and row["layer_sum_ok"])):
            bad.append(row)
    assert not bad, bad
