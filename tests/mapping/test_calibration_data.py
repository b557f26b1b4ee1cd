"""Calibration data as users bring it (forms: arrays inside tuples and DataLoader items, a list
of batches; content: NaN / inf, a recurrent matrix's zero first step): each was silent or an
error naming neither the layer nor the way out before it was fixed here."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare
from cimsim.train.bskmq import prepare_bskmq
from cimsim.train.columnquant import prepare_columnquant

from ..train.test_ternary import _lossless as _ternary_chip
from .test_fused_activation import _chip as _fused_chip


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def _x(n: int = 120, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32))


def _simulated() -> cimsim.ChipConfig:
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(adc=chip.adc.replace(range_policy="calibrated",
                                             calibration_mode="simulated"))


class _Logs(nn.Module):
    """A NaN made by the model (the log of a negative), not in the data."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.b(torch.log(self.a(x)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("run", ["ideal", "simulated", "prepare"])
def test_nan_or_inf_in_the_calibration_is_an_error_naming_the_layer(bad, run):
    # was: "1 of 960 inputs to the arrays are NaN or infinite" from programming, no layer
    # named (NaN compared false in the running max, the reservoir kept it)
    x = _x()
    x[5, 3] = bad
    what = "1 NaN and 0 infinite" if bad != bad else "0 NaN and 1 infinite"
    with pytest.raises(MappingError, match=f"layer '0': .*{what}.*calibration data"):
        if run == "prepare":
            prepare(_mlp(), "ideal", x)
        else:
            cimsim.deploy(_mlp(), "ideal" if run == "ideal" else _simulated(), x)


def test_a_nan_the_model_makes_names_the_layer_it_reaches():
    with pytest.raises(MappingError, match="layer 'b': .* NaN .*layers before this one"):
        cimsim.deploy(_Logs().eval(), "ideal", _x())


def _outputs(calibration, x, model=None, chip="ideal") -> torch.Tensor:
    model = model or _mlp()
    return cimsim.deploy(model, chip, calibration, seed=0)(x)


class _Scaled(nn.Module):
    """Two arguments, the second optional (a mask, a scale)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 4)

    def forward(self, x, scale=None):
        y = self.fc(x)
        return y if scale is None else y * scale


def test_arrays_inside_a_tuple_calibrate_as_the_tensors():
    # was: a tuple of arrays read as a DataLoader: the first array called as the model's
    # input (an AttributeError from torch), the second as a second batch
    x, s = _x(), torch.rand(120, 1) + 0.5
    model = _Scaled().eval()
    want = _outputs((x, s), x[:16], model)
    got = _outputs((x.numpy(), s.numpy()), x[:16], model)
    assert torch.equal(got, want)


@pytest.mark.parametrize("items", [
    lambda x: [(x[:50].numpy(), 0), (x[50:].numpy(), 1)],   # (inputs, labels) items
    lambda x: (b.numpy() for b in (x[:50], x[50:])),       # a generator of arrays
])
def test_dataloader_items_of_arrays_calibrate_as_tensors(items):
    # was: AttributeError: 'numpy.ndarray' object has no attribute 'dim', from the model
    x = _x()
    want = _outputs([(x[:50],), (x[50:],)], x[:16])
    assert torch.equal(_outputs(items(x), x[:16]), want)
    prepare(_mlp(), "ideal", items(x))  # the twin reads them as deploy does


def test_a_list_of_batches_read_as_arguments_says_so_and_the_way_out():
    # a list of tensors is the model's arguments (an LSTM's (x, (h0, c0))); batches of
    # different sizes given so failed with "takes 2 positional arguments but 3 were given"
    # (refused before the call where the forward's signature says it takes fewer; a note on
    # the TypeError where it cannot be read)
    x = _x()
    with pytest.raises(MappingError, match=r"calibration as 2 tensors is read as the model's 2 "
                                           r"positional arguments, .* takes fewer; batches one "
                                           r"by one are a DataLoader or a list of tuples, "
                                           r"\[\(x1,\), \(x2,\)\]"):
        _outputs([x[:100], x[100:]], x[:16])


class _Recurrent(nn.Module):
    """A GRU from a zero state, sequence-first: its weight_hh's first-step inputs are 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gru, self.out = nn.GRU(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.out(self.gru(x)[0])


