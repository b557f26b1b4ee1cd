"""Models of every family on every chip: the cross product ``scripts/audit_models_on_chips.py``
runs (docs/model-chip-matrix.md), a small subset by default and the whole of it as ``slow``.

Every chip (presets, published macros, the hypothetical macros of tests/data/chips) hosts a
handful of models covering the layer kinds (attention + embedding + tied head, depthwise conv,
recurrent layers, transposed, 1-d and 3-d convs, weights computed in the forward, a keyword
batch, pruning hooks, learned inputs of attentions): each runs,
gives finite outputs, maps or lists every weight matrix (and lists the same modules on every
chip), and its report's per-component and per-layer energies sum to its total. A chip with
1-b inputs refuses a signed activation naming the layer, and runs with the zero-point quantizer
the refusal suggests.
"""

from __future__ import annotations

import ast
import math
import re
import warnings

import pytest
import torch

import cimsim
from cimsim.config import ADCKind
from scripts.audit_models_on_chips import (
    audit_pair,
    chip_configs,
    deploy_as_advised,
    model_cases,
    noise_free,
    report_sums,
)

from .mapping.conftest import assert_bitwise, check_every_matrix, reference_model
from .mapping.test_new_models import ZOO
from .mapping.test_zoo2 import ZOO2
from .mapping.test_zoo7 import _DIGITAL as DIGITAL7
from .mapping.test_zoo9 import _DIGITAL as DIGITAL9
from .mapping.test_zoo11 import _DIGITAL as DIGITAL11

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
    # the newer zoos: an HF-style BERT called with a tokenizer's keyword batch (labelled
    # zoo9/bert beside zoo5's), a pruned MLP (weights recomputed by torch's pruning hook),
    # a set transformer (learned inducing points and seed, inputs of mapped attentions)
    "zoo9/bert": DIGITAL9["bert"],
    "pruned": set(),
    "set-transformer": DIGITAL11["set-transformer"],
}
assert set(SMOKE) <= set(CASES) and {"gpt-tied-head", "convnext"} <= set(ZOO)
assert {"stacked-rnn", "unet"} <= set(ZOO2)


def test_every_zoo_model_is_a_case_under_its_own_name():
    """zoo9's 'bert' and zoo11's 'alibi' replaced zoo5's and zoo7's in the cases' dict: a zoo
    reusing an earlier zoo's name is labelled 'zoo/name'; every registry entry is a case, with
    its zoo's per-model not-matrices (zoos 8+ hold them in a dict, whose keys were taken)."""
    import importlib

    from scripts.audit_models_on_chips import _ZOOS

    n = sum(len(getattr(importlib.import_module(m), r)) for m, r in _ZOOS)
    assert len(CASES) == n + 2  # + the bundled digits ResNet and the small ViT
    assert (CASES["bert"].zoo, CASES["zoo9/bert"].zoo) == ("zoo5", "zoo9")
    assert (CASES["alibi"].zoo, CASES["zoo11/alibi"].zoo) == ("zoo7", "zoo11")
    assert CASES["set-transformer"].not_matrices == ("isab.inducing", "seed")
    assert CASES["rwkv"].not_matrices[0] == "block.tm_k" and CASES["lora"].not_matrices == ()


def _deploy(name: str, chip):
    """(model, sim, outputs, excluded): deployed with noise on, seed 0, on its example inputs,
    as a user following cimsim's errors would (time-multiplexed where the chip has too few
    arrays; on 1-b input chips the layers with signed inputs excluded, as the refusal says)."""
    case = CASES[name]
    model, args, batch_dim = case.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # what stays digital: checked below
        sim, got, _, exclude, _ = deploy_as_advised(case, chip, model, args, batch_dim)
    return model, sim, got, set(exclude)


# every matrix of these has a signed input (LayerNorm, GELU, residual sums, the LSTM's own
# states), so a 1-b input chip, each refused layer excluded, is left with nothing to map
ONE_BIT_REFUSED = {"convnext", "stacked-rnn", "zoo9/bert"}


