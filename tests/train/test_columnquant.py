"""ColumnQuant (issue 11): the 9 settings of the grid train and deploy with their learned
partial-sum steps in the chip's ADC ranges; LsqPsum's centre per batch and frozen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimsim.config import load_chip
from cimsim.errors import ConfigError
from cimsim.mapping.matrix import calibrate_adcs
from cimsim.train.columnquant import (
    PsumCentre,
    _set_weight_scale,
    columnquant_chip,
    columnquant_optimizer,
    deploy_columnquant,
    freeze_psum,
    prepare_columnquant,
    psum_mse,
)

GRID = [(w, p) for w in ("layer", "array", "column") for p in ("layer", "array", "column")]


class Small(nn.Module):
    """A conv whose im2col rows (8·9 = 72) span two 40-row arrays, and a Linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean(dim=(2, 3)))


def _setup(seed=0):
    torch.manual_seed(seed)
    net = Small().double()
    x = torch.rand(40, 8, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    chip = columnquant_chip(psum_bits=3, array_size=40)
    return net, x, y, chip


@pytest.mark.parametrize("weight_scale,psum_scale", GRID)
def test_grid_settings_train_and_deploy_with_learned_steps(weight_scale, psum_scale):
    net, x, y, chip = _setup()
    prep = prepare_columnquant(net, chip, x[:20], weight_scale=weight_scale,
                               psum_scale=psum_scale, centre="frozen", grad="paper")
    conv = dict(prep.twins())["conv"]
    t = conv.n_parts
    assert t == 2  # kernel-preserving tiles: 4 channels (36 rows) per 40-row array
    shape = {"layer": (1, 1), "array": (t, 1), "column": (t, 6)}[weight_scale]
    assert tuple(conv.weight_scale.shape) == shape
    units = {"layer": 1, "array": conv.n_groups, "column": conv.n_groups * conv.n_outputs
             * conv.n_kinds}[psum_scale]
    assert conv.adc_step.numel() == units and conv.adc_step.requires_grad
    opt = columnquant_optimizer(prep, lr=0.05)
    prep.train()
    steps0 = conv.adc_step.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(prep(x), y).backward()
        opt.step()
    assert not torch.equal(conv.adc_step.detach(), steps0)  # the partial-sum steps learn
    prep.eval()
    sim = deploy_columnquant(prep, x[:20], 0)
    lo, delta = (v.detach().numpy() for v in conv.adc_tables())
    parts = sim.sim_layers["conv"].cores[0].view.parts
    gp = conv._group_part.numpy()
    for i, (_, _, layer) in enumerate(parts):
        np.testing.assert_allclose(layer.adc.delta, delta[gp == i], rtol=1e-6)
        np.testing.assert_allclose(layer.adc.lo, lo[gp == i], rtol=1e-6, atol=1e-9)
    agree = (sim(x).argmax(1) == prep(x).argmax(1)).double().mean()
    assert agree >= 0.95


def test_frozen_centre_is_fixed_in_eval_and_batch_centre_is_not():
    net, x, _, chip = _setup(1)
    prep = prepare_columnquant(net, chip, x[:20], centre="batch")
    prep.eval()
    # per batch: one input's output depends on the batch it comes with
    alone = prep(x[:1])
    with_others = prep(x[:20])[:1]
    assert not torch.allclose(alone, with_others)
    freeze_psum(prep, x[:20])
    hooks = [t.adc_hook for _, t in prep.twins()]
    assert all(isinstance(h, PsumCentre) and h.mode == "frozen" for h in hooks)
    saved = [(h.mu.clone(), h.sd.clone(), h.centre.clone()) for h in hooks]
    y_a = prep(x[:1])
    y_b = prep(x[:20])[:1]
    prep(x[20:] * 3.0)  # other data in eval leaves them alone
    for h, (mu, sd, c) in zip(hooks, saved, strict=True):
        assert torch.equal(h.mu, mu) and torch.equal(h.sd, sd) and torch.equal(h.centre, c)
    assert torch.allclose(y_a, y_b)  # no batch dependence once frozen
    # the grid start is the centre: codes c - 2^(b-1) .. c + 2^(b-1) - 1
    conv = dict(prep.twins())["conv"]
    lo, delta = conv.adc_tables()
    np.testing.assert_allclose((lo / delta).detach().numpy(),
                               (hooks[0].centre[:, 0, :] - 4).numpy(), atol=1e-9)


def test_the_pre_clip_passes_no_gradient_beyond_it():
    """LsqPsum clamps the partial sum to mu ± n·sigma before rounding, so autograd gives a
    clipped one no gradient. The hook clipped in place outside autograd, and 96 % of the
    clipped conversions (n = 0.5, 8-b partial sums) still passed the straight-through 1."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(96, 8, bias=False)).double()
    cal = torch.rand(128, 96, dtype=torch.float64)
    prep = prepare_columnquant(lin, columnquant_chip(psum_bits=8, psum_scale="column"), cal,
                               centre="batch", num_sigma=0.5, init="engine", grad="lsq").train()
    (_, twin), = list(prep.twins())
    twin.fused = False
    hook, convert, seen = twin.adc_hook, twin._convert, {}

    def spy(t, a, ratio):
        before = a.clone()
        out = hook(t, a, ratio)
        seen["clipped"] = a != before
        return out

    def spy_convert(*args):
        out = convert(*args)
        seen["inside"] = out[1].clone()
        return out

    twin.adc_hook, twin._convert = spy, spy_convert
    prep(cal[:64]).sum().backward()
    clipped, inside = seen["clipped"], seen["inside"]
    assert 0.3 < float(clipped.double().mean()) < 0.9
    assert not inside[clipped].any()        # clipped: no straight-through gradient
    assert inside[~clipped].double().mean() > 0.9


def test_psum_mse_and_options():
    net, x, _, chip = _setup(2)
    fine = prepare_columnquant(net, columnquant_chip(psum_bits=8, array_size=40), x[:20])
    coarse = prepare_columnquant(net, columnquant_chip(psum_bits=2, array_size=40), x[:20])
    assert psum_mse(fine, x)["mean"] < psum_mse(coarse, x)["mean"]
    with pytest.raises(ConfigError, match="weight_scale"):
        prepare_columnquant(net, chip, x[:20], weight_scale="row")
    with pytest.raises(ConfigError, match="centre"):
        prepare_columnquant(net, chip, x[:20], centre="mean")
    with pytest.raises(ConfigError, match="range_policy"):
        prepare_columnquant(net, chip.replace(adc=chip.adc.replace(range_policy="full_scale")),
                            x[:20])


@pytest.mark.parametrize("weight_scale", ["layer", "column"])
def test_a_pruned_channel_or_group_takes_the_engine_scale(weight_scale):
    """The paper init (mean |w| per set) fell back to 1.0 for an all-zero set, so a pruned
    channel's cells' variation was dequantized at 1.0: on rram-22nm (thermal noise off, column
    scales) the pruned channel's conv output erred up to 12.1 where the others err 0.2-0.6;
    it takes the engine's scale of the set now (its tensor's, or for a group pruned whole its
    layer's, as deploy quantizes it), erring 0.20."""
    net, x, _, _ = _setup()
    if weight_scale == "layer":  # a grouped conv, group 1 pruned whole
        torch.manual_seed(0)
        net.conv = nn.Conv2d(8, 6, 3, padding=1, bias=False, groups=2).double()
    with torch.no_grad():
        net.conv.weight[2 if weight_scale == "column" else slice(3, 6)].zero_()
    rram = load_chip("rram-22nm")
    rram = rram.replace(noise=rram.noise.replace(thermal_sigma_lsb=0.0))
    chip = columnquant_chip(psum_bits=8, array_size=40, base=rram)
    prep = prepare_columnquant(net, chip, x[:20], weight_scale=weight_scale, init="paper")
    prep.eval()
    conv = prep.twin_layers["conv"]
    zero = conv.matrices()[-1].weight_scale.detach()[:, 2 if weight_scale == "column" else 0]
    q = 2 ** (chip.weight_bits - 1) - 1
    np.testing.assert_allclose(zero.numpy(), float(net.conv.weight.detach().abs().max()) / q)
    with torch.no_grad():
        err = (conv(x) - net.conv(x)).abs().amax(dim=(0, 2, 3))
    pruned = [2] if weight_scale == "column" else [3, 4, 5]
    others = [c for c in range(6) if c not in pruned]
    assert err[pruned].max() <= err[others].max(), err


@pytest.mark.parametrize("mode", ["float", "simulated"])
def test_the_paper_init_calibrates_the_adcs_for_its_own_scales(mode):
    """Was: under ``init="paper"`` the ADC ranges stayed deploy's, calibrated for its max-based
    weight scales; the mean-|w| scales give other integer weights (4x coarser on this model).
    The ranges are calibrated again on the twin's own partial sums, on the inputs
    ``adc.calibration_mode`` names: each layer's tables are exactly ``calibrate_adcs`` of its
    engine view on its inputs in the exact forward (``float``) or in the forward whose layers
    before it convert on their new ranges (``simulated``)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(72, 12), nn.ReLU(), nn.Linear(12, 3)).double()
    x = torch.rand(40, 72, dtype=torch.float64)
    chip = columnquant_chip(psum_bits=3, array_size=40)
    chip = chip.replace(adc=chip.adc.replace(calibration_mode=mode))
    prep = prepare_columnquant(model, chip, x, init="paper").eval()
    (_, first), (_, second) = prep.twins()
    with torch.no_grad():
        first.lossless = mode == "float"
        h = torch.relu(first(x))
        first.lossless = False
    for twin, inputs in ((first, x), (second, h)):
        view = calibrate_adcs(twin.to_engine(), inputs.numpy())
        tables = [layer.adc for _, _, layer in view.parts]
        np.testing.assert_allclose(twin._adc_lo0.numpy(), np.concatenate([t.lo for t in tables]))
        np.testing.assert_allclose(twin._adc_delta0.numpy(),
                                   np.concatenate([t.delta for t in tables]))
        np.testing.assert_allclose(twin.adc_step.detach().numpy(), twin._adc_step0.numpy())

    net, x, _, chip = _setup(1)
    ref = net(x).detach()
    stale = prepare_columnquant(net, chip, x, init="engine").eval()  # deploy's ranges ...
    for _, t in stale.twins():
        _set_weight_scale(t, "column", "paper", "paper")  # ... under the paper's scales
    fresh = prepare_columnquant(net, chip, x, init="paper").eval()
    with torch.no_grad():
        err = [float((m(x) - ref).pow(2).mean()) for m in (fresh, stale)]
    assert err[0] < 0.75 * err[1], err  # 2.1x lower on this model


def test_weight_scales_start_from_the_engines_by_granularity():
    """``init='engine'``: an array's (or the layer's) scale starts at the largest engine column
    scale it replaces, so no weight clips more than on the engine; ``grad='lsq'`` scales each
    set's gradient by 1 / sqrt(n · Q_p), n the weights sharing the scale (docs/columnquant.md).
    Guards the start (the smallest column scale clipped weights from the first step) and the
    gradient scale (without Q_p it was sqrt(Q_p) too large)."""
    net, x, _, chip = _setup()
    scales = {}
    for granularity in ("column", "array", "layer"):
        prep = prepare_columnquant(net, chip, x[:20], weight_scale=granularity, init="engine",
                                   grad="lsq")
        conv = dict(prep.twins())["conv"]
        scales[granularity] = conv.weight_scale.detach()
        if granularity == "layer":  # one scale for all 6 x 8 x 3 x 3 = 432 weights
            assert conv._w_grad.item() == pytest.approx(1 / np.sqrt(432 * conv.w_qmax),
                                                        rel=1e-12)
            assert conv.w_qmax > 1
    col = scales["column"]
    assert col.shape == (2, 6)
    torch.testing.assert_close(scales["array"], col.amax(dim=1, keepdim=True), rtol=0, atol=0)
    torch.testing.assert_close(scales["layer"], col.amax().reshape(1, 1), rtol=0, atol=0)


def test_a_layer_wide_step_covers_the_union_of_the_ranges_by_hand():
    """``psum_scale='layer'`` joins the row tiles' calibrated ranges into one grid: from lo =
    min lo_i to hi = max(lo_i + top·Δ_i), Δ = (hi - lo) / top. By hand at 3 bits (top 7):
    ranges [0, 7] and [-2, 1.5] join to [-2, 7], Δ = 9/7. Guards the grid against falling
    short of the union's top (a step of (hi - lo) / 8)."""
    from cimsim.train.columnquant import _share_layer_step

    net, x, _, chip = _setup()
    conv = dict(prepare_columnquant(net, chip, x[:20], psum_scale="array").twins())["conv"]
    assert conv.top_code == 7.0
    with torch.no_grad():
        lo0, d0 = conv._adc_lo0, conv._adc_delta0
        first = conv._group_part.reshape(-1, 1).expand_as(lo0) == 0
        lo0.copy_(torch.where(first, 0.0, -2.0))
        d0.copy_(torch.where(first, 1.0, 0.5))
    _share_layer_step(conv)
    assert torch.all(conv._adc_lo0 == -2.0)
    torch.testing.assert_close(conv._adc_delta0, torch.full_like(conv._adc_delta0, 9 / 7))
    assert conv.adc_step.shape == (1,) and conv.adc_step.item() == pytest.approx(9 / 7)
    np.testing.assert_allclose(conv._init64["delta"], 9 / 7, rtol=1e-15)


def test_a_frozen_centre_not_yet_measured_counts_as_per_batch():
    """Pins ``PsumCentre.per_batch``: ``frozen`` mode before :func:`freeze_psum` measured a
    centre computes every batch's statistics (``__call__``'s else branch), so it is per batch
    as ``batch`` mode is (deploy refuses it, ``deploy_columnquant`` freezes it first); only a
    frozen, measured centre is not."""
    from cimsim.train.columnquant import PsumCentre

    assert PsumCentre("column", 6.0, "batch", 4).per_batch
    hook = PsumCentre("column", 6.0, "frozen", 4)
    assert hook.per_batch  # nothing measured yet
    hook.centre = torch.zeros(1, 1, 1)
    assert not hook.per_batch
