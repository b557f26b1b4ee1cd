"""``cimsim.deploy``: exactness against an integer re-implementation, error bounds, model
integrity, exclusion, capacity, tiling, the deployed forward, calibration and the report
(issue 3; DESIGN.md 1, 2.1, 2.4, 2.7, 4)."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import cimsim
from cimsim.errors import CapacityError, ConfigError, MappingError
from cimsim.mapping.layers import SimConv, SimLinear, SimMultiheadAttention

from .conftest import (
    act_bounds,
    assert_bitwise,
    lossless_chip,
    ref_weight_quant,
    reference_model,
)

GRANULARITIES = ("tensor", "channel", "column")


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(80, 48)  # K = 80: three row tiles of 37
        self.fc2 = nn.Linear(48, 40)
        self.norm = nn.LayerNorm(40)
        self.head = nn.Linear(40, 7, bias=False)

    def forward(self, x):
        h = F.relu(self.fc1(x))  # unsigned into fc2
        h = torch.tanh(self.fc2(h))
        return self.head(self.norm(h))  # signed into head


class CNN(nn.Module):
    """Stride, int/tuple/'same'/'valid' padding, every padding mode, dilation, groups,
    depthwise, no-bias, BN, a residual add and pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, (2, 3), padding="same", dilation=(1, 2), groups=2,
                            padding_mode="reflect")  # asymmetric 'same' in H
        self.c3 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8, padding_mode="circular",
                            bias=False)  # depthwise
        self.c4 = nn.Conv2d(8, 6, 3, stride=(1, 2), padding="valid")  # K = 72: two row tiles
        self.c5 = nn.Conv2d(6, 5, 1, padding=(1, 0), padding_mode="replicate")
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(20, 4)
        with torch.no_grad():  # non-trivial BN statistics (eval mode uses them)
            self.bn1.running_mean.uniform_(-0.5, 0.5)
            self.bn1.running_var.uniform_(0.5, 2.0)
            self.bn1.weight.uniform_(0.5, 1.5)
            self.bn1.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = F.relu(self.bn1(self.c1(x)))
        h2 = self.c2(h)  # signed output
        h = F.relu(self.c3(h2) + h2)
        h = self.c5(self.c4(h))
        return self.fc(torch.flatten(self.pool(h), 1))


class CNN1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 6, 5, stride=2, padding=2)
        self.c2 = nn.Conv1d(6, 6, 3, padding="same", dilation=2, groups=3,
                            padding_mode="circular")
        self.c3 = nn.Conv1d(6, 6, 3, groups=6, padding=1, padding_mode="reflect")  # depthwise
        self.c4 = nn.Conv1d(6, 8, 7, padding="valid", bias=False)  # K = 42: two row tiles
        self.c5 = nn.Conv1d(8, 4, 2, padding=1, padding_mode="replicate")
        self.fc = nn.Linear(20, 3)

    def forward(self, x):
        h = F.relu(self.c1(x))
        h = self.c3(self.c2(h))  # signed into c3
        h = self.c5(F.relu(self.c4(h)))
        return self.fc(torch.flatten(h, 1))


class TinyTransformer(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Linear(6, 16)
        self.enc = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32,
                                              dropout=0.0, batch_first=batch_first)
        self.head = nn.Linear(16, 3)

    def forward(self, x, key_padding_mask=None):
        return self.head(self.enc(self.embed(x), src_key_padding_mask=key_padding_mask))


def _transformer_data(batch_first: bool, b: int = 3, length: int = 5) -> torch.Tensor:
    x = torch.randn(b, length, 6)
    return x if batch_first else x.transpose(0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
# 1. Exactness against the integer re-implementation
# ---------------------------------------------------------------------------------------------
def _check_exact(model, x_cal, x_eval, chip, **kw):
    sim = cimsim.deploy(model, chip, x_cal, seed=3)
    ref = reference_model(model, sim)
    with torch.no_grad():
        want = ref(x_eval, **kw)
    got = sim(x_eval, **kw)
    assert_bitwise(got, want)
    return sim


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_mlp_exact(granularity):
    model = MLP().eval()
    x_cal = torch.randn(24, 80)
    chip = lossless_chip(granularity)
    sim = _check_exact(model, x_cal, torch.randn(6, 80) * 1.5, chip)  # some inputs clip
    tiles = sim.sim_layers["fc1"].cores[0].row_tiles
    assert tiles == [(0, 37), (37, 74), (74, 80)]
    n_scales = sim.sim_layers["fc1"].cores[0].s_w.shape[0]
    assert n_scales == (3 if granularity == "column" else 1)
    # the calibration-time signedness: fc2 sees ReLU outputs, head sees LayerNorm outputs
    assert not sim.sim_layers["fc2"].cores[0].signed
    assert sim.sim_layers["head"].cores[0].signed


@pytest.mark.parametrize("granularity", GRANULARITIES + ("column+kernel_preserving",))
def test_cnn_exact(granularity):
    model = CNN().eval()
    x_cal = torch.randn(4, 3, 12, 12)
    kp = granularity.endswith("kernel_preserving")
    chip = lossless_chip(granularity.split("+")[0], kernel_preserving_tiling=kp)
    sim = _check_exact(model, x_cal, torch.randn(2, 3, 12, 12), chip)
    assert [len(sim.sim_layers[n].cores) for n in ("c1", "c2", "c3", "c4")] == [1, 2, 8, 1]
    for name in ("c2", "c3"):  # one input tensor, one (per-tensor) activation quantizer
        cores = sim.sim_layers[name].cores
        assert len({(c.s_x, c.signed) for c in cores}) == 1, name
    tiles = sim.sim_layers["c4"].cores[0].row_tiles
    assert tiles == ([(0, 36), (36, 72)] if kp else [(0, 37), (37, 72)])


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_conv1d_exact(granularity):
    model = CNN1d().eval()
    x_cal = torch.randn(5, 4, 20)
    sim = _check_exact(model, x_cal, torch.randn(3, 4, 20), lossless_chip(granularity))
    assert len(sim.sim_layers["c4"].cores[0].row_tiles) == 2


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "seq_first"])
def test_transformer_exact(batch_first, granularity):
    # The reference does the attention products its own way (4-D matmul, q·kᵀ/√d, softmax),
    # not the simulator's bmm code; with torch 2.13 on CPU both orderings give bitwise-equal
    # float32 results for these shapes, so the whole model is compared exactly. (If a torch
    # version changes its GEMM blocking, a 1-ulp difference before the out_proj or linear1
    # quantizer could flip one rounding; then compare with a tolerance of one activation LSB.)
    model = TinyTransformer(batch_first).eval()
    chip = lossless_chip(granularity, n_rows=12, n_cols=23)  # K = 16 / 32: several row tiles
    sim = _check_exact(model, _transformer_data(batch_first, b=4),
                       _transformer_data(batch_first), chip)
    assert "enc.self_attn" in sim.sim_layers
    assert isinstance(sim.model.enc.self_attn, SimMultiheadAttention)
    assert {"enc.linear1", "enc.linear2", "embed", "head"} <= set(sim.sim_layers)
    cores = sim.sim_layers["enc.self_attn"].cores
    assert [c.name for c in cores] == [f"enc.self_attn.{t}_proj" for t in "qkv"] + [
        "enc.self_attn.out_proj"]
    assert all(c.events.get(("layer", "mac", 0)) > 0 for c in cores)  # all four ran on arrays
    assert any(r[1] == "attention products" for r in sim.digital)


def test_transformer_key_padding_mask_exact():
    model = TinyTransformer(batch_first=True).eval()
    chip = lossless_chip("channel", n_rows=12)
    x = _transformer_data(True)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 3:] = True
    mask[2, 1] = True
    _check_exact(model, _transformer_data(True, b=4), x, chip, key_padding_mask=mask)


@pytest.mark.parametrize("granularity", ["channel", "column"])
@pytest.mark.parametrize("make, shape", [(MLP, (5, 80)), (CNN, (2, 3, 12, 12))],
                         ids=["mlp", "cnn"])
def test_float64_model_exact(make, shape, granularity):
    """A float64 model keeps float64 outputs: no final cast hides a different order of the
    dequantization ops, so this pins the formula of layers.py term by term."""
    model = make().double().eval()
    x_cal = torch.randn(8, *shape[1:], dtype=torch.float64)
    _check_exact(model, x_cal, torch.randn(*shape, dtype=torch.float64),
                 lossless_chip(granularity))