@pytest.mark.parametrize("name", list(SMOKE))
@pytest.mark.parametrize("chip", list(CHIPS))
def test_every_chip_runs_the_model_finite_with_every_matrix_accounted(chip, name):
    if CHIPS[chip].input_bits == 1 and name in ONE_BIT_REFUSED:
        with pytest.raises(cimsim.MappingError, match="no layer can be mapped.*excluded"):
            _deploy(name, CHIPS[chip])
        return
    model, sim, got, excluded = _deploy(name, CHIPS[chip])
    assert torch.isfinite(got).all()
    assert not excluded or CHIPS[chip].input_bits == 1
    check_every_matrix(model, sim, SMOKE[name] | excluded, CASES[name].not_matrices)
    report = sim.report()
    # a time-multiplexed model: one more row, what reprogramming the arrays costs
    assert [n for n in report.layers["layer"] if n != "(reprogramming)"] == list(sim.sim_layers)
    total, components_sum, layers_sum = report_sums(report)
    assert total > 0 and components_sum and layers_sum


@pytest.mark.parametrize("chip", [c for c in CHIPS if CHIPS[c].input_bits == 1])
def test_one_bit_input_chips_refuse_a_signed_activation_naming_the_layer(chip):
    """The refusal named no layer ('a layer whose calibration inputs go below 0'): in a model
    of 20 layers the user could not tell which to exclude. Then it named the first only, and
    following its advice refused the next, a deploy per layer: it names them all at once
    (tests/mapping/test_zoo23.py), each by what exclude takes."""
    model, args, _ = CASES["convnext"].build()
    cfg = CHIPS[chip].replace(array=CHIPS[chip].array.replace(allow_time_multiplexing=True))
    with pytest.raises(cimsim.ConfigError,
                       match=r"layers 'stem', 'dw', 'pw1', 'pw2', 'fc': input_bits = 1 cannot "
                             r"hold signed .*input_bits >= 2.*"
                             r"exclude=\['stem', 'dw', 'pw1', 'pw2', 'fc'\]$"):
        cimsim.deploy(model, cfg, args)
    # a layer alone is named as before, by what exclude takes (a grouped conv's module, not
    # its group's matrix 'dw[g0]')
    with pytest.raises(cimsim.ConfigError, match=r"layer 'dw\[g0\]': .*exclude=\['dw'\]$"):
        cimsim.deploy(model, cfg, args, exclude=["stem", "pw1", "pw2", "fc"])


