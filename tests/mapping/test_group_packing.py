"""``array.group_packing = 'diagonal'``: a grouped (depthwise) convolution's groups packed
block-diagonally into one matrix per array, as CIM mappings of depthwise layers do, instead
of one matrix of C_in/groups · prod(kernel) rows on arrays of its own per group (a depthwise
3x3 conv of C channels: C arrays for 9 rows each). Packing is exact where the chip is
lossless, takes no more arrays than one group per pack, and the twin packs as deploy does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim.config import ChipConfig, GroupPacking
from cimsim.errors import ConfigError
from cimsim.mapping.matrix import group_packs, pack_groups, unpack_groups
from cimsim.train import prepare

from .conftest import lossless_chip


class Mobile(nn.Module):
    """A MobileNet-style block: a stem, a depthwise 3x3, a pointwise 1x1, a grouped transposed
    conv, a 1-D depthwise conv and a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.pw = nn.Conv2d(12, 8, 1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2, groups=4)
        self.dw1 = nn.Conv1d(8, 8, 3, padding=1, groups=8, bias=False)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = torch.relu(self.dw(torch.relu(self.stem(x))))
        h = self.up(self.pw(h))  # (B, 8, 2H, 2W)
        h = self.dw1(h.flatten(2))
        return self.head(h.mean(2))


def _packed(chip: ChipConfig, packing: str = "diagonal") -> ChipConfig:
    return chip.replace(array=chip.array.replace(group_packing=packing))


def test_pack_and_unpack_are_inverse_and_keep_gradients():
    rng = np.random.default_rng(0)
    mats = rng.normal(size=(12 * 2, 9))
    packed = pack_groups(mats, 12, 4)
    assert packed.shape == (3 * 8, 36)
    # pack 1 holds groups 4..7 on its diagonal, zeros off it
    np.testing.assert_array_equal(packed[8:10, 0:9], mats[8:10])
    np.testing.assert_array_equal(packed[10:12, 9:18], mats[10:12])
    assert not packed[8:10, 9:].any() and not packed[10:12, :9].any()
    np.testing.assert_array_equal(unpack_groups(packed, 12, 4), mats)
    # a pack's product is the groups' products side by side
    x = rng.normal(size=(5, 12 * 9))
    grouped = np.concatenate([x[:, g * 9:(g + 1) * 9] @ mats[g * 2:(g + 1) * 2].T
                              for g in range(12)], axis=1)
    by_pack = np.concatenate([x[:, j * 36:(j + 1) * 36] @ packed[j * 8:(j + 1) * 8].T
                              for j in range(3)], axis=1)
    np.testing.assert_allclose(by_pack, grouped, rtol=0, atol=1e-12)
    t = torch.tensor(mats, requires_grad=True)
    back = unpack_groups(pack_groups(t, 12, 3), 12, 3)
    assert torch.equal(back, t)
    back.sum().backward()
    assert torch.equal(t.grad, torch.ones_like(t))
    assert pack_groups(mats, 12, 1) is mats


def test_groups_per_pack_by_hand():
    """The largest divisor P of ``groups`` whose pack takes no more arrays than one group."""
    chip = cimsim.load_chip("rram-22nm")  # 128 x 128 arrays
    dia = _packed(chip)
    # depthwise 3x3: P·9 rows <= 128 -> P <= 14; divisors of 32: 8, of 96: 12, of 7: 7
    assert group_packs(9, 1, 32, (3, 3), dia, "dw") == 8
    assert group_packs(9, 1, 96, (3, 3), dia, "dw") == 12
    assert group_packs(9, 1, 7, (3, 3), dia, "dw") == 7
    assert group_packs(9, 1, 32, (3, 3), chip, "dw") == 1  # 'none' (the default)
    # a group already a whole array's rows: nothing to pack
    assert group_packs(200, 1, 8, None, dia, "g") == 1
    # 4 rows and 40 outputs a group: the columns bound it. rram-22nm holds an 8-b weight
    # in 4 columns of 2-b cells, a differential pair each: 8 columns an output, 16 outputs
    # an array; one group's 40 outputs take 3 arrays, two groups' 80 take 5, three's 120
    # take 8: no pack of 2 or more fits one group's 3 arrays
    assert chip.weight_bits == 8 and chip.device.bits_per_cell == 2
    assert group_packs(4, 40, 6, None, dia, "g") == 1
    # 4 rows and 4 outputs: a group takes one array; packs of 4 (16 outputs) still do
    assert group_packs(4, 4, 12, None, dia, "g") == 4


