"""Tests written for the survivors of a hand-made mutation round over the mapping layer
(cimsim/mapping/*, cimsim/arrays/encoding.py, cimsim/arrays/cache.py): each pins a behaviour
that a small wrong change left every earlier test passing. Known answers where possible: a
plain torch computation of the same layer (a simulated layer in its observe mode computes in
float), or a count derived by hand in a comment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.events import Action, Component, event_key
from cimsim.mapping.layers import SimConv, SimMultiheadAttention

from .conftest import lossless_chip


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")
def test_same_padding_of_an_even_kernel_puts_the_odd_pixel_after_as_torch():
    """``padding='same'`` with an even (dilated) kernel pads one more pixel after than before,
    as torch resolves it; padding the odd pixel before shifts every output by one position
    (the tests' odd kernels pad both sides alike and cannot tell)."""
    torch.manual_seed(0)
    for conv, x in ((nn.Conv1d(2, 3, 4, padding="same").double(),
                     torch.randn(2, 2, 9, dtype=torch.float64)),
                    (nn.Conv2d(2, 3, (2, 4), padding="same", dilation=(1, 3)).double(),
                     torch.randn(2, 2, 6, 11, dtype=torch.float64))):
        sim = SimConv(conv, "c", lossless_chip(), 0)  # observe mode: the float product
        torch.testing.assert_close(sim(x), conv(x), rtol=1e-12, atol=1e-12)


def test_dequantization_multiplies_are_counted_per_part():
    """With ``weight_granularity = 'column'`` each row tile is a part dequantized with its own
    scales: one multiply per output per part. A Linear of 80 inputs on 37-row arrays has 3 row
    tiles (37 + 37 + 6): 4 vectors x 5 outputs x 3 parts = 60 multiplies (one per output,
    20, was the count of a single part)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(80, 5)).eval()
    sim = cimsim.deploy(model, lossless_chip("column"), torch.randn(16, 80), progress=False)
    assert len(sim.sim_layers["0"].cores[0].parts) == 3
    sim.reset()
    sim(torch.randn(4, 80))
    dq = event_key(Component.DIGITAL, Action.DEQUANT_MULTIPLY)
    assert sim.sim_layers["0"].events[dq] == 4 * 5 * 3


def _mha_pair(batch_first: bool = True):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first).double().eval()
    sim = SimMultiheadAttention(mha, "att", lossless_chip(), 0)  # observe mode: float
    return mha, sim


def test_is_causal_without_a_mask_masks_every_later_key():
    """``is_causal=True`` with no ``attn_mask``: query i sees keys 0..i, as torch's causal
    mask ``ones(L, S).triu(1)`` (True: masked) gives; a mask that let each query see the
    next key as well (``triu(2)``) was no other test's concern."""
    mha, sim = _mha_pair()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    want, _ = mha(x, x, x, attn_mask=causal, need_weights=False)
    got, _ = sim(x, x, x, need_weights=False, is_causal=True)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_averaged_attention_weights_are_the_mean_over_heads_as_torch():
    """``need_weights=True`` returns the attention weights averaged over the heads (each row
    sums to 1), or per head with ``average_attn_weights=False``, as torch's module."""
    mha, sim = _mha_pair()
    x = torch.randn(3, 4, 8, dtype=torch.float64)
    for average in (True, False):
        _, want = mha(x, x, x, need_weights=True, average_attn_weights=average)
        _, got = sim(x, x, x, need_weights=True, average_attn_weights=average)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.sum(-1), torch.ones(3, 2, 4, dtype=torch.float64))