class CrossAttention(nn.Module):
    """nn.MultiheadAttention called directly, with kdim/vdim != embed_dim (separate q/k/v
    projection weights) and a causal float mask."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(12, 3, kdim=5, vdim=7, batch_first=True)

    def forward(self, q, kv):
        mask = torch.triu(torch.full((q.shape[1], kv.shape[1]), float("-inf")), diagonal=1)
        return self.attn(q, kv[..., :5], kv, attn_mask=mask, need_weights=False)[0]


def test_cross_attention_separate_projections_exact():
    model = CrossAttention().eval()
    q, kv = torch.randn(3, 4, 12), torch.randn(3, 6, 7)
    sim = cimsim.deploy(model, lossless_chip("column", n_rows=6), (q, kv))
    ref = reference_model(model, sim)
    q2, kv2 = torch.randn(2, 4, 12), torch.randn(2, 6, 7)
    with torch.no_grad():
        want = ref(q2, kv2)
    assert_bitwise(sim(q2, kv2), want)
    assert [c.shape for c in sim.sim_layers["attn"].cores] == [(12, 12), (12, 5), (12, 7),
                                                               (12, 12)]


def test_root_module_and_default_arrays_exact():
    """A bare nn.Linear as the model (wrapped by deploy), on the full-size ideal chip."""
    lin = nn.Linear(30, 9)
    _check_exact(lin, torch.randn(8, 30), torch.randn(3, 30),
                 lossless_chip("channel", n_rows=None, n_cols=None))


def test_activation_scales_follow_max_calibration():
    """s_x = max|x| / q_max over the calibration data, the signedness from its sign
    (compared with hooks on the float model; float32 vs float64 layer maths: rtol 1e-5)."""
    model = MLP().eval()
    x_cal = torch.randn(24, 80)
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, n=n: seen.setdefault(n, []).append(a[0]))
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x_cal)
    for h in hooks:
        h.remove()
    sim = cimsim.deploy(model, lossless_chip(), x_cal)
    for name, xs in seen.items():
        x = torch.cat(xs).to(torch.float64)
        core = sim.sim_layers[name].cores[0]
        signed = bool(x.min() < 0)
        assert core.signed == signed
        want = float(x.abs().max()) / act_bounds(8, signed)[1]
        if name == "fc1":  # the model input itself: exact
            assert core.s_x == want
        else:
            assert core.s_x == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# 2. Float vs simulated-lossless: the quantization error bound
# ---------------------------------------------------------------------------------------------
# With x̂ = s_x·x_int, ŵ = s_w·w_int, |x̂ - x| <= s_x/2 (no clipping: the evaluation data is the
# calibration data, so |x| <= max|x| = q_max·s_x) and |ŵ - w| <= s_w/2 (w_int never clips:
# |w| <= max|w| = q·s_w). Per output n:
#   |ŷ_n - y_n| = |Σ_k x̂_k ŵ_nk - x_k w_nk| = |Σ_k x_k δw + w_nk δx + δx δw|
#              <= Σ_k |x_k|·s_w(k,n)/2 + |w_nk|·s_x/2 + s_x·s_w(k,n)/4
# where s_w(k, n) is the scale of the (row tile of k, n) pair. The bias adds no error. Slack for
# float rounding: float32 outputs (2^-23 relative) of sums of at most Σ|x||w|.
def _bound(x: torch.Tensor, w: torch.Tensor, core) -> torch.Tensor:
    x, w = x.to(torch.float64), w.to(torch.float64)
    s_x = core.s_x
    s_w = torch.from_numpy(core.s_w)  # (T, N)
    tiles = core.row_tiles if s_w.shape[0] > 1 else [(0, w.shape[1])]
    s_kn = torch.empty(w.shape[1], w.shape[0], dtype=torch.float64)  # (K, N)
    for t, (a, b) in enumerate(tiles):
        s_kn[a:b] = s_w[t]
    ax, aw = x.abs(), w.abs()
    bound = ax @ s_kn / 2 + (aw.sum(dim=1) * s_x / 2)[None, :] + s_kn.sum(dim=0) * s_x / 4
    slack = 4 * 2.0**-23 * (ax @ aw.T) + 1e-7
    return bound + slack


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_linear_float_error_within_bound(granularity, signed):
    lin = nn.Linear(90, 12)
    x = torch.randn(32, 90)
    if not signed:
        x = x.abs()
    chip = lossless_chip(granularity, n_rows=37, n_cols=64)
    sim = cimsim.deploy(lin, chip, x)
    core = sim.sim_layers["0"].cores[0]
    # independent scales: s_x = max|x| / q_max, s_w from the float weights
    assert core.signed == signed
    assert core.s_x == float(x.to(torch.float64).abs().max()) / act_bounds(8, signed)[1]
    _, s_w = ref_weight_quant(lin.weight, 8, granularity, core.row_tiles)
    assert np.array_equal(core.s_w, s_w.numpy())
    y_sim = sim(x).to(torch.float64)
    with torch.no_grad():
        y_float = lin(x).to(torch.float64)
    err = (y_sim - y_float).abs()
    bound = _bound(x, lin.weight.detach(), core)
    assert torch.all(err <= bound), float((err - bound).max())
    assert float(err.max()) > 0  # quantization is really there
    assert float((err / bound).max()) > 0.02  # and the bound is not vacuous


def test_conv_float_error_within_bound():
    conv = nn.Conv2d(6, 5, 3, padding=1, groups=1)
    x = torch.randn(4, 6, 7, 7)
    chip = lossless_chip("column", n_rows=20, n_cols=64)
    sim = cimsim.deploy(conv, chip, x)
    core = sim.sim_layers["0"].cores[0]
    assert len(core.row_tiles) == 3
    y_sim = sim(x).to(torch.float64)
    with torch.no_grad():
        y_float = conv(x).to(torch.float64)
    cols = F.unfold(F.pad(x, (1, 1, 1, 1)), 3).transpose(1, 2).reshape(-1, 54)
    bound = _bound(cols, conv.weight.detach().reshape(5, -1), core)
    err = (y_sim - y_float).permute(0, 2, 3, 1).reshape(-1, 5).abs()
    assert torch.all(err <= bound), float((err - bound).max())


def test_bound_shrinks_with_finer_granularity():
    lin = nn.Linear(90, 12)
    with torch.no_grad():
        lin.weight[:, :10] *= 8  # uneven columns and rows: finer scales help
        lin.weight[0] *= 4
    x = torch.randn(16, 90)
    bounds, errs = {}, {}
    for g in GRANULARITIES:
        sim = cimsim.deploy(lin, lossless_chip(g, n_rows=37, n_cols=64), x)
        core = sim.sim_layers["0"].cores[0]
        bounds[g] = _bound(x, lin.weight.detach(), core)
        with torch.no_grad():
            errs[g] = float(((sim(x) - lin(x)).abs()).mean())
    assert torch.all(bounds["channel"] <= bounds["tensor"])
    assert torch.all(bounds["column"] <= bounds["channel"])
    assert errs["column"] < errs["tensor"]


# ---------------------------------------------------------------------------------------------
# 3. The user's model is untouched; exclusion; unsupported layers
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [MLP, CNN, lambda: TinyTransformer(True)],
                         ids=["mlp", "cnn", "transformer"])
def test_original_model_untouched(make):
    model = make()
    model.train()
    state = copy.deepcopy(model.state_dict())
    types = {n: type(m) for n, m in model.named_modules()}
    x = (torch.randn(4, 80) if make is MLP else torch.randn(2, 3, 12, 12) if make is CNN
         else torch.randn(2, 5, 6))
    sim = cimsim.deploy(model, lossless_chip(), x)
    sim(x)
    after = model.state_dict()
    assert state.keys() == after.keys()
    for k in state:
        assert torch.equal(state[k], after[k]), k
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert model.training  # deploy evaluates a copy
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
        assert not isinstance(m, (SimLinear, SimConv, SimMultiheadAttention))
    assert sim.model is not model


class Named(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc_in = nn.Linear(10, 12)
        self.glob_a = nn.Linear(12, 12)
        self.glob_b = nn.Sequential(nn.Linear(12, 12), nn.ReLU())
        self.out = nn.Linear(12, 4)

    def forward(self, x):
        return self.out(self.glob_b(torch.relu(self.glob_a(torch.relu(self.fc_in(x))))))


def test_exclude_names_and_globs_stay_digital():
    model = Named().eval()
    x = torch.randn(8, 10)
    sim = cimsim.deploy(model, lossless_chip(), x, exclude=["fc_in", "glob*"])
    assert set(sim.sim_layers) == {"out"}
    excluded = {(n, t) for n, t, r in sim.digital if r == "excluded by the user"}
    # glob_b is a container: deploy descends into it, and "glob*" matches "glob_b.0"
    assert excluded == {("fc_in", "Linear"), ("glob_a", "Linear"), ("glob_b.0", "Linear")}
    assert type(sim.model.fc_in) is nn.Linear
    assert type(sim.model.glob_a) is nn.Linear
    assert type(sim.model.glob_b[0]) is nn.Linear
    # the excluded layers compute in float, the rest is exact
    ref = reference_model(model, sim)
    with torch.no_grad():
        want = ref(x)
    assert_bitwise(sim(x), want)
    # a plain string is one pattern
    sim2 = cimsim.deploy(model, lossless_chip(), x, exclude="out")
    assert "out" not in sim2.sim_layers and "fc_in" in sim2.sim_layers


def test_exclude_pattern_matching_no_layer_is_warned_with_the_names():
    model = Named().eval()
    x = torch.randn(8, 10)
    with pytest.warns(UserWarning, match=r"'fc_inn', 'glob_c\*' match no mappable layer "
                                         r"\(they are named like: fc_in, glob_a, glob_b.0, out\)"):
        sim = cimsim.deploy(model, lossless_chip(), x, exclude=["fc_inn", "glob_c*", "out"])
    assert set(sim.sim_layers) == {"fc_in", "glob_a", "glob_b.0"}  # nothing else changed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cimsim.deploy(model, lossless_chip(), x, exclude=["glob*"])  # every pattern matches


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.fc = nn.Linear(6, 4)
        self.bil = nn.Bilinear(4, 4, 2)

    def forward(self, tokens):
        h = self.fc(self.emb(tokens))  # (B, T, 4)
        return self.bil(h, h)


def test_unsupported_layers_listed_digital():
    model = Mixed().eval()
    tokens = torch.randint(0, 10, (4, 3))
    # one warning naming both: running them in float silently would mislead
    with pytest.warns(UserWarning, match=r"2 layer\(s\) .*emb \(Embedding\), bil \(Bilinear\)"):
        sim = cimsim.deploy(model, lossless_chip(), tokens)
    assert set(sim.sim_layers) == {"fc"}
    digital = {n: (t, r) for n, t, r in sim.digital}
    assert digital["emb"][0] == "Embedding" and "not supported" in digital["emb"][1]
    assert digital["bil"][0] == "Bilinear" and "not supported" in digital["bil"][1]
    assert type(sim.model.emb) is nn.Embedding and type(sim.model.bil) is nn.Bilinear
    ref = reference_model(model, sim)
    with torch.no_grad():
        want = ref(tokens)
    assert_bitwise(sim(tokens), want)
    rep = sim.report()
    assert set(rep.digital["layer"]) == {"emb", "bil"}


def test_exclude_attention_out_proj_pattern():
    model = TinyTransformer(batch_first=True).eval()
    sim = cimsim.deploy(model, lossless_chip(), _transformer_data(True),
                        exclude=["*.out_proj"])
    sim(_transformer_data(True))
    cores = {c.name: c for c in sim.sim_layers["enc.self_attn"].cores}
    assert cores["enc.self_attn.out_proj"].digital and not cores["enc.self_attn.q_proj"].digital
    assert cores["enc.self_attn.out_proj"].n_arrays == 0
    assert any(n == "enc.self_attn.out_proj" for n, _, _ in sim.digital)


# ---------------------------------------------------------------------------------------------
# 4. Capacity and time multiplexing
# ---------------------------------------------------------------------------------------------
def _capacity_model() -> nn.Module:
    # 256 columns hold 10 outputs x 4 slices x 2 (differential): 1 column tile per layer;
    # fc0: K = 40 -> 2 row tiles of 37; fc2: 1 -> 3 arrays in all
    return nn.Sequential(nn.Linear(40, 10), nn.ReLU(), nn.Linear(10, 5))


def test_capacity_error_says_needed_and_available():
    chip = lossless_chip(n_rows=37, n_cols=256, n_tiles=1, arrays_per_tile=2)
    with pytest.raises(CapacityError) as info:
        cimsim.deploy(_capacity_model(), chip, torch.randn(4, 40))
    msg = str(info.value)
    assert "needs 3 arrays" in msg and "has 2" in msg
    assert "allow_time_multiplexing" in msg
    # exactly enough arrays is fine
    fits = lossless_chip(n_rows=37, n_cols=256, n_tiles=1, arrays_per_tile=3)
    sim = cimsim.deploy(_capacity_model(), fits, torch.randn(4, 40))
    assert sim.arrays_needed == 3
    sim(torch.randn(2, 40))
    assert sim.events.get(("array", "reprogram", 0)) == 0
    assert sim.report().totals["time_multiplexed"] is False


def test_prepare_refuses_a_chip_too_small_before_any_training():
    """prepare counted no arrays: a model over the chip trained for hours and failed only at
    PreparedModel.deploy(). It raises the deploy's CapacityError now, and counts as deploy."""
    from cimsim.train import prepare

    chip = lossless_chip(n_rows=37, n_cols=256, n_tiles=1, arrays_per_tile=2)
    with pytest.raises(CapacityError, match="needs 3 arrays"):
        prepare(_capacity_model(), chip, torch.randn(4, 40))
    multiplexed = chip.replace(array=chip.array.replace(allow_time_multiplexing=True))
    prep = prepare(_capacity_model(), multiplexed, torch.randn(4, 40))
    assert prep.arrays_needed == 3 == prep.deploy().arrays_needed