def test_the_one_code_check_reads_rows_spread_over_the_sample():
    # was: the first 32 calibration rows, for weight_hh all its zero first-step state: deploy
    # warned it "converts every calibration input to one ADC code" on the ideal chip, where
    # the model runs at under 1 % relative error
    seq = torch.from_numpy(np.random.default_rng(1).normal(size=(12, 64, 8)).astype(np.float32))
    model = _Recurrent().eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = cimsim.deploy(model, "ideal", seq, batch_dim=1)
    assert not [w for w in caught if "one ADC code" in str(w.message)]
    assert not any(c.one_code for layer in sim.sim_layers.values() for c in layer.cores)
    with torch.no_grad():
        y, ref = sim(seq[:, :16]), model(seq[:, :16])
    assert float((y - ref).norm() / ref.norm()) < 1e-2


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8])
@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_integer_inputs_to_a_mapped_layer_are_refused_naming_it(dtype, run):
    # the float model refuses them; the simulated layer computed in float64 and cast its
    # output back to the integers: deploy calibrated layer '2' on truncated activations
    # (relative error 0.027 on the ideal chip against 0.006) and sim(x) returned int64
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 5, size=(60, 8))).to(dtype)
    with pytest.raises(RuntimeError, match="same dtype"):
        _mlp()(x)
    with pytest.raises(MappingError, match=f"0: its input is {str(dtype)[6:]}, not floating"):
        (prepare if run == "prepare" else cimsim.deploy)(_mlp(), "ideal", x)
    sim = cimsim.deploy(_mlp(), "ideal", x.float())
    with pytest.raises(MappingError, match="x.float()"):
        sim(x)


def test_nan_at_run_time_names_the_layer_and_the_twin_keeps_it_nan():
    # deploy's error named no layer; the twin turned the NaN into finite outputs (its codes,
    # cast to integers in the ADC): a NaN input trained silently
    x, run = _x(), _x(10, seed=2)
    run[3, 2] = float("nan")
    with pytest.raises(MappingError, match="layer '0': 1 of 80 inputs .* NaN"):
        cimsim.deploy(_mlp(), "ideal", x)(run)
    twin = prepare(_mlp(), "ideal", x)
    with torch.no_grad():
        y, ref = twin(run), _mlp()(run)
    assert torch.equal(torch.isnan(y), torch.isnan(ref)) and torch.isnan(y[3]).all()


def _batches_of(x: torch.Tensor, size: int = 40):
    return (x[i:i + size] for i in range(0, len(x), size))


@pytest.mark.parametrize("run", ["prepare simulated", "bs-kmq refit", "columnquant ternary"])
def test_a_one_shot_iterator_is_read_again_where_a_method_reads_it_twice(run):
    # was: the second read found it spent: 'calibration data is empty' (prepare's simulated
    # mode deploying), 'calibration is empty' (BS-KMQ's refit), 'torch.cat(): expected a
    # non-empty list' (ColumnQuant's ternary ADC recalibration)
    x = _x()
    if run == "prepare simulated":
        a, b = (prepare(_mlp(), _simulated(), c) for c in (_batches_of(x), [(t,) for t in
                                                                         _batches_of(x)]))
        assert torch.equal(a.eval()(x[:8]), b.eval()(x[:8]))
    elif run == "bs-kmq refit":
        prepare_bskmq(_mlp().double(), _fused_chip(), _batches_of(x.double()),
                      params={"min_mass": 1.0})
    else:
        prepare_columnquant(_mlp(), _ternary_chip(weight_bits=2), _batches_of(x),
                            weight_scale="layer")


@pytest.mark.parametrize("table", [lambda x: x.tolist(), lambda x: pd.DataFrame(x.numpy())])
def test_a_table_of_numbers_read_as_a_dataloader_names_the_way_out(table):
    # was: AttributeError: 'float' object has no attribute 'dim' (a nested list's numbers,
    # a DataFrame's column labels called as the model's input)
    with pytest.raises(MappingError, match=r"as its input; allowed: .*\(a table of numbers.*"
                                           r"torch\.tensor"):
        cimsim.deploy(_mlp(), "ideal", table(_x()))