def test_a_recurrent_refusal_names_the_module_exclude_takes():
    """The advice was exclude=['lstm.weight_ih_l0'], which excludes nothing (exclude takes
    module names): following it refused the same matrix again, forever."""
    model, args, batch_dim = CASES["stacked-rnn"].build()
    cfg = CHIPS["published/colonnade-jssc21"]
    cfg = cfg.replace(array=cfg.array.replace(allow_time_multiplexing=True))
    with pytest.raises(cimsim.ConfigError) as err:
        cimsim.deploy(model, cfg, args, batch_dim=batch_dim)
    hint = re.search(r"exclude=(\[[^\]]+\])", str(err.value))  # every such layer at once
    assert hint is not None, str(err.value)
    names = ast.literal_eval(hint.group(1))
    assert names and not any("weight_" in n for n in names), str(err.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # every layer is named here: excluded, none is left to map (as the audit reports it)
        with pytest.raises(cimsim.MappingError, match="no layer can be mapped.*lstm .*"
                           "excluded by the user"):
            cimsim.deploy(model, cfg, args, batch_dim=batch_dim, exclude=names)


@pytest.mark.parametrize("chip", ["rram-22nm", "published/hermes-jssc22",
                                  "hypothetical/pcm-2dev-pwm"])
def test_same_seed_same_outputs(chip):
    a = _deploy("gpt-tied-head", CHIPS[chip])[2]
    b = _deploy("gpt-tied-head", CHIPS[chip])[2]
    assert torch.equal(a, b)


def _refused_as_expected(row: dict, chip) -> bool:
    """A 1-b input chip with every layer of the model fed a signed activation: each refused
    layer excluded, nothing is left to map."""
    return (chip.input_bits == 1 and row["exc_type"] == "MappingError"
            and "no layer can be mapped" in row["exc_message"])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_every_model_on_every_chip(name):
    """The whole matrix of the audit script (without its noise-off reruns): no pair crashes
    or is refused but for a 1-b input chip with nothing left to map, every output is finite,
    every matrix mapped or listed, every report sums, every trace runs."""
    bad = []
    for chip, cfg in CHIPS.items():
        row = audit_pair(CASES[name], chip, cfg, noise_off_above=-1)
        if (row["status"] != "ok" and not _refused_as_expected(row, cfg)) or (
                row["status"] == "ok" and (row["n_nonfinite"] or row["unaccounted"]
                                           or row["trace_error"] or not (
                                               row["component_sum_ok"] and row["layer_sum_ok"]))):
            bad.append(row)
    assert not bad, bad


def test_an_excluded_tied_head_is_listed_once_not_as_a_functional_weight():
    """Excluding a head tied to the embedding (what a 1-b input chip's refusal advises) also
    listed and warned 'emb.weight reaches a matrix product without a mappable module ... hold
    it in an nn.Linear': it is in one, the excluded head, whose own row says it is digital."""
    model, args, _ = CASES["gpt-tied-head"].build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = cimsim.deploy(model, CHIPS["ideal"], args, exclude=["head"])
    assert not [w for w in caught if "without a mappable module" in str(w.message)]
    check_every_matrix(model, sim, SMOKE["gpt-tied-head"] | {"head"},
                       CASES["gpt-tied-head"].not_matrices)
    assert ("head", "Linear", "excluded by the user") in sim.digital


def _lossless(chip):
    """``chip`` with everything lossy off but its encoding, slicing, input drive and tiling:
    no noise, variation, faults, non-linearity, off-current or ADC error, a full-scale linear
    ADC of 24 bits (at most 256 rows, so that 24 bits cover every partial sum). A block
    floating-point chip's quantizer is the integer one here (the conftest's integer model
    knows one input scale per tensor; tests/mapping/test_block_fp.py holds block-FP inputs and
    power-of-two weight scales bit-equal to their own hand reference)."""
    c = noise_free(chip)
    c = c.replace(quant=c.quant.replace(act_format="int", weight_scale="float"))
    rows = min(c.array.n_rows, 256)
    rpc = c.array.rows_per_conversion
    kind = ADCKind.SAR if c.adc.kind is ADCKind.RAMP else c.adc.kind  # ramp: fitted levels
    return c.replace(
        adc=c.adc.replace(kind=kind, bits=c.adc.bits if kind is ADCKind.DIGITAL else 24,
                          range_policy="full_scale", full_scale_factor=1.0, gain_error=0.0,
                          offset_error_lsb=0.0),
        noise=c.noise.replace(nonlinearity="none", ir_drop_beta=0.0),
        device=c.device.replace(on_off_ratio=math.inf),
        array=c.array.replace(n_rows=rows, allow_time_multiplexing=True,
                              rows_per_conversion=None if rpc is None else min(rpc, rows)))


# a 1-b input chip: the digits ResNet, whose inputs are all non-negative (pixels, ReLUs), maps
# whole; the others' signed inputs would leave little on the arrays
LOSSLESS = [(chip, name) for chip in CHIPS for name in (
    ["resnet-digits"] if CHIPS[chip].input_bits == 1 else ["mobilenet", "gpt-tied-head"])]


@pytest.mark.parametrize("chip, name", LOSSLESS)
def test_every_chip_made_lossless_equals_the_integer_model(chip, name):
    """Each chip's own weight encoding (ternary digits, binary, two's complement, offset,
    analog-combined slices, two devices per polarity), input drive and tiling, all noise and
    ADC loss off: bit-equal to the conftest's integer re-implementation of the quantized model
    (whatever stays digital is float in both)."""
    case = CASES[name]
    model, args, batch_dim = case.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sim, _, _, _, _ = deploy_as_advised(case, _lossless(CHIPS[chip]), model, args,
                                            batch_dim)
    with torch.no_grad():
        want = reference_model(model, sim, check_weights=False)(*args)
    assert_bitwise(sim(*args), want)


def test_matrix_page_is_its_csv_summarized() -> None:
    """docs/model-chip-matrix.md is what ``--summarize-only`` writes from its CSV for the chips
    and models the code has now: a hand edit, or a chip added without the page naming it as
    not measured, fails here (regenerate: ``python scripts/audit_models_on_chips.py
    --summarize-only``, two seconds, nothing simulated)."""
    from pathlib import Path

    from scripts.audit_models_on_chips import MEASURED_AT, read_rows, summary_markdown

    docs = Path(__file__).resolve().parents[1] / "docs"
    rows = read_rows(docs / "model-chip-matrix")
    page = (docs / "model-chip-matrix.md").read_text()
    command = re.search(r"Regenerate with\n\n    (.*)\n", page)
    assert command is not None, "the page names no command"
    measured = MEASURED_AT.search(page)
    assert measured is not None, "the page names no commit it was measured at"
    assert summary_markdown(rows, command.group(1), CHIPS, measured.group(1)) == page, (
        "docs/model-chip-matrix.md is not its CSV summarized: run python "
        "scripts/audit_models_on_chips.py --summarize-only")


def test_a_run_writes_one_csv_per_zoo_and_the_page_reads_them_back(tmp_path) -> None:
    """The rows go to one CSV per zoo (the single 2-MB file had to be cut twice as zoos were
    added); a run replaces every CSV of the directory, and ``--csv x.csv`` still writes one
    file. The page from either is the same."""
    from scripts.audit_models_on_chips import main, read_rows

    out = tmp_path / "matrix"
    out.mkdir()
    (out / "stale.csv").write_text("model,zoo\n")  # an earlier run's zoo: not this run's table
    picked = ["--models", "resnet-digits", "tcn", "--chips", "ideal", "--noise-off-above", "-1",
              "--pair-timeout", "0"]
    assert main([*picked, "--csv", str(out), "--md", str(tmp_path / "a.md")]) == 0
    assert sorted(f.name for f in out.iterdir()) == ["models.csv", "zoo3.csv"]
    rows = read_rows(out)
    assert [(r["model"], r["chip"], r["status"]) for r in rows] == [
        ("tcn", "ideal", "ok"), ("resnet-digits", "ideal", "ok")]  # the zoos' order
    assert main([*picked, "--csv", str(tmp_path / "one.csv"), "--md", str(tmp_path / "b.md")]) == 0
    assert [r["model"] for r in read_rows(tmp_path / "one.csv")] == ["tcn", "resnet-digits"]
    page = (tmp_path / "a.md").read_text()
    assert page.count("| ideal |") >= 1 and page == (tmp_path / "b.md").read_text().replace(
        str(tmp_path / "one.csv"), str(out)).replace(str(tmp_path / "b.md"),
                                                     str(tmp_path / "a.md"))


def test_a_subset_run_into_the_page_is_refused_with_the_way_out(capsys) -> None:
    """``--zoo zoo17`` alone used to replace every zoo's CSV of docs/model-chip-matrix/ and
    the page with its own rows (restored from git by hand): a subset must be written apart."""
    from scripts.audit_models_on_chips import main

    with pytest.raises(SystemExit) as info:
        main(["--zoo", "zoo3", "--chips", "ideal"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "give both --csv DIR (or FILE.csv) and --md FILE" in err
    assert "docs/model-chip-matrix/" in err
    with pytest.raises(SystemExit):  # the page's markdown alone is refused too
        main(["--zoo", "zoo3", "--csv", "/nonexistent/never-written/"])