def test_time_multiplexing_charges_reprogramming():
    chip = lossless_chip(n_rows=37, n_cols=256, n_tiles=1, arrays_per_tile=2,
                         allow_time_multiplexing=True)
    model = _capacity_model()
    sim = cimsim.deploy(model, chip, torch.randn(4, 40))
    assert sim.arrays_needed == 3
    x = torch.randn(3, 40)
    y = sim(x)
    assert sim.events.get(("array", "reprogram", 0)) > 0
    rep = sim.report()
    assert rep.totals["time_multiplexed"] is True
    assert rep.totals["n_arrays_used"] == 3 and rep.totals["n_arrays_available"] == 2
    # results are unaffected by time multiplexing on a lossless chip
    with torch.no_grad():
        want = reference_model(model, sim)(x)
    assert_bitwise(y, want)


def _multiplexed_sim():
    """The capacity model on a chip one array short, after forwards of 3 and 2 samples."""
    chip = lossless_chip(n_rows=37, n_cols=256, n_tiles=1, arrays_per_tile=2,
                         allow_time_multiplexing=True)
    sim = cimsim.deploy(_capacity_model(), chip, torch.randn(4, 40))
    sim(torch.randn(3, 40))
    sim(torch.randn(2, 40))
    return sim


def test_report_contains_reprogram_events():
    sim = _multiplexed_sim()
    assert sim.events.get(("array", "reprogram", 0)) == 2  # one array rewritten per forward
    rep = sim.report()
    comp = rep.components
    rows = comp[(comp["component"] == "array") & (comp["action"] == "reprogram")]
    assert len(rows) == 1
    assert float(rows["n_events_per_inference"].iloc[0]) == pytest.approx(2 / 5)


# ---------------------------------------------------------------------------------------------
# 5. Kernel-preserving tiling
# ---------------------------------------------------------------------------------------------
def test_kernel_preserving_row_tiles():
    conv = nn.Conv2d(5, 4, 3, padding=1)
    x = torch.randn(2, 5, 6, 6)
    kp = lossless_chip(n_rows=20, n_cols=64, kernel_preserving_tiling=True)
    sim = cimsim.deploy(conv, kp, x)
    core = sim.sim_layers["0"].cores[0]
    assert core.row_tiles == [(0, 18), (18, 36), (36, 45)]
    assert core.n_arrays == 3
    with torch.no_grad():
        want = reference_model(conv, sim)(x)
    assert_bitwise(sim(x), want)
    # without the option the rows are cut every n_rows
    plain = cimsim.deploy(conv, lossless_chip(n_rows=20, n_cols=64), x)
    assert plain.sim_layers["0"].cores[0].row_tiles == [(0, 20), (20, 40), (40, 45)]


def test_kernel_preserving_grouped_conv_tiles_per_group():
    conv = nn.Conv2d(6, 4, 3, groups=2)  # K = 27 per group
    kp = lossless_chip(n_rows=20, n_cols=64, kernel_preserving_tiling=True)
    sim = cimsim.deploy(conv, kp, torch.randn(2, 6, 5, 5))
    for core in sim.sim_layers["0"].cores:
        assert core.row_tiles == [(0, 18), (18, 27)]


def test_kernel_larger_than_rows():
    conv = nn.Conv2d(2, 3, 5)  # 25 rows per kernel
    kp = lossless_chip(n_rows=20, n_cols=64, kernel_preserving_tiling=True)
    with pytest.raises(MappingError, match="does not fit"):
        SimConv(conv, "big", kp, 0)
    # deploy keeps such a layer digital (documented: unmappable layers stay digital) ...
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(27, 4))
    sim = cimsim.deploy(model, kp, torch.randn(2, 2, 7, 7))
    assert "0" not in sim.sim_layers and "2" in sim.sim_layers
    ((name, kind, reason),) = sim.digital
    assert (name, kind) == ("0", "Conv2d") and "does not fit" in reason
    # ... a model with nothing left for the arrays is refused before any calibration, saying
    # what was kept digital (issue 9: it ended in a KeyError after the whole run) ...
    with pytest.raises(MappingError, match="no layer can be mapped.*0 \\(Conv2d: .*does not fit"):
        cimsim.deploy(nn.Sequential(conv), kp, torch.randn(2, 2, 7, 7))
    # ... and without the option it maps normally
    ok = cimsim.deploy(nn.Sequential(conv), lossless_chip(n_rows=20, n_cols=64),
                       torch.randn(2, 2, 7, 7))
    assert "0" in ok.sim_layers


# ---------------------------------------------------------------------------------------------
# 6. The deployed forward
# ---------------------------------------------------------------------------------------------
def _n_conversions(sim) -> float:
    return sum(v for k, v in sim.events.items() if k.component == "adc")