@pytest.mark.parametrize(("option", "value"), [("batch_size", 0), ("batch_size", -1),
                                               ("batch_size", 2.5), ("batch_dim", -1)])
def test_a_bad_batch_size_or_batch_dim_is_named(option, value):
    # was: batch_size -1 "calibration data is empty", 0 range()'s "arg 3 must not be zero";
    # batch_dim -1 deployed, cutting the features as samples
    with pytest.raises(MappingError, match=f"{option} = {value} is invalid"):
        cimsim.deploy(_mlp(), "ideal", _x(), **{option: value})
    with pytest.raises(MappingError, match=f"{option} = {value} is invalid"):
        prepare(_mlp(), "ideal", _x(), **{option: value})


def _coarse(run, x) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(_mlp(), "rram-22nm", x)
    return [str(w.message) for w in caught if "within a 32nd" in str(w.message)]


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_an_outlier_that_sets_the_input_step_is_warned_about(run):
    # one calibration value of 1e4 among N(0, 1) data set every input step: the signal took a
    # few codes and the noise, scaled by the step, swamped it (relative error 781 on
    # rram-22nm against 0.46), with no warning (the one-code check skips calibrated ranges)
    x = _x(300)
    rng = np.random.default_rng(3)
    for clean in (x, torch.from_numpy(rng.laplace(size=(300, 8)).astype(np.float32))):
        assert _coarse(run, clean) == []  # heavy tails are no outlier
    x[7, 3] = 1e4
    (said,) = _coarse(run, x)
    assert said.startswith(
        f"{run.__name__}: half the nonzero calibration input vectors of '0', '2' ")
    assert "quant.act_calibration = 'percentile'" in said
    chip = cimsim.load_chip("rram-22nm")
    clipped = chip.replace(quant=chip.quant.replace(act_calibration="percentile",
                                                    act_percentile=99.5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(_mlp(), clipped, x)
    assert not [w for w in caught if "within a 32nd" in str(w.message)]


def test_dataloader_items_of_three_say_what_is_left_out():
    """A DataLoader of (x, mask, y) items calibrated on x alone, the mask dropped without a
    word; it says so now, with the two ways to give several inputs."""
    x = _x(32)
    items = [(x[i:i + 8], torch.ones(8, dtype=torch.bool), torch.zeros(8)) for i in (0, 8)]
    with pytest.warns(UserWarning, match=r"DataLoader of 3-element items: .* the other 2 left "
                                         r"out"):
        cimsim.deploy(_mlp(), "ideal", items)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cimsim.deploy(_mlp(), "ideal", [(x[:8], torch.zeros(8))])  # (inputs, labels): silent


def test_a_dataset_is_batched_by_torch_and_read_as_its_loader():
    """A ``TensorDataset`` (or any map-style dataset) passed as calibration was refused; it is
    batched in order by torch's DataLoader and calibrates as that loader does."""
    from torch.utils.data import DataLoader, TensorDataset

    x = _x(40)
    data = TensorDataset(x, torch.zeros(40))
    a = cimsim.deploy(_mlp(), "rram-22nm", data, batch_size=16)
    b = cimsim.deploy(_mlp(), "rram-22nm", DataLoader(data, batch_size=16))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert a.sim_layers["0"].cores[0].s_x == b.sim_layers["0"].cores[0].s_x


def test_a_list_of_batches_or_samples_is_named_not_passed_as_arguments():
    """``deploy(model, chip, list(x))`` failed inside torch ("forward() takes 2 positional
    arguments but 33 were given"); ``accuracy(sim, list(x), y)`` and ``sim(list(x))`` with
    AttributeErrors ('list' object has no attribute 'shape' / 'dim')."""
    from cimsim.evaluate import accuracy

    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    x = torch.randn(12, 6)
    for given in (list(x), [x[:6], x[6:]], tuple(x)):
        with pytest.raises(MappingError, match=rf"calibration as {len(given)} tensors is read "
                                               rf"as the model's {len(given)} positional "
                                               r"arguments, and Sequential\.forward\(input\) "
                                               r"takes fewer; .*torch\.cat\(batches\)"):
            cimsim.deploy(model, "rram-22nm", given, progress=False)
    sim = cimsim.deploy(model, "rram-22nm", x, progress=False)
    with pytest.raises(ValueError, match=r"x is a list of 12; allowed: a tensor of the inputs"):
        accuracy(sim, list(x), torch.zeros(12, dtype=torch.long))
    with pytest.raises(MappingError, match=r"^0: its input is a list of 12 tensors; the model's "
                                           r"own layer takes one tensor"):
        sim(list(x))


@pytest.mark.parametrize("wrap", [lambda p: p, lambda p: (p,), lambda p: [(p,)]],
                         ids=["alone", "tuple", "loader"])
def test_a_packed_sequence_calibrates_a_model_that_takes_one(wrap):
    """A model whose forward takes a ``PackedSequence`` is calibrated on one (it was refused,
    "pass the padded tensor", which such a model cannot take; ``(p,)`` failed in an
    AttributeError); the outputs are near the float model's on the lossless chip."""
    from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(8, 16, 2, bidirectional=True)
            self.fc = nn.Linear(32, 3)

        def forward(self, p):
            out, _ = self.rnn(p)
            out, lengths = pad_packed_sequence(out)
            return self.fc(out.sum(0) / lengths[:, None].float())

    torch.manual_seed(0)
    p = pack_sequence([torch.randn(k, 8) for k in (10, 8, 8, 5, 3, 2)])
    model = Packed().eval()
    for run in (cimsim.deploy, prepare):
        sim = run(model, "ideal", calibration=wrap(p), seed=0)
        with torch.no_grad():
            ref, out = model(p), sim(p)
        assert float((out - ref).abs().max()) < 0.02 * float(ref.abs().max())


_FULL_SCALE_CHIPS = {
    # 1024 rows, 7-b cells, one-shot 8-b inputs, full-scale 8-b converters: a 64-row layer's
    # conversions read 1.5 codes each (the one-code warning needs every setting at one code);
    # a 96 % MLP scored 10 % without a word
    "few_codes": ({"weight_bits": 8, "input_bits": 8, "weight_encoding": "offset",
                   "array": {"n_rows": 1024, "n_cols": 1024, "cols_per_adc": 8},
                   "device": {"cell": "ideal", "bits_per_cell": 7}, "dac": {"bits": "all"},
                   "adc": {"kind": "sar", "bits": 8, "range_policy": "full_scale"}},
                  64, r"2 matrices read at most 2 codes per ADC setting.*'0', '2'.*"
                      r"range_policy = 'calibrated'"),
    # 4b/4b two's complement over 1-b cells, bit-serial inputs, 5-b full-scale converters on
    # 256 rows: a few codes each, but shift-added over slices and planes the error exceeded
    # the signal (-16 dB on a trained model's first layer, its accuracy halved)
    "error_over_signal": ({"weight_bits": 4, "input_bits": 4,
                           "weight_encoding": "twos_complement",
                           "array": {"n_rows": 256, "n_cols": 128, "cols_per_adc": 4,
                                     "allow_time_multiplexing": True},
                           "device": {"cell": "edram", "bits_per_cell": 1}, "dac": {"bits": 1},
                           "adc": {"kind": "sar", "bits": 5, "range_policy": "full_scale"}},
                          32, r"2 matrices err by more than the signal.*SQNR below 0 dB.*: "
                              r"'0', '2';"),
}


@pytest.mark.parametrize("flag", list(_FULL_SCALE_CHIPS))
def test_a_matrix_whose_outputs_barely_follow_its_inputs_is_warned_about(flag):
    """Full-scale converters far wider than the signal, named at deploy; the calibrated range
    that restores them is not warned about."""
    fields, k, match = _FULL_SCALE_CHIPS[flag]
    chip = cimsim.ChipConfig.from_dict(fields)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(k, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
    x = torch.rand(128, k) if flag == "few_codes" else torch.randn(256, k)
    with pytest.warns(UserWarning, match=match):
        sim = cimsim.deploy(model, chip, x, seed=0)
    assert all(getattr(c, flag) for layer in sim.sim_layers.values() for c in layer.cores)
    calibrated = chip.replace(adc=chip.adc.replace(range_policy="calibrated"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cimsim.deploy(model, calibrated, x, seed=0)