def test_packed_equals_one_matrix_per_group_on_the_lossless_chip():
    """Per-output weight scales and an exact converter: the off-diagonal zeros change no
    sum, so the packed layer computes exactly what one matrix per group computes, on far
    fewer arrays, its matrices named by the groups they hold."""
    torch.manual_seed(0)
    model = Mobile().double().eval()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    chip = lossless_chip("channel")  # 37 x 23 arrays
    apart = cimsim.deploy(model, chip, x, seed=2)
    packed = cimsim.deploy(model, _packed(chip), x, seed=2)
    # the same integer sums; the float scaling after them may round in another order
    np.testing.assert_allclose(packed(x).numpy(), apart(x).numpy(), rtol=1e-13, atol=1e-15)
    names = [c.name for c in packed.sim_layers["dw"].cores]
    # 4 · 9 = 36 rows would fit 37, but an 8-b weight takes 8 columns (4 differential pairs
    # of 2-b cells): 2 outputs in the 23 columns, so 2 groups a pack
    assert names == [f"dw[g{2 * j}-{2 * j + 1}]" for j in range(6)]
    assert len(apart.sim_layers["dw"].cores) == 12
    # a transposed conv's group is 8 outputs (2 channels x a 2x2 kernel), 4 arrays' columns:
    # no pack of two fits them, so one matrix a group
    assert [c.name for c in packed.sim_layers["up"].cores] == [f"up[g{g}]" for g in range(4)]
    assert packed.arrays_needed < apart.arrays_needed


def test_a_pack_counts_its_groups_logical_macs():
    """The report's MACs (and the TOPS built from them) are the layer's, whatever the
    packing: a pack counted its zero blocks, a packed depthwise conv P times its MACs."""
    torch.manual_seed(0)
    model = Mobile().double().eval()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    chip = lossless_chip("channel")
    reports = {}
    for name, c in (("apart", chip), ("packed", _packed(chip))):
        sim = cimsim.deploy(model, c, x, seed=2)
        sim(x)
        reports[name] = sim.report()
    apart, packed = (reports[k].layers.set_index("layer") for k in ("apart", "packed"))
    dw = 5 * 5 * 12 * 9  # output pixels x channels x one group's 1 x 3 x 3 weights
    assert apart.loc["dw", "n_macs_per_inference"] == dw
    assert packed.loc["dw", "n_macs_per_inference"] == dw
    np.testing.assert_array_equal(packed["n_macs_per_inference"], apart["n_macs_per_inference"])
    assert reports["packed"].totals["ops_per_inference"] == \
        reports["apart"].totals["ops_per_inference"]


@pytest.mark.parametrize("granularity", ["tensor", "column"])
def test_packed_equals_one_matrix_per_group_at_every_weight_granularity(granularity):
    """Per-tensor scales: each group took its own max|w| unpacked and a pack its largest
    group's, so a small group quantized coarser packed (a depthwise channel of weight 0.037
    beside one of 0.40 went to code 0 at 2 b: output 0 where unpacked gave 0.0097; model
    property hunt seed 4711). ``tensor`` is the layer's whole tensor now, packed or not."""
    torch.manual_seed(0)
    model = Mobile().double().eval()
    with torch.no_grad():
        model.dw.weight[0].mul_(0.05)  # one group far smaller than the others
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    chip = lossless_chip(granularity)
    apart = cimsim.deploy(model, chip, x, seed=2)
    packed = cimsim.deploy(model, _packed(chip), x, seed=2)
    assert len(packed.sim_layers["dw"].cores) < len(apart.sim_layers["dw"].cores)
    np.testing.assert_allclose(packed(x).numpy(), apart(x).numpy(), rtol=1e-13, atol=1e-15)
    if granularity == "tensor":  # one scale, the layer's, for every group
        scales = {float(c.view.s_w.max()) for c in apart.sim_layers["dw"].cores}
        assert scales == {float(model.dw.weight.abs().max()) / 127}