@pytest.mark.parametrize("twin", [False, True], ids=["deploy", "prepared"])
def test_an_unbatched_sample_is_one_inference(twin):
    """torch's convolutions and attention take one unbatched sample ((C, H, W), (S, E)); the
    count read its first dimension, 3 inferences for one RGB image (S for one sequence), and
    the per-inference report divided by it. Fewer dimensions than the calibration batches
    gave the argument is one sample now; a batch still counts its size."""
    from cimsim.train import prepare

    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(-3), nn.Linear(144, 2))
    x_cal = torch.randn(6, 3, 8, 8)
    sim = (prepare(conv, lossless_chip(), x_cal).deploy() if twin
           else cimsim.deploy(conv, lossless_chip(), x_cal))
    sim(x_cal[0])  # one image, unbatched
    assert sim.n_inferences == 1
    per_one = sim.report().layers["n_conversions_per_inference"].tolist()
    sim.reset()
    sim(x_cal[:4])
    assert sim.n_inferences == 4
    assert sim.report().layers["n_conversions_per_inference"].tolist() == per_one


def test_forward_no_grad_and_events_accumulate():
    model = MLP().eval()
    sim = cimsim.deploy(model, lossless_chip(), torch.randn(16, 80))
    assert isinstance(sim, nn.Module)
    assert sim.n_inferences == 0 and _n_conversions(sim) == 0  # calibration is not counted
    x = torch.randn(5, 80, requires_grad=True)
    y1 = sim(x)
    assert not y1.requires_grad and y1.grad_fn is None and y1.device.type == "cpu"
    c1 = _n_conversions(sim)
    rep1 = sim.report()
    assert c1 > 0 and rep1.totals["n_inferences"] == 5
    y2 = sim(x)
    assert torch.equal(y1, y2)  # lossless chip: deterministic
    assert _n_conversions(sim) == 2 * c1
    rep2 = sim.report()
    assert rep2.totals["n_inferences"] == 10
    assert rep2.layers["n_conversions_per_inference"].tolist() == \
        rep1.layers["n_conversions_per_inference"].tolist()
    sim(x[:3])
    assert sim.n_inferences == 13
    # per-inference conversions are independent of the batch size
    assert sim.report().layers["n_conversions_per_inference"].tolist() == \
        rep1.layers["n_conversions_per_inference"].tolist()
    sim.reset()
    assert sim.n_inferences == 0 and _n_conversions(sim) == 0
    rep0 = sim.report()
    assert rep0.totals["n_inferences"] == 0
    assert (rep0.layers["n_conversions_per_inference"] == 0).all()
    assert torch.equal(sim(x), y1)  # reset forgets events, not the mapping


def test_forward_non_contiguous_input():
    model = MLP().eval()
    sim = cimsim.deploy(model, lossless_chip(), torch.randn(16, 80))
    base = torch.randn(80, 6)
    x = base.t()  # a transposed view
    assert not x.is_contiguous()
    assert torch.equal(sim(x), sim(x.contiguous()))


def test_noisy_chip_seeded():
    chip = cimsim.load_chip("rram-22nm")
    model = nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 6)).eval()
    x_cal, x = torch.randn(32, 40), torch.randn(4, 40)
    a = cimsim.deploy(model, chip, x_cal, seed=7)
    b = cimsim.deploy(model, chip, x_cal, seed=7)
    c = cimsim.deploy(model, chip, x_cal, seed=8)
    ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb)
    assert not torch.equal(ya, yc)
    # noise is fresh per call, and reproducible call by call
    ya2, yb2 = a(x), b(x)
    assert torch.equal(ya2, yb2)
    assert not torch.equal(ya, ya2)
    # noisy but close to the float model
    with torch.no_grad():
        yf = model(x)
    assert float((ya - yf).abs().max()) < 0.5 * float(yf.abs().max())


def test_noisy_draws_do_not_depend_on_other_layers():
    """Layers are seeded by name: excluding one leaves the others' variation and noise as is."""
    chip = cimsim.load_chip("rram-22nm")
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 4)).eval()
    x_cal, x = torch.randn(32, 20), torch.randn(4, 20)
    outs = []
    for exclude in ((), ("2",)):
        sim = cimsim.deploy(model, chip, x_cal, seed=11, exclude=exclude)
        seen = []
        sim.model[0].register_forward_hook(lambda m, a, out, seen=seen: seen.append(out))
        sim(x)
        outs.append(seen[0])
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("dim", [1, 2])
def test_unbatched_conv_input(dim):
    conv = nn.Conv1d(2, 3, 3, padding=1) if dim == 1 else nn.Conv2d(2, 3, 3, padding=1)
    shape = (2, 5) if dim == 1 else (2, 5, 5)
    sim = cimsim.deploy(nn.Sequential(conv), lossless_chip(), torch.randn(4, *shape))
    x = torch.randn(*shape)
    with torch.no_grad():
        assert conv(x).shape == conv(x[None])[0].shape  # torch accepts it
    assert torch.equal(sim(x), sim(x[None])[0])


@pytest.mark.parametrize("case", ["unbatched_linear", "seq_first_transformer"])
def test_n_inferences_counts_samples(case):
    if case == "unbatched_linear":
        model, x_cal, x, n = nn.Linear(5, 3), torch.randn(4, 5), torch.randn(5), 1
    else:
        model, x_cal = TinyTransformer(False).eval(), _transformer_data(False)
        x, n = _transformer_data(False, b=2, length=5), 2
    # a sequence-first model says which dimension holds the samples
    sim = cimsim.deploy(model, lossless_chip(), x_cal,
                        batch_dim=0 if case == "unbatched_linear" else 1)
    sim(x)
    assert sim.n_inferences == n


# ---------------------------------------------------------------------------------------------
# 7. Calibration
# ---------------------------------------------------------------------------------------------
def _scales(sim) -> dict[str, float]:
    return {c.name: c.s_x for layer in sim.sim_layers.values() for c in layer.cores}


def test_percentile_and_mse_scales_not_above_max():
    model = MLP().eval()
    x_cal = torch.randn(64, 80)
    x_cal[0, :5] = 12.0  # outliers: clipping pays off
    base = lossless_chip()
    s = {}
    for method in ("max", "percentile", "mse"):
        chip = base.replace(quant=base.quant.replace(act_calibration=method,
                                                     act_percentile=99.0))
        s[method] = _scales(cimsim.deploy(model, chip, x_cal))
    for method in ("percentile", "mse"):
        assert s[method].keys() == s["max"].keys()
        for name in s["max"]:
            assert 0 < s[method][name] <= s["max"][name], (method, name)
        assert s[method]["fc1"] < s["max"]["fc1"]


def test_signed_activation_range_is_symmetric_and_clips_to_it():
    """A signed b-bit input holds -(2^(b-1) - 1)..2^(b-1) - 1 (hardware-model.md): a range
    reaching down to -2^(b-1) (two's complement) would let -10 through as -8 at 4 bits."""
    from cimsim.mapping.quant import act_range, quantize_acts

    assert act_range(4, True) == (-(2**3 - 1), 2**3 - 1) == (-7, 7)
    assert act_range(4, False) == (0, 15)
    np.testing.assert_array_equal(quantize_acts(np.array([-10.0, -7.4, 7.6, 10.0]), 1.0, 4, True),
                                  [-7, -7, 7, 7])


def test_percentile_and_mse_scales_of_negative_inputs_by_hand():
    """A signed layer's percentile and MSE scales read |x|: the percentile of x itself (-1.9,
    so the max) or an MSE that quantized unsigned (every negative input to 0) ignore the
    negative half."""
    from cimsim.config import QuantConfig
    from cimsim.mapping.quant import act_scale

    x = -np.arange(1.0, 11.0)  # -1..-10: |x| = 1..10
    pct = QuantConfig(act_calibration="percentile", act_percentile=90.0)
    # the 90th percentile of 1..10, linear interpolation: 9 + 0.1 * (10 - 9) = 9.1
    assert act_scale(10.0, x, 8, True, pct) == pytest.approx(9.1 / 127, rel=1e-12)
    # -1..-7 at 4 bits (q = 7): clip 7, a step of 1, quantizes every value exactly (MSE 0);
    # every smaller clip of the search clips -7: the search picks 7 / 7 = 1
    mse = QuantConfig(act_calibration="mse")
    assert act_scale(7.0, -np.arange(1.0, 8.0), 4, True, mse) == 1.0
    assert act_scale(7.0, np.arange(1.0, 8.0), 4, True, mse) == 1.0


def test_dataloader_calibration_matches_tensor():
    model = MLP().eval()
    x_cal = torch.randn(40, 80)
    labels = torch.randint(0, 7, (40,))
    loader = DataLoader(TensorDataset(x_cal, labels), batch_size=16, shuffle=False)
    chip = lossless_chip()
    a = cimsim.deploy(model, chip, loader)
    b = cimsim.deploy(model, chip, x_cal, batch_size=7)
    c = cimsim.deploy(model, chip, x_cal.numpy())
    assert _scales(a) == _scales(b) == _scales(c)
    x = torch.randn(3, 80)
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), c(x))


