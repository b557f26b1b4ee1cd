"""Public-API docstring contracts, from a hunt for contracts the code did not keep: each test
failed on the code of 2026-12-05 for the reason its docstring gives; where the docstring was
what was wrong, the test now holds the behaviour the corrected docstring states."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.adc import fit_levels
from cimsim.errors import MappingError


def test_deploy_refuses_a_string_as_calibration_with_a_mapping_error():
    """``cimsim.deploy``'s Raises: "MappingError  ... calibration data that is empty or of a
    kind deploy cannot read". A string is no calibration data deploy can read (a tensor,
    ndarray, tuple of tensors, dict or DataLoader), and bytes or a list of numbers are refused
    with a MappingError naming the calibration; a ``str`` is instead iterated as a DataLoader,
    each character handed to the model, and deploy fails with
    ``AttributeError: 'str' object has no attribute 'dim'`` from inside a simulated layer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(MappingError, match="calibration"):
            cimsim.deploy(model, "ideal", "abc", progress=False)


def test_matmul_outputs_do_not_depend_on_chunk_vectors_with_a_calibrated_percentile_adc():
    """``cimsim.matmul``'s ``chunk_vectors``: "Input vectors simulated per chunk ...; the
    outputs and integer counts do not depend on it." On the ``rram-22nm`` preset (calibrated
    per-column ranges at the 99.99th percentile; noise switched off here so only the ranges
    matter) with more calibration samples than ``RangeStats.max_samples`` (6,000 vectors x 8
    input planes = 48,000 > 20,000), the outputs change with ``chunk_vectors``:
    ``RangeStats.add`` subsamples each chunk by a stride computed from that chunk's size, and
    ``ranges_from_samples`` subsamples the concatenation again, so which samples set the
    percentile (hence the ADC ranges) depends on where the chunks were cut."""
    from tests.test_review_hunt_train_sweep_rangestats import assert_chunk_independent

    chip = cimsim.load_chip("rram-22nm", overrides={"noise.thermal_sigma_lsb": 0.0})
    assert_chunk_independent(chip, 6000, 3000)


def test_fit_levels_pads_as_its_docstring_says_per_method():
    """``cimsim.adc.fit_levels``'s Returns said every method split the widest gaps with the
    extra levels, repeating none unless lo == hi; ``cdf`` on 0 and 1 at 2 bits gave
    ``[0, 0, 0.75, 1]``. The docstring (and docs/levels.md) now say the K-means-type methods
    pad so, ``uniform``/``lloyd_max`` spread over [lo, hi], and ``cdf``'s one-ulp cells can
    repeat a neighbour's level."""
    samples = np.array([0.0] * 50 + [1.0] * 50)
    for method in ("kmeans", "kmeans_optimal", "bs_kmq"):
        levels = fit_levels(samples, 2, method).levels
        assert len(np.unique(levels)) == levels.size == 4, (method, levels)
    for method in ("uniform", "lloyd_max"):
        np.testing.assert_allclose(fit_levels(samples, 2, method).levels, [0, 1 / 3, 2 / 3, 1])
    cdf = fit_levels(samples, 2, "cdf")
    np.testing.assert_array_equal(cdf.levels, [0, 0, 0.75, 1])  # docs/levels.md's example
    assert np.all(np.diff(cdf.thresholds) > 0)


def test_prepared_deploy_equals_the_eval_twin_on_the_lossless_chip_as_documented():
    """``PreparedModel.deploy``'s Returns said "exactly on a lossless chip"; with a float32
    model 60 % of a Linear's outputs on ``ideal`` differed from the twin's by one float32 ulp
    (the twin dequantizes in float32, the engine in float64). The docstring now says exactly
    for a float64 twin, about one float32 ulp for a float32 one; both held here."""
    from cimsim.train import prepare

    for dtype in (torch.float64, torch.float32):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 4)).to(dtype)
        x = torch.randn(32, 16, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare(model, "ideal", x)
            prepared.eval()
            with torch.no_grad():
                y_twin = prepared(x)
            y_deployed = prepared.deploy()(x).to(dtype)
        if dtype is torch.float64:
            assert torch.equal(y_twin, y_deployed)
        else:
            # about one float32 ulp of the scaled product and the bias (docs/training.md)
            scale = (y_twin.abs().max() + model[0].bias.abs().max()).item()
            torch.testing.assert_close(y_deployed, y_twin, rtol=0,
                                       atol=4 * torch.finfo(torch.float32).eps * scale)
            assert not torch.equal(y_deployed, y_twin)  # (float64 would be exact)


def test_component_color_of_a_name_outside_the_components_is_no_components_colour():
    """``cimsim.report.component_color``: "the palette in ``cimsim.cost.COMPONENTS`` order,
    then the remaining colours for names outside it, in a fixed order". The palette has 10
    colours and ``COMPONENTS`` 10 names, so no colour remains: a name outside the components
    falls back to the whole palette and takes a component's colour ('other' is drawn in
    buffer's colour, '(reprogramming)' and 'array' in shift_add's)."""
    from cimsim.cost import COMPONENTS
    from cimsim.report import component_color

    taken = {component_color(c) for c in COMPONENTS}
    for name in ("other", "(reprogramming)", "array"):
        assert component_color(name) not in taken, name