def test_the_twin_packs_as_deploy_and_keeps_the_groups_apart_while_training():
    torch.manual_seed(1)
    model = Mobile().double().eval()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    chip = _packed(lossless_chip("column", n_rows=20, n_cols=16))
    sim = cimsim.deploy(model, chip, x, seed=3)
    prep = prepare(model, chip, x, seed=3).eval()
    assert [n for n, _ in prep.twins()] == [c.name for layer in sim.sim_layers.values()
                                             for c in layer.cores]
    assert prep.arrays_needed == sim.arrays_needed
    with torch.no_grad():
        y = prep(x)
    torch.testing.assert_close(y, sim(x), rtol=1e-9, atol=1e-9)
    # a training step: the packs' off-diagonal weights stay zero (no group reads another's
    # input), and float_model() gives torch's grouped weights back
    prep.train()
    opt = torch.optim.Adam(prep.parameters(), lr=1e-2)
    prep(x).square().mean().backward()
    opt.step()
    packed = [name for name, layer in prep.twin_layers.items() if getattr(layer, "per", 1) > 1]
    assert "dw" in packed and "dw1" in packed, packed
    for name in packed:
        for twin in prep.twin_layers[name].matrices():
            keep = twin.weight_keep
            assert keep is not None and float(keep.sum()) < keep.numel()
            assert not torch.any(twin.effective_weight() * (1 - keep))
    back = prep.float_model()
    assert back.dw.weight.shape == model.dw.weight.shape
    assert back.up.weight.shape == model.up.weight.shape
    assert not torch.equal(back.dw.weight, model.dw.weight)  # trained


def test_group_packing_is_a_validated_field_that_round_trips(tmp_path):
    chip = _packed(cimsim.load_chip("rram-22nm"))
    assert chip.array.group_packing is GroupPacking.DIAGONAL
    path = tmp_path / "chip.toml"
    chip.save(path)
    assert cimsim.load_chip(path).array.group_packing is GroupPacking.DIAGONAL
    with pytest.raises(ConfigError, match=r"group_packing.*'none', 'diagonal'"):
        chip.array.replace(group_packing="block")


def test_packing_binary_weights_is_refused_naming_the_field():
    """A pack's cells off its diagonal must add nothing, and a ±1 weight has no 0: packed on a
    1-b binary chip they added ±1 x the other groups' inputs (a depthwise conv 3 % off on a
    lossless chip, found by tests/test_model_properties.py). Refused when the chip is built."""
    ideal = cimsim.load_chip("ideal")
    with pytest.raises(ConfigError, match=r"ArrayConfig\.group_packing = 'diagonal' is invalid; "
                       r"allowed: 'none' for weight_encoding = 'binary'"):
        ideal.replace(weight_bits=1, weight_encoding="binary",
                      device=ideal.device.replace(bits_per_cell=1),
                      array=ideal.array.replace(group_packing="diagonal"))
    # one balanced-ternary digit holds 0: packed, and exact
    ternary = ideal.replace(weight_bits=1, weight_encoding="ternary",
                            device=ideal.device.replace(bits_per_cell=1),
                            array=ideal.array.replace(group_packing="diagonal"))
    model, x = Mobile().eval(), torch.randn(16, 3, 8, 8)
    packed = cimsim.deploy(model, ternary, x, seed=0)
    flat = cimsim.deploy(model, ternary.replace(
        array=ternary.array.replace(group_packing="none")), x, seed=0)
    assert len(packed.sim_layers["dw"].cores) < len(flat.sim_layers["dw"].cores)
    with torch.no_grad():
        assert torch.equal(packed(x), flat(x))


def test_a_chip_too_small_for_one_matrix_per_group_points_to_packing():
    """A MobileNet's depthwise layers fill a chip one 9-row matrix per array; the capacity
    error names the packing (and packing fits the model)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.Conv2d(48, 48, 3, groups=48),
                          nn.Flatten(), nn.LazyLinear(4)).eval()
    x = torch.randn(2, 3, 6, 6)
    model(x)
    chip = cimsim.load_chip("rram-22nm")
    chip = chip.replace(array=chip.array.replace(n_tiles=1, arrays_per_tile=40))
    with pytest.raises(cimsim.CapacityError, match=r"48 matrices are single groups.*"
                       r"group_packing = 'diagonal'"):
        cimsim.deploy(model, chip, x)
    with pytest.raises(cimsim.CapacityError, match="group_packing"):
        prepare(model, chip, x)
    sim = cimsim.deploy(model, _packed(chip), x)
    assert sim.arrays_needed <= 40