@pytest.mark.parametrize("empty", ["tensor", "list", "loader"])
def test_empty_calibration_raises(empty):
    data = {"tensor": torch.empty(0, 80), "list": [],
            "loader": DataLoader(TensorDataset(torch.empty(0, 80)), batch_size=4)}[empty]
    with pytest.raises(MappingError, match="empty"):
        cimsim.deploy(MLP(), lossless_chip(), data)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(6, 6)
        self.never_called = nn.Linear(6, 6)

    def forward(self, x):
        return self.used(x)


def test_unreached_layer_raises_naming_it():
    with pytest.raises(MappingError, match="never_called"):
        cimsim.deploy(Branchy(), lossless_chip(), torch.randn(4, 6))
    # excluding it is the way out
    sim = cimsim.deploy(Branchy(), lossless_chip(), torch.randn(4, 6), exclude=["never_*"])
    assert set(sim.sim_layers) == {"used"}


def test_bad_arguments():
    with pytest.raises(MappingError):
        cimsim.deploy(lambda x: x, lossless_chip(), torch.randn(2, 3))
    with pytest.raises(ConfigError, match="chip = dict object is invalid"):
        cimsim.deploy(MLP(), {"name": "ideal"}, torch.randn(2, 80))
    with pytest.raises(MappingError):
        cimsim.deploy(MLP(), lossless_chip(), 3.0)


# ---------------------------------------------------------------------------------------------
# 8. Report
# ---------------------------------------------------------------------------------------------
def test_report_rows_and_files(tmp_path):
    model = Named().eval()
    chip = lossless_chip(n_rows=8, n_cols=23)
    sim = cimsim.deploy(model, chip, torch.randn(8, 10), exclude=["glob_a"])
    sim(torch.randn(4, 10))
    rep = sim.report()
    layers = rep.layers.set_index("layer")
    assert set(layers.index) == set(sim.sim_layers) == {"fc_in", "glob_b.0", "out"}
    for col in ("n_arrays", "cell_utilization_pct", "n_conversions_per_inference"):
        assert col in layers.columns
    for name, layer in sim.sim_layers.items():
        core = layer.cores[0]
        assert layers.loc[name, "n_arrays"] == core.n_arrays
        n, k = core.shape
        # cells used: K rows x N outputs x 4 slices (8 bits / 2 per cell) x 2 (differential)
        cells = k * n * 4 * 2
        assert core.n_cells == cells
        assert layers.loc[name, "cell_utilization_pct"] == pytest.approx(
            100 * cells / (core.n_arrays * 8 * 23))
        assert 0 < layers.loc[name, "cell_utilization_pct"] <= 100
        adc = sum(v for key, v in layer.events.items() if key.component == "adc")
        assert layers.loc[name, "n_conversions_per_inference"] == pytest.approx(adc / 4)
        assert layers.loc[name, "n_conversions_per_inference"] > 0
    assert rep.totals["n_inferences"] == 4
    assert rep.totals["n_arrays_used"] == int(layers["n_arrays"].sum())
    assert rep.digital.to_dict(orient="records") == [
        {"layer": "glob_a", "type": "Linear", "reason": "excluded by the user"}]
    paths = rep.save(tmp_path / "out")
    assert paths and all(p.exists() and p.stat().st_size > 0 for p in paths)
    names = {p.name for p in paths}
    assert {"layers.csv", "report.json"} <= names
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(data["layers"]) == 3 and data["totals"]["n_inferences"] == 4
    assert [d["layer"] for d in data["digital"]] == ["glob_a"]


def test_report_on_ideal_preset():
    """The lossless reference (24-bit ADC) must be reportable, cost figures included."""
    sim = cimsim.deploy(nn.Linear(8, 4), cimsim.load_chip("ideal"), torch.randn(4, 8))
    sim(torch.randn(2, 8))
    rep = sim.report()
    assert rep.totals["n_inferences"] == 2


# ---------------------------------------------------------------------------------------------
# 9. The digits model: simulated accuracy on the ideal chip == integer re-implementation
# ---------------------------------------------------------------------------------------------
class _Recorder(nn.Module):
    """Runs a model and keeps its outputs, so that one evaluation pass gives both."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.outputs: list[torch.Tensor] = []

    def forward(self, x):
        y = self.inner(x)
        self.outputs.append(y)
        return y


def test_digits_ideal_accuracy_equals_integer_model():
    from cimsim.data import load_digits_split
    from cimsim.models import evaluate, load_digits_cnn

    x_train, _, x_test, y_test = load_digits_split()
    model = load_digits_cnn()
    sim = cimsim.deploy(model, cimsim.load_chip("ideal"), x_train[:256], seed=0)
    ref = reference_model(model, sim)
    rec_sim, rec_ref = _Recorder(sim), _Recorder(ref)
    acc_sim = evaluate(rec_sim, x_test, y_test)  # the simulated evaluation, one pass
    acc_ref = evaluate(rec_ref, x_test, y_test)
    logits_sim, logits_ref = torch.cat(rec_sim.outputs), torch.cat(rec_ref.outputs)
    assert_bitwise(logits_sim, logits_ref)
    assert torch.equal(logits_sim.argmax(1), logits_ref.argmax(1))  # same predictions
    assert acc_sim == acc_ref
    acc_float = evaluate(model, x_test, y_test)
    assert acc_sim >= 0.95 and abs(acc_sim - acc_float) <= 0.02
    assert sim.n_inferences == len(y_test)


# ---------------------------------------------------------------------------------------------
# The work of a deployed model (issue 9): frozen values for cost and report
# ---------------------------------------------------------------------------------------------
def test_works_are_frozen_values_of_what_each_layer_did():
    import dataclasses

    from cimsim.events import Action, Component, event_key
    from cimsim.work import LayerWork, ModelWork

    sim = _multiplexed_sim()
    works = sim.works()
    assert [w.name for w in works] == ["0", "2"] and all(isinstance(w, LayerWork) for w in works)
    fc0, fc2 = works
    assert (fc0.kind, fc0.n_inputs, fc0.n_outputs, fc0.n_matrices) == ("linear", 40, 10, 1)
    assert (fc0.n_arrays, fc2.n_arrays) == (2, 1)  # K = 40: two row tiles of 37
    assert len(fc0.blocks) == 1 and fc0.blocks[0].n_vectors == 5
    assert fc0.n_cells == sum(b.layer.n_inputs * b.layer.n_phys_cols for b in fc0.blocks)
    assert fc0.events == sim.sim_layers["0"].events
    dq = event_key(Component.DIGITAL, Action.DEQUANT_MULTIPLY)
    assert fc0.events[dq] == 5 * 10 and fc2.events[dq] == 5 * 5  # one per output, one block
    with pytest.raises(dataclasses.FrozenInstanceError):
        fc0.name = "x"  # type: ignore[misc]
    work = sim.work()
    assert isinstance(work, ModelWork) and work.layers == tuple(works)
    assert (work.n_inferences, work.n_arrays_needed, work.chip) == (5, 3, sim.chip)
    assert dict(work.other_events + sum(w.events for w in works)) == dict(sim.events)
    assert work.other_events[event_key(Component.ARRAY, Action.REPROGRAM)] == 2
    # a value: later forwards and reset leave it as it was
    sim(torch.randn(1, 40))
    sim.reset()
    assert fc0.blocks[0].n_vectors == 5 and work.n_inferences == 5
    after = sim.work()
    assert after.n_inferences == 0 and len(after.other_events) == 0
    assert all(len(w.events) == 0 and w.blocks[0].n_vectors == 0 for w in after.layers)


def test_one_bit_signed_inputs_are_refused_naming_the_field():
    """input_bits = 1 gave a ZeroDivisionError for a layer with signed inputs."""
    chip = lossless_chip().replace(input_bits=1)
    with pytest.raises(ConfigError, match="input_bits = 1 cannot hold signed"):
        cimsim.deploy(nn.Sequential(nn.Linear(4, 3)), chip, torch.randn(8, 4))


def test_wrong_input_shapes_are_refused_as_torch_refuses_them_issue16():
    """A 3-channel input to a 1-channel conv returned sim(x[:, :1]) instead of an error."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    sim = cimsim.deploy(model, lossless_chip(), torch.rand(8, 1, 8, 8))
    for bad in (torch.rand(4, 3, 8, 8), torch.rand(8, 8)):
        with pytest.raises(RuntimeError) as want:
            model(bad)
        with pytest.raises(RuntimeError, match="weight of size \\[4, 1, 3, 3\\]") as got:
            sim(bad)
        assert type(got.value) is type(want.value)
    lin = cimsim.deploy(nn.Sequential(nn.Linear(6, 3)), lossless_chip(), torch.randn(8, 6))
    for bad in (torch.randn(4, 3), torch.randn(2, 12)):  # 12 = 2 x 6 once reshaped
        with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
            lin(bad)
    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    sa = cimsim.deploy(SelfAttention().eval(), lossless_chip(), torch.randn(2, 5, 8))
    with pytest.raises(AssertionError, match="embedding dimension of 8, but got 4"):
        sa(torch.randn(2, 5, 4))