def test_groups_draw_their_programming_variation_independently():
    """Each group of a grouped conv is its own matrix seeded ``stream_key(seed, g)``: two
    groups holding the same weights, fed the same inputs, still err differently on a chip
    with programming variation (seeded alike, every group drew the same cells: errors
    correlated across a depthwise layer's channels)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 4, 1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight[2:] = conv.weight[:2]  # group 1 = group 0
    model = nn.Sequential(conv).eval()
    x = torch.randn(8, 2, 3, 3)
    x = torch.cat([x, x], dim=1)  # group 1's channels = group 0's
    sim = cimsim.deploy(model, "rram-22nm", x, progress=False)
    y = sim(x)
    assert not torch.equal(y[:, :2], y[:, 2:])


def test_calibration_reservoir_keeps_every_row_with_equal_probability(monkeypatch):
    """``InputStats`` keeps a uniform sample (Algorithm R: row j, 1-based, replaces a slot
    with probability cap/j). With a reservoir of one row and three rows observed, each row is
    the one kept with probability 1/3; counting rows from 0 instead (cap/(j-1)) always
    replaced the first row by the second, and the sample followed the last batches."""
    from cimsim.mapping import matrix

    monkeypatch.setattr(matrix, "MAX_CALIBRATION_ROWS", 1)
    kept = np.zeros(3, dtype=int)
    for seed in range(600):
        stats = matrix.InputStats(seed)
        stats.observe(np.arange(3.0)[:, None])
        kept[int(stats.sample[0, 0])] += 1
    assert kept.min() >= 150 and kept.max() <= 250, kept  # 200 each expected; sd ~ 11.5


def test_recurrent_dropout_is_between_layers_only_as_torch():
    """``dropout`` of an ``nn.LSTM`` applies in training between stacked layers, never to the
    last layer's output: a one-layer LSTM with ``dropout=0.5`` in training computes exactly
    what it computes in eval (torch's own module is the reference here). The training twin
    runs ``recurrent_forward`` in training mode; dropout after the last layer too would
    zero half its outputs."""
    from cimsim.mapping.recurrent import RecurrentShape, recurrent_forward, recurrent_matrices

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="dropout"):
        lstm = nn.LSTM(3, 4, num_layers=1, dropout=0.5).double().train()
    names = recurrent_matrices(lstm)

    def project(idx, which, x):
        w, b = names[idx][which]
        return F.linear(x, getattr(lstm, w), None if b is None else getattr(lstm, b))

    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        want, (h, c) = lstm(x)
        got, (h2, c2) = recurrent_forward(project, RecurrentShape.of(lstm), True, x, None, "r")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h2, h, rtol=1e-12, atol=1e-12)


def test_torch_backend_read_noise_of_an_analog_pair_counts_both_columns():
    """With an analog differential read-out a conversion reads the difference of a column
    pair (kept apart in the GEMM under a column non-linearity), and its per-cell read noise is
    that of both columns (the engine's ``gemm_var`` of
    the positive plus the negative column). The torch backend's variance per output agrees
    with the engine's; leaving out the negative column's halved it (the backend tests read
    digital pairs, one column per conversion)."""
    from tests.conftest import ideal_chip

    chip = ideal_chip(encoding="differential", differential_readout="analog", input_bits=6,
                      weight_bits=6, n_rows=16, n_cols=32,
                      adc=dict(bits=8, range_policy="calibrated"),
                      noise=dict(read_noise_rel=0.1, nonlinearity="saturating",
                                 saturation_fraction=2.0))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 3)).eval()
    x = torch.randn(16, 12)
    numba = cimsim.deploy(model, chip, x, seed=3, progress=False)
    sim = cimsim.deploy(model, chip, x, seed=3, backend="torch", device="cpu", progress=False)
    assert (next(iter(numba.sim_layers.values())).cores[0].view.parts[0][2].neg >= 0).any()
    torch.manual_seed(0)
    xs = x[:1].repeat(800, 1)
    a, b = numba(xs).numpy(), sim(xs).numpy()
    assert (a.std(axis=0) > 0).all()
    np.testing.assert_allclose(b.var(axis=0) / a.var(axis=0), 1.0, atol=0.2)


class _ScaledLinear(nn.Module):
    """``F.linear`` with its weight times a gain near 1: not ``nn.Linear``'s computation."""

    def __init__(self, gain: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 6))
        self.bias = nn.Parameter(torch.randn(4))
        self.gain = gain

    def forward(self, x):
        return F.linear(x, self.weight * self.gain, self.bias)


def test_affine_probe_refuses_a_weight_one_percent_off():
    """The probe takes a module for a Linear only where its output equals ``F.linear(x, W,
    b)`` to float32 rounding (1e-4 of the output's scale): a weight scaled by 1.01 (a learned
    gain, a fake-quantized weight) is another computation, kept as it is; a tolerance of
    percents mapped it as the plain Linear, silently dropping the gain."""
    from cimsim.mapping.affine import affine_source

    torch.manual_seed(0)
    assert affine_source(_ScaledLinear(1.0)) is not None
    assert affine_source(_ScaledLinear(1.01)) is None


def test_affine_source_linear_takes_the_modules_mode():
    """The ``nn.Linear`` found for a module is in the module's mode (the twin and the mapped
    layer take their mode from it): a fresh ``nn.Linear`` trains by default, so a module in
    eval mode would have given a Linear in training mode."""
    from cimsim.mapping.affine import affine_source

    torch.manual_seed(0)
    module = _ScaledLinear(1.0)
    assert affine_source(module.eval()).linear.training is False
    assert affine_source(module.train()).linear.training is True


def test_a_mapped_attentions_in_proj_weight_reports_its_metadata():
    """Weights named ``*_weight`` (``in_proj_weight``) are weights too: a deployed attention's
    ``in_proj_weight`` answers its dtype and shape as the source's (library code casts its
    inputs to it) and refuses computation, as ``.weight`` does; names ending in ``_weight``
    left out, reading its dtype failed."""
    from cimsim.errors import WeightReadError

    torch.manual_seed(0)
    model = nn.Sequential(nn.MultiheadAttention(8, 2)).eval()

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.att = model[0]

        def forward(self, x):
            return self.att(x, x, x, need_weights=False)[0]

    sim = cimsim.deploy(Wrap().eval(), lossless_chip(), torch.randn(5, 2, 8), progress=False)
    w = sim.sim_layers["att"].in_proj_weight
    assert (w.dtype, tuple(w.shape)) == (torch.float32, (24, 8))
    with pytest.raises(WeightReadError):
        w.sum()