def test_a_model_without_any_weight_layer_says_so():
    with pytest.raises(MappingError, match="the model has no Linear, Conv, ConvTranspose, "
                                           r"RNN/LSTM/GRU \(layer or cell\) or Multihead"):
        cimsim.deploy(nn.Sequential(nn.Flatten(), nn.ReLU()), lossless_chip(), torch.randn(4, 3))


def test_a_root_attention_module_takes_its_three_arguments():
    """A mappable root was wrapped in nn.Sequential, which refuses (query, key, value)."""
    attn = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    sim = cimsim.deploy(attn, lossless_chip(), (x, x, x))
    out, weights = sim(x, x, x)
    want, want_w = attn(x, x, x)
    assert out.shape == want.shape and weights.shape == want_w.shape
    assert float((out - want).norm() / want.norm()) < 0.05
    assert list(sim.sim_layers) == ["0"]


def test_attention_output_projection_is_a_later_latency_stage():
    """The output projection reads the attention of the whole sequence: the layer takes the
    slowest of q, k, v plus the output projection (not the slowest of all four)."""
    from cimsim.cost import estimate

    model = CrossAttention().eval()
    q, kv = torch.randn(3, 4, 12), torch.randn(3, 6, 7)
    sim = cimsim.deploy(model, lossless_chip("column", n_rows=6), (q, kv))
    sim(q, kv)
    rep = estimate(sim.work())
    rows = [b for b in rep.blocks if b.get("layer") == "attn"]
    stage = {b["name"].split("[")[0]: b["stage"] for b in rows}  # (row-tile parts: [a:b])
    assert stage == {"attn.q_proj": 0, "attn.k_proj": 0, "attn.v_proj": 0,
                     "attn.out_proj": 1}
    first = max(b["latency_ns"] for b in rows if b["stage"] == 0)
    out = max(b["latency_ns"] for b in rows if b["stage"] == 1)
    layer = next(r for r in rep.layers if r["layer"] == "attn")
    assert layer["latency_ns_per_inference"] == pytest.approx(first + out)
    assert out > 0 and first > 0


def test_a_deployed_model_takes_numpy_inputs_as_calibration_does():
    # sim(ndarray) failed inside the model's torch code (AttributeError); now as a tensor
    torch.manual_seed(0)
    model, chip = MLP(), lossless_chip()
    x = torch.randn(8, 80)
    sim = cimsim.deploy(model, chip, x.numpy(), seed=0)
    a = sim(x.numpy())
    sim.reset()
    assert isinstance(a, torch.Tensor) and torch.equal(a, sim(x))
    assert sim.n_inferences == 8


@pytest.mark.parametrize("how", ["deploy", "prepare"])
def test_non_finite_weights_are_refused_naming_the_parameters(how):
    """A NaN in an LSTM's recurrent weight was reported as NaN *calibration data* (it reaches
    the next step's state first); a NaN weight of a Linear failed with int64's minimum as an
    out-of-range weight code. Both are named as weights now, before the calibration."""
    import cimsim.train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.LSTM(8, 4))
    with torch.no_grad():
        model[2].weight_hh_l0[1, 2] = float("nan")
        model[0].bias[0] = float("-inf")
    run = cimsim.deploy if how == "deploy" else cimsim.train.prepare
    with pytest.raises(MappingError, match=rf"^{how}: parameters of mapped layers hold NaN or "
                       r"infinite values: 0\.bias \(0 NaN, 1 infinite\), 2\.weight_hh_l0 "
                       r"\(1 NaN, 0 infinite\); allowed: finite values"):
        run(model, "rram-22nm", calibration=torch.rand(8, 16))
    with torch.no_grad():  # an excluded layer stays digital: its weights are its own affair
        model[2].weight_hh_l0[1, 2] = 0.0
    sim = run(model, "ideal", calibration=torch.rand(8, 16), exclude=["0"])
    assert sim is not None


def test_engine_view_names_a_non_finite_weight():
    from cimsim.mapping.matrix import engine_view

    w = np.ones((4, 8))
    w[1, 1] = np.nan
    with pytest.raises(MappingError, match=r"^fc: its weights hold 1 NaN and 0 infinite values "
                       r"\(of 32\); allowed: finite values"):
        engine_view(w, cimsim.load_chip("ideal"), np.random.default_rng(0).random((4, 8)),
                    name="fc")


def test_a_deployed_or_prepared_model_passed_again_is_named():
    """``deploy``/``prepare`` take the float model: a SimModel, its simulated layers or a
    prepared twin (whole or inside another module) held no layer they map and were refused as
    a model without Linear layers, or told to wrap the twin's scales in nn.Linear; the error
    says what was passed and what to pass."""
    from cimsim.train import prepare

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    x = torch.randn(16, 6)
    sim = cimsim.deploy(model, "ideal", x, seed=0)
    prep = prepare(model, "ideal", calibration=x, seed=0)
    for entry in (cimsim.deploy, prepare):
        name = entry.__name__
        with pytest.raises(MappingError, match=rf"^{name}: the model is already deployed \(a "
                           r"simulated model on 'ideal'\), not a float model: pass"):
            entry(sim, "rram-22nm", x)
        with pytest.raises(MappingError, match=rf"^{name}: the model is already deployed "
                           r"\(at '0'\)"):
            entry(sim.model, "rram-22nm", x)
        with pytest.raises(MappingError, match=rf"^{name}: the model is a prepared twin .*"
                           r"prep.deploy\(seed=..., chip=...\) .* prep.float_model\(\)"):
            entry(prep, "rram-22nm", x)
        with pytest.raises(MappingError, match=r"prepared twin \(at '0'\)"):
            entry(nn.Sequential(prep.model[0]), "rram-22nm", x)
    # what the errors advise works
    cimsim.deploy(prep.float_model(), "rram-22nm", x, seed=0)
    prep.deploy(seed=0)


class _KeywordCalls(nn.Module):
    """Every mapped module kind called as ``layer(input=h)``, as torch's signatures allow."""

    def __init__(self):
        super().__init__()
        self.conv, self.c1 = nn.Conv2d(3, 4, 3), nn.Conv1d(4, 4, 1)
        self.c3, self.tr, self.fc = nn.Conv3d(1, 2, 1), nn.ConvTranspose2d(4, 4, 2), nn.Linear(4, 2)

    def forward(self, x):
        h = self.tr(input=self.conv(input=x))
        h = self.c1(input=h.flatten(2)).mean(2)
        h = h + self.c3(input=x[:, :1, None]).mean((1, 2, 3, 4))[:, None]
        return self.fc(input=h)


def test_layers_called_with_the_input_keyword_deploy_and_prepare():
    """``self.fc(input=h)`` is valid torch; the simulated layers and the twin's named the
    argument x, and deploy failed with a bare TypeError."""
    from cimsim.train import prepare
    torch.manual_seed(0)
    model, x = _KeywordCalls().eval(), torch.randn(4, 3, 8, 8)
    sim = cimsim.deploy(model, "ideal", calibration=x, seed=0)
    assert set(sim.sim_layers) == {"conv", "c1", "c3", "tr", "fc"}
    torch.testing.assert_close(sim(x), model(x), atol=5e-3, rtol=0)
    torch.testing.assert_close(prepare(model, "ideal", x, seed=0).eval()(x), sim(x))


class _PlainContainers(nn.Module):
    """Layers in a plain list and a plain dict: torch registers neither them nor their
    weights, and the model runs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.heads = [nn.Linear(8, 4)]
        self.extra = {"out": nn.Linear(4, 3)}

    def forward(self, x):
        return self.extra["out"](self.heads[0](torch.relu(self.fc(x))))


@pytest.mark.parametrize("entry", ["deploy", "prepare"])
def test_layers_in_plain_containers_are_listed_digital_with_a_warning(entry):
    """They ran in float, listed nowhere and unwarned, their results passing for simulated
    ones; now they are listed digital, named by their path, with the fix in the warning."""
    from cimsim.train import prepare
    torch.manual_seed(0)
    model, x = _PlainContainers().eval(), torch.randn(32, 8)
    run = cimsim.deploy if entry == "deploy" else prepare
    with pytest.warns(UserWarning, match=r"plain list or dict.*nn\.ModuleList"):
        sim = run(model, "ideal", x, seed=0)
    names = {row[0] for row in sim.digital}
    assert {"heads[0].weight", "extra['out'].weight"} <= names


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_keys_and_values_of_another_width_are_refused(batch_first):
    """With kdim / vdim, a wider key or value ran, its extra features dropped (the arrays read
    the first kdim), where torch refuses it: refused naming the layer, deployed and twin."""
    from cimsim.train import prepare

    mha = nn.MultiheadAttention(6, 2, batch_first=batch_first, kdim=4, vdim=3).eval()

    def seq(b, s, e):
        return torch.randn(b, s, e) if batch_first else torch.randn(s, b, e)

    cal = (seq(8, 5, 6), seq(8, 3, 4), seq(8, 3, 3))
    sim = cimsim.deploy(mha, "ideal", cal)
    twin = prepare(mha, "ideal", calibration=cal)
    q = seq(2, 5, 6)
    for run in (sim, twin):
        run(q, seq(2, 3, 4), seq(2, 3, 3))
        with pytest.raises(AssertionError, match=r"^0: the key .* must hold 4 features \(kdim\)"):
            run(q, seq(2, 3, 5), seq(2, 3, 3))
        with pytest.raises(AssertionError, match=r"the value .* must hold 3 features \(vdim\)"):
            run(q, seq(2, 3, 4), seq(2, 3, 4))
        with pytest.raises(AssertionError, match="query's batch of 2"):
            run(q, seq(3, 3, 4), seq(3, 3, 3))
        with pytest.raises(AssertionError, match=r"sequences differ in length \(3 and 4\)"):
            run(q, seq(2, 3, 4), seq(2, 4, 3))


@pytest.mark.parametrize("make, cal, small, sizes", [
    (lambda: nn.Conv2d(2, 3, 3), torch.randn(4, 2, 6, 6), torch.randn(1, 2, 2, 5),
     r"\(2 x 5\). Kernel size: \(3 x 3\)"),
    (lambda: nn.Conv1d(2, 3, 5, dilation=2), torch.randn(4, 2, 16), torch.randn(1, 2, 8),
     r"\(8\). Kernel size: \(9\)"),
    (lambda: nn.Conv3d(2, 3, 3, padding=(1, 0, 0)), torch.randn(4, 2, 5, 5, 5),
     torch.randn(1, 2, 1, 2, 5), r"\(3 x 2 x 5\). Kernel size: \(3 x 3 x 3\)"),
])
def test_an_input_smaller_than_the_kernel_is_refused_as_torch_refuses_it(make, cal, small,
                                                                          sizes):
    """The strided windows failed in NumPy ("window shape cannot be larger than input array
    shape"), naming neither the layer nor the sizes: torch's message, with the layer."""
    from cimsim.train import prepare

    conv = make().eval()
    with pytest.raises(RuntimeError, match="Calculated padded input size per channel: " + sizes):
        conv(small)
    for run in (cimsim.deploy(conv, "ideal", cal), prepare(conv, "ideal", calibration=cal)):
        with pytest.raises(RuntimeError, match="^0: Calculated padded input size per channel: "
                                               + sizes):
            run(small)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        cimsim.deploy(conv, "ideal", small)


@pytest.mark.parametrize("make, cal, bad, fragment", [
    (lambda: nn.Conv2d(2, 3, 3), torch.randn(4, 2, 6, 6), torch.randn(1, 3, 6, 6),
     "input with 2 channels, but got input of size"),
    (lambda: nn.Conv1d(2, 3, 3), torch.randn(4, 2, 8), torch.randn(1, 3, 8),
     "input with 2 channels, but got input of size"),
    (lambda: nn.Linear(6, 3), torch.randn(4, 6), torch.randn(2, 7),
     "the layer takes 6 input features"),
])
def test_the_twin_refuses_inputs_of_another_width_as_the_deployed_layer(make, cal, bad,
                                                                        fragment):
    """A twin Conv2d given 3 channels for 2 ran on the first channels' columns; a twin Linear
    failed in a reshape naming nothing."""
    from cimsim.train import prepare

    layer = make().eval()
    for run in (cimsim.deploy(layer, "ideal", cal), prepare(layer, "ideal", calibration=cal)):
        with pytest.raises(RuntimeError, match="^0: .*" + fragment):
            run(bad)


def test_complex_and_meta_inputs_are_refused_naming_the_layer():
    """A complex input ran on its real part and came back complex (only torch's casting
    warning said so); a meta input failed in torch's copy naming no layer."""
    from cimsim.errors import MappingError
    from cimsim.train import prepare

    lin = nn.Linear(6, 3).eval()
    x = torch.randn(4, 6)
    sim, twin = cimsim.deploy(lin, "ideal", x), prepare(lin, "ideal", calibration=x)
    for run in (sim, twin):
        with pytest.raises(MappingError, match="^0: its input is complex64.*view_as_real"):
            run(torch.randn(2, 6, dtype=torch.complex64))
        with pytest.raises(MappingError, match="^0: its input is on the meta device"):
            run(torch.empty(2, 6, device="meta"))
    with pytest.raises(MappingError, match="meta device"):
        cimsim.deploy(lin, "ideal", torch.empty(4, 6, device="meta"))


def test_a_batch_of_one_beside_a_mask_or_initial_state_is_one_inference():
    """One sample with a (T, T) attention mask, or a GRU's (layers, 1, H) initial state, was
    counted as T (layers) inferences: the first count other than 1 was taken, every figure per
    inference T times too low. A batch of one is overridden only by an argument it broadcasts
    against ((1, S) position_ids before (B, S) input_ids)."""

    class Att(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(8, 16)
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x, mask=None):
            h = self.inp(x)
            return self.mha(h, h, h, attn_mask=mask)[0]

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(5, 7, num_layers=2, batch_first=True)

        def forward(self, x, h0):
            return self.gru(x, h0)[0]

    class Pos(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 4)

        def forward(self, position_ids, input_ids):
            return self.fc((position_ids + input_ids).float()[..., None])

    torch.manual_seed(0)
    mask = torch.triu(torch.full((6, 6), float("-inf")), 1)
    sim = cimsim.deploy(Att().eval(), "ideal", (torch.randn(4, 6, 8), mask))
    sim(torch.randn(1, 6, 8), mask)
    assert sim.n_inferences == 1
    sim = cimsim.deploy(Rec().eval(), "ideal", (torch.randn(4, 9, 5), torch.zeros(2, 4, 7)))
    sim(torch.randn(1, 9, 5), torch.zeros(2, 1, 7))
    assert sim.n_inferences == 1
    ids = torch.arange(5)[None]
    sim = cimsim.deploy(Pos().eval(), "ideal", (ids, torch.zeros(4, 5, dtype=torch.long)))
    sim(ids, torch.zeros(3, 5, dtype=torch.long))
    assert sim.n_inferences == 3


def test_a_forward_that_fails_counts_nothing():
    """A forward that raised part-way (the linear layer refused a 9x9 image the convolution
    had run on) left the convolution's events counted and the inference count as it was:
    every later report held them (31,320 MACs per inference for 13,824)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(512, 5))
    x = torch.randn(20, 3, 8, 8)
    sim = cimsim.deploy(model, "ideal", x, seed=0)
    sim(x)
    clean = sim.report().layers.set_index("layer")["n_macs_per_inference"].to_dict()
    sim.reset()
    with pytest.raises(Exception):  # noqa: B017 - torch's own shape error
        sim(torch.randn(20, 3, 9, 9))
    assert sim.n_inferences == 0 and sim.n_calls == 0
    sim(x)
    assert sim.report().layers.set_index("layer")["n_macs_per_inference"].to_dict() == clean


def test_an_empty_batch_reprograms_nothing():
    """Over capacity (time-multiplexed), a call on 0 samples was charged a whole reload of the
    arrays beyond the chip's: the reprogramming per inference doubled."""
    torch.manual_seed(0)
    chip = cimsim.load_chip("rram-22nm", overrides=["array.n_tiles=1", "array.arrays_per_tile=2",
                                                    "array.allow_time_multiplexing=true"])
    model = nn.Sequential(nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 8))
    x = torch.randn(32, 200)
    sim = cimsim.deploy(model, chip, x, seed=0)
    sim(x)
    before = sim.report().totals["n_reprogrammed_arrays_per_inference"]
    sim(torch.randn(0, 200))
    assert sim.report().totals["n_reprogrammed_arrays_per_inference"] == before > 0


def test_the_no_inference_warning_matches_a_drifting_chip_s_report():
    """Before any forward on pcm-22nm the warning said energy was 0 while the report showed
    the deploy-time drift compensation's calibration read (560.8 pJ)."""
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(16, 8)), torch.randn(8, 16)
    sim = cimsim.deploy(model, "pcm-22nm", x, seed=0)
    with pytest.warns(UserWarning, match="only what deploy itself counted, such as a drift "
                                         "compensation's calibration read"):
        totals = sim.report().totals
    assert totals["energy_pj_per_inference"] > 0


class _Recommender(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.fc = nn.Linear(16, 4)

    def forward(self, ids):
        return self.fc(self.emb(ids))


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_an_argument_counts_alike_by_position_and_by_name():
    """The calibration's dimensions were kept by position or by name, as each batch passed
    them: 32 ids (one per sample) passed as sim(ids=ids) after a positional calibration
    counted 1 inference (every figure per inference 32 times too high), an unbatched image
    passed as sim(x=img) counted its 3 channels."""
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (32,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the embedding kept digital
        by_position = cimsim.deploy(_Recommender(), "ideal", ids, seed=0)
        by_name = cimsim.deploy(_Recommender(), "ideal", {"ids": ids}, seed=0)
    for sim, call in ((by_position, lambda s: s(ids=ids)), (by_name, lambda s: s(ids))):
        call(sim)
        assert sim.n_inferences == 32
    img = torch.randn(10, 3, 8, 8)
    conv = cimsim.deploy(_Conv(), "ideal", img, seed=0)
    conv(x=img[0])
    assert conv.n_inferences == 1


def test_deploy_progress_bar_can_be_turned_off(monkeypatch):
    """The program-and-calibrate bar showed on a terminal with no way to silence it (and
    nested under a sweep's own bar, leaving cursor-up residue); ``progress=False`` draws none.
    The bars come from ``tqdm.auto``, widgets in a notebook (plain ``tqdm`` drew none there)."""
    import io
    import sys

    import tqdm.auto

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(16, 8)
    for progress, shown in ((True, True), (False, False)):
        monkeypatch.setattr(sys, "stderr", Terminal())
        cimsim.deploy(model, "rram-22nm", x, progress=progress)
        assert ("deploy: program + calibrate" in sys.stderr.getvalue()) is shown
    with pytest.raises(ConfigError, match="progress"):
        cimsim.deploy(model, "rram-22nm", x, progress="no")
    assert sys.modules["cimsim.mapping.deploy"].tqdm is tqdm.auto.tqdm


def test_a_simmodel_is_saved_whole_and_its_state_dict_says_so(tmp_path):
    """``sim.state_dict()`` was empty (the arrays are not parameters) and saved nothing without
    a word; ``torch.save(sim)`` / ``torch.load(weights_only=False)`` keep it all."""
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(16, 8)
    sim = cimsim.deploy(model, "rram-22nm", x, progress=False)
    with pytest.warns(UserWarning, match=r"holds only the layers kept digital.*torch\.save\(sim, "
                                         r"path\)"):
        assert len(sim.state_dict()) == 0
    torch.save(sim, tmp_path / "sim.pt")
    again = torch.load(tmp_path / "sim.pt", weights_only=False)
    sim.reset(noise=True)
    again.reset(noise=True)
    assert torch.equal(sim(x), again(x))


def test_an_input_requiring_grad_is_told_the_outputs_carry_none():
    """``sim(x).sum().backward()`` (an attack on the chip's model) failed at backward in
    torch's 'element 0 of tensors does not require grad'; the call now says why, and where
    gradients are (the training twin)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3)).eval()
    sim = cimsim.deploy(model, "ideal", torch.randn(8, 6), seed=0)
    x = torch.randn(4, 6, requires_grad=True)
    with pytest.warns(UserWarning, match=r"carry no gradient.*cimsim\.train\.prepare"):
        out = sim(x)
    assert not out.requires_grad
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim(x.detach())
        with torch.no_grad():
            sim(x)


def test_calls_from_several_threads_take_turns_and_count_every_event():
    """One SimModel called from several threads: each call read-modify-wrote the layers'
    event sums and the noise stream's call counter, so 0.5-3 % of the events were lost
    (energy per inference under-reported) and two calls could draw the same noise. Calls now
    take turns: a forward waits while another holds the model, and the counts equal those of
    the same calls made one after another."""
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    chip = cimsim.load_chip("rram-22nm")  # conversion noise off: the counts are the inputs'
    chip = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.0, read_noise_rel=0.0),
                        adc=chip.adc.replace(comparator_noise_lsb=0.0),
                        device=chip.device.replace(read_noise_q_s=()))
    sim = cimsim.deploy(model, chip, torch.rand(32, 12), seed=0)
    xs = [torch.rand(2, 12, generator=torch.Generator().manual_seed(i)) for i in range(120)]
    sim.reset(noise=True)
    for x in xs:
        sim(x)
    ref_events, ref_n = _all_events(sim), sim.n_inferences

    held = threading.Event()
    release = threading.Event()

    def hold() -> None:  # as a long forward holds the model
        with sim._one_call():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    caller = threading.Thread(target=sim, args=(xs[0],))
    reader = threading.Thread(target=sim.report)  # its counts are taken between calls too
    # a backend switched under a running forward gave it half its layers on each backend
    switcher = threading.Thread(target=sim.use_backend, args=("torch",))
    caller.start()
    reader.start()
    switcher.start()
    caller.join(0.3)
    switcher.join(1.0)  # builds its torch matrices meanwhile, then waits to switch
    assert caller.is_alive() and reader.is_alive()  # wait for the holder, not beside it
    assert switcher.is_alive() and sim.backend == "numba"
    release.set()
    holder.join(10)
    for thread in (caller, reader, switcher):
        thread.join(30)
        assert not thread.is_alive()
    assert sim.backend == "torch"
    sim.use_backend("numba")

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        sim.reset(noise=True)
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(sim, xs))
    finally:
        sys.setswitchinterval(switch)
    assert sim.n_inferences == ref_n
    events = _all_events(sim)
    assert set(events) == set(ref_events)
    assert {k: events[k] for k in ref_events} == pytest.approx(ref_events, rel=1e-12)
    # each call drew its own noise: every core's call counter moved once per call
    assert len(outs) == len(xs)
    assert {c.calls for layer in sim.sim_layers.values() for c in layer.cores} == {len(xs)}
    # uncounted() holds the model only to take and restore its counts: forwards from other
    # threads inside its block run (they waited for it for ever) and are not counted
    with sim.uncounted(), ThreadPoolExecutor(2) as pool:
        assert len(list(pool.map(sim, xs[:8]))) == 8
    assert sim.n_inferences == ref_n and _all_events(sim) == pytest.approx(events)


def _all_events(sim) -> dict:
    total: dict = {}
    for work in sim.works():
        for key, value in work.events.items():
            total[key] = total.get(key, 0.0) + value
    return total


def test_a_deployed_model_put_in_training_mode_runs_in_eval_and_says_so():
    """``sim.train()`` warns and stays in eval, but ``sim.model.train()`` switched the copy's
    dropout on and let BatchNorm update its running statistics during the simulated
    inference, silently and for good (0.034 off after ``sim.model.eval()``). The forward
    (and a trace) sets it back to eval, with a warning naming the modules."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5),
                          nn.Linear(8, 3)).eval()
    x = torch.randn(16, 6)
    sim = cimsim.deploy(model, "ideal", torch.randn(32, 6), progress=False)
    ref = sim(x)
    stats = sim.model[1].running_mean.clone()
    sim.model.train()
    with pytest.warns(UserWarning, match=r"5 module\(s\) of the deployed model were in "
                                         r"training mode .*set back to eval"):
        out = sim(x)
    assert torch.equal(out, ref) and torch.equal(sim.model[1].running_mean, stats)
    assert not any(m.training for m in sim.model.modules())
    sim.model[2].train()
    with pytest.warns(UserWarning, match=r"1 module\(s\) .*\('2'\)"):
        sim.trace(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(sim(x), ref)


def test_torch_compile_of_a_deployed_model_runs_the_simulation_eagerly():
    """torch.compile(sim) traced the engine's NumPy code and failed deep inside it
    ('sum(): argument dtype must be torch.dtype'); the simulated parts now break the graph
    and run eagerly: the compiled model (or its compiled inner model) gives the simulation's
    outputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    x = torch.randn(6, 8)
    sim = cimsim.deploy(model, "ideal", torch.randn(32, 8), progress=False)
    ref = sim(x)
    torch._dynamo.reset()
    assert torch.equal(torch.compile(sim)(x), ref)
    assert torch.equal(torch.compile(sim.model)(x), ref)


def test_importing_the_simulated_layers_imports_no_dynamo():
    """torch.compiler.disable imports torch._dynamo (about 1.1 s) where it is applied: on the
    simulated layer classes it was paid by every import of cimsim.mapping (the CLI's, a sweep
    worker's). The graph break is applied at a call made while compiling (cimsim._eager)."""
    import subprocess
    import sys

    code = ("import sys, cimsim, cimsim.mapping, cimsim.train, cimsim.mapping.deploy; "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr


class _RareExpert(nn.Module):
    """Two experts; a token goes to the second only when its first feature is above 2.5."""

    def __init__(self) -> None:
        super().__init__()
        self.experts = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])

    def forward(self, x):
        rare = x[:, 0] > 2.5
        y = torch.zeros_like(x)
        y[~rare] = self.experts[0](x[~rare])
        y[rare] = self.experts[1](x[rare])
        return y


def test_a_matrix_calibrated_on_a_few_routed_vectors_is_named():
    """An expert the calibration reached with one token was fitted to it, silently (35 % off
    on the lossless chip at inference); deploy names the matrices calibrated on fewer than 16
    vectors and under a quarter of the samples. A model calibrated on a few samples, every
    layer seeing as many, is not named."""
    torch.manual_seed(0)
    cal = torch.randn(256, 8)
    cal[:, 0] = cal[:, 0].clamp(max=2.4)
    cal[:3, 0] = 3.0
    with pytest.warns(UserWarning, match=r"deploy: 1 matrix was calibrated on fewer than 16 "
                                         r"input vectors, under a quarter of the 256 "
                                         r"calibration samples .*: 'experts\.1' \(3\);"):
        cimsim.deploy(_RareExpert().eval(), "ideal", cal, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cimsim.deploy(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2)).eval(),
                      "ideal", torch.randn(3, 8), progress=False)
