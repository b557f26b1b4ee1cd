"""The rest of the tool on the model zoo of ``tests/mapping/test_new_models.py`` (models cimsim
was not written for): the torch backend, the report and its files, the command line with a
user's ``module:function`` model and integer (token) inputs, and drift on ``pcm-22nm``.

Small sizes, seeded; the zoo's definitions are imported, not copied."""

from __future__ import annotations

import json
import math
import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import cimsim
from cimsim.arrays import program
from cimsim.cli import main
from cimsim.events import Action, Component, EventKey
from cimsim.report import Report
from tests.mapping.conftest import lossless_chip
from tests.mapping.test_new_models import ZOO, _rram

# the zoo plus the layer kinds it lacks: a two-layer RNN, Conv3d + ConvTranspose3d
MODELS = dict(ZOO)
MODELS["rnn-relu"] = (lambda: nn.RNN(4, 6, 2, nonlinearity="relu"),
                      lambda: (torch.randn(5, 2, 4),), 1)
MODELS["conv3d-transpose"] = (
    lambda: nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(),
                          nn.ConvTranspose3d(4, 3, 2, stride=2)),
    lambda: (torch.randn(2, 2, 4, 4, 4),), 0)
# one of each mapped kind in the default run (attention, recurrent, grouped conv, 3-D and
# transposed conv); every model of MODELS in the slow run
FAST = ["encoder-batchfirst-prenorm", "audio-seqfirst", "mobilenet", "conv3d-transpose"]
_SLOW = [pytest.param(n, marks=pytest.mark.slow) for n in MODELS if n not in FAST]


def _build(name: str):
    make, data, batch_dim = MODELS[name]
    torch.manual_seed(0)
    model = make().eval()
    torch.manual_seed(1)
    return model, data(), batch_dim


def _out(y):
    return y[0] if isinstance(y, tuple) else y  # an RNN's (output, h_n)


def _deploy(name: str, chip, **kw):
    model, args, batch_dim = _build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the GPT's embedding stays digital
        sim = cimsim.deploy(model, chip, args, batch_dim=batch_dim, seed=2, **kw)
    return sim, model, args


def _quiet_rram():
    """rram-22nm (small arrays) with its variation, its conversion noise off."""
    return _rram().replace(noise=_rram().noise.replace(thermal_sigma_lsb=0.0))


# ---------------------------------------------------------------------------------------------
# 1. torch backend
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["lossless", "rram-noise-free"])
@pytest.mark.parametrize("name", FAST + _SLOW)
def test_torch_backend_equals_the_engine_noise_free(name, chip):
    cfg = lossless_chip("channel") if chip == "lossless" else _quiet_rram()
    numba, _, args = _deploy(name, cfg)
    sim, _, _ = _deploy(name, cfg, backend="torch")
    # the engine's float32 operands, its order of sums: bit for bit on lossy chips too
    assert torch.equal(_out(numba(*args)), _out(sim(*args)))
    _same_counts(numba, sim)


def _same_counts(numba, sim) -> None:
    for w1, w2 in zip(numba.works(), sim.works(), strict=True):
        assert set(w1.events) == set(w2.events), w1.name
        for key, value in w1.events.items():
            assert w2.events[key] == pytest.approx(value, rel=1e-9), (w1.name, key)
        assert w1.n_adc_clipped == w2.n_adc_clipped, w1.name
    r1, r2 = numba.report().totals, sim.report().totals
    for key in ("energy_pj_per_inference", "latency_ns_per_inference", "area_mm2"):
        assert r2[key] == pytest.approx(r1[key], rel=1e-9), key


def test_use_backend_switches_a_deployed_zoo_model_and_back():
    sim, _, args = _deploy("audio-batchfirst", lossless_chip("channel"))
    y = sim(*args)
    events = sim.events
    assert torch.equal(sim.use_backend("torch")(*args), y)
    assert sim.backend == "torch" and sim.events == events + events
    assert torch.equal(sim.use_backend("numba")(*args), y)


@pytest.mark.parametrize("name", ["audio-batchfirst", "encoder-seqfirst-postnorm"])
def test_torch_backend_with_noise_counts_what_the_engine_counts(name):
    """Other draws of the same noise: the static counts (conversions, MACs) agree exactly, the
    data-dependent ones (pulses, cell reads) and the costs within a few per cent (the noise
    moves the next layer's inputs, and a recurrence feeds its own)."""
    numba, model, args = _deploy(name, _rram())
    sim, _, _ = _deploy(name, _rram(), backend="torch")
    y1, y2 = _out(numba(*args)), _out(sim(*args))
    with torch.no_grad():
        want = _out(model(*args))
    assert not torch.equal(y1, y2)  # noise on
    e1 = float((y1 - want).norm() / want.norm())
    e2 = float((y2 - want).norm() / want.norm())
    assert 0.3 < e2 / e1 < 3.0
    for w1, w2 in zip(numba.works(), sim.works(), strict=True):
        assert set(w1.events) == set(w2.events)
        assert w2.n_adc_conversions == w1.n_adc_conversions
    # the model's totals (a small layer's few pulses move by more than the whole)
    assert set(numba.events) == set(sim.events)
    for key, value in numba.events.items():
        assert sim.events[key] == pytest.approx(value, rel=0.05), key
    r1, r2 = numba.report().totals, sim.report().totals
    assert r2["energy_pj_per_inference"] == pytest.approx(r1["energy_pj_per_inference"],
                                                          rel=0.02)


@pytest.mark.parametrize("compensation", ["none", "global"])
@pytest.mark.parametrize("name", FAST)
def test_torch_backend_runs_an_aging_chip_as_the_engine(name, compensation):
    """pcm-22nm (small arrays, conversion and 1/f read noise off): the same outputs bit for
    bit at t0 and later (set_time), the same events (the compensation's included)."""
    base = cimsim.load_chip("pcm-22nm")
    chip = base.replace(array=base.array.replace(n_rows=64, n_cols=32),
                        noise=base.noise.replace(thermal_sigma_lsb=0.0),
                        device=base.device.replace(read_noise_q_s=(),
                                                   drift_compensation=compensation))
    numba, _, args = _deploy(name, chip)
    sim, _, _ = _deploy(name, chip, backend="torch")
    for t in (1.0, 86400.0, 3.15e7):
        numba.set_time(t)
        sim.set_time(t)
        assert torch.equal(_out(numba(*args)), _out(sim(*args))), t
    _same_counts(numba, sim)


@pytest.mark.parametrize("name", FAST)
def test_twin_trains_for_an_aging_chip_a_year_on(name):
    """pcm-22nm (small arrays, conversion and 1/f read noise off, global compensation): the
    twin prepared for a year after programming computes what deploy gives a year on, on
    attention, recurrent, grouped, 3-D and transposed layers, and its hand-back deploys at
    that year."""
    from cimsim.train import prepare

    base = cimsim.load_chip("pcm-22nm")
    chip = base.replace(array=base.array.replace(n_rows=64, n_cols=32),
                        noise=base.noise.replace(thermal_sigma_lsb=0.0),
                        device=base.device.replace(read_noise_q_s=()))
    numba, model, args = _deploy(name, chip, t_inference_s=3.15e7)
    _, _, batch_dim = _build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prep = prepare(model, chip, args, seed=2, batch_dim=batch_dim,
                       t_inference_s=3.15e7).eval()
        back = prep.deploy()
    assert back.t_s == 3.15e7
    with torch.no_grad():
        y_twin = _out(prep(*args))
    y_chip = _out(numba(*args))
    scale = float(y_chip.abs().max())
    assert float((y_twin - y_chip).abs().max()) <= 1e-3 * scale  # ~1e-7 seen
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fresh = prepare(model, chip, args, seed=2, batch_dim=batch_dim).eval()
    with torch.no_grad():  # the time matters: the twin of the programmed state is off
        assert float((_out(fresh(*args)) - y_chip).abs().max()) > 1e-2 * scale
    assert torch.allclose(_out(back(*args)), y_chip, rtol=1e-5, atol=1e-5 * scale)


def _bent_rram():
    """``_quiet_rram`` with saturating columns, asymmetric activations and smoothing."""
    chip = _quiet_rram()
    return chip.replace(noise=chip.noise.replace(nonlinearity="saturating",
                                                 saturation_fraction=0.05),
                        quant=chip.quant.replace(act_zero_point=True, smooth_alpha=0.5))


@pytest.mark.parametrize("name", FAST)
def test_torch_backend_and_twin_run_bent_columns_zero_points_and_smoothing(name):
    """Column non-linearity, activation zero points and smoothing used to be refused by the
    torch backend and the twin: both now compute them as the engine does (the backend bit for
    bit; the twin within float32 ties: the zoo's models are float32)."""
    from cimsim.train import prepare

    chip = _bent_rram()
    numba, model, args = _deploy(name, chip)
    sim, _, _ = _deploy(name, chip, backend="torch")
    y_chip = _out(numba(*args))
    assert torch.equal(y_chip, _out(sim(*args)))
    _same_counts(numba, sim)
    _, _, batch_dim = _build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prep = prepare(model, chip, args, seed=2, batch_dim=batch_dim).eval()
    with torch.no_grad():
        y_twin = _out(prep(*args))
    scale = float(y_chip.abs().max())
    assert float((y_twin - y_chip).abs().max()) <= 1e-3 * scale


# ---------------------------------------------------------------------------------------------
# 2. report
# ---------------------------------------------------------------------------------------------
_KINDS = {"encoder-batchfirst-prenorm": {"attention": 2, "linear": 5},
          "audio-seqfirst": {"conv": 1, "recurrent": 2, "linear": 1},
          "mobilenet": {"conv": 5, "linear": 1},
          "conv3d-transpose": {"conv": 1, "conv_transpose": 1}}


@pytest.mark.parametrize("name", FAST + _SLOW)
def test_report_rows_sum_to_the_totals_and_the_files_hold_every_layer(name, tmp_path):
    sim, _, args = _deploy(name, _rram())
    sim(*args)
    report = sim.report()
    layers = report.layers
    assert list(layers["layer"]) == list(sim.sim_layers)
    if name in _KINDS:
        assert layers["kind"].value_counts().to_dict() == _KINDS[name]
    # one matrix per MHA projection set (in, out: q, k, v, out), RNN weight, conv group
    for row in layers.itertuples():
        layer = sim.sim_layers[row.layer]
        assert row.n_matrices == len(layer.cores), row.layer
    for key in ("energy_pj_per_inference", "latency_ns_per_inference"):
        assert math.isfinite(report.totals[key]) and report.totals[key] > 0
        assert layers[key].sum() == pytest.approx(report.totals[key], rel=1e-9), key
    assert layers["area_um2"].sum() / 1e6 == pytest.approx(report.totals["area_mm2_used"],
                                                           rel=1e-9)
    by_layer = report.components.groupby("layer")["energy_pj_per_inference"].sum()
    for row in layers.itertuples():
        assert by_layer[row.layer] == pytest.approx(row.energy_pj_per_inference, rel=1e-9)
    numeric = layers.select_dtypes("number")
    assert np.isfinite(numeric.to_numpy(dtype=float)).all()
    # the files, and `cimsim report` re-rendering them
    report.save(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    again = Report.load(tmp_path)
    pd.testing.assert_frame_equal(again.layers, layers, check_dtype=False)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    for layer in list(sim.sim_layers) + list(report.digital["layer"]):
        assert layer in html, layer


def test_report_lists_functional_weights_and_attention_products_as_digital(tmp_path):
    from tests.mapping.test_new_models import Functional

    torch.manual_seed(0)
    model = nn.Sequential(Functional(), nn.Linear(3, 2)).eval()
    with pytest.warns(UserWarning, match="weight"):
        sim = cimsim.deploy(model, _rram(), torch.randn(4, 8))
    sim(torch.randn(4, 8))
    digital = sim.report().digital
    assert set(digital["layer"]) == {"0.w", "0.weight"}
    assert set(digital["type"]) == {"parameter"}
    enc, _, args = _deploy("encoder-batchfirst-prenorm", _rram())
    enc(*args)
    assert list(enc.report().digital["type"]) == ["attention products"] * 2
    sim.report().save(tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert {r["layer"] for r in saved["digital"]} == {"0.w", "0.weight"}


# ---------------------------------------------------------------------------------------------
# 3. command line with a user's model
# ---------------------------------------------------------------------------------------------
USER_MODULE = '''
import torch
from tests.mapping.test_new_models import AudioNet, GPT


def gpt():
    torch.manual_seed(0)
    return GPT()


def audio():
    torch.manual_seed(0)
    return AudioNet(True)
'''


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A folder with a model module (as a user's own) and data files, as the current folder;
    the folder is not on sys.path (the installed ``cimsim`` script does not put it there)."""
    name = f"zoo_user_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    g = torch.Generator().manual_seed(0)
    np.savez(tmp_path / "tokens.npz", x=torch.randint(0, 20, (12, 8), generator=g).numpy())
    np.savez(tmp_path / "audio.npz", x=torch.randn(16, 4, 20, generator=g).numpy(),
             y=torch.randint(0, 3, (16,), generator=g).numpy())
    np.savez(tmp_path / "images_u8.npz",
             x=torch.randint(0, 256, (6, 3, 16, 16), generator=g).numpy().astype(np.uint8))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield tmp_path, name
    sys.modules.pop(name, None)


def test_simulate_a_token_model_from_the_current_folder(user_dir, capsys):
    """Two failures: the module in the current folder was not found by the installed script
    ("cannot import module"), and the token ids were made float32 ("Expected tensor for
    argument #1 'indices' to have one of the following scalar types: Long, Int")."""
    folder, mod = user_dir
    with pytest.warns(UserWarning, match="emb"):
        rc = main(["simulate", "--model", f"{mod}:gpt", "--data", "tokens.npz", "--chip",
                   "rram-22nm", "--out", "sim", "--calibration", "8"])
    assert rc == 0, capsys.readouterr().err
    saved = json.loads((folder / "sim" / "report.json").read_text())
    assert [r["layer"] for r in saved["layers"]][-1] == "head"
    assert 0.5 < saved["summary"]["output_cosine"] <= 1.0 and saved["summary"]["n_eval_inputs"] == 4
    assert ("emb", "Embedding") in {(r["layer"], r["type"]) for r in saved["digital"]}


def test_integer_images_still_reach_a_float_model(user_dir, capsys):
    """uint8 images: kept integer for a token model, made float32 for a model that takes
    floats (as before)."""
    folder, _ = user_dir
    (folder / "mob.py").write_text("from tests.mapping.test_new_models import MobileBlock\n")
    rc = main(["simulate", "--model", "mob.py:MobileBlock", "--data", "images_u8.npz",
               "--chip", "ideal", "--out", "u8", "--calibration", "4"])
    assert rc == 0, capsys.readouterr().err
    assert (folder / "u8" / "report.html").is_file()
    sys.modules.pop("mob", None)


def test_integer_data_a_model_refuses_either_way_says_both(user_dir, capsys):
    _, mod = user_dir
    rc = main(["simulate", "--model", f"{mod}:audio", "--data", "tokens.npz", "--chip", "ideal",
               "--out", "no"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert re.search(r"cannot run on the data's inputs of shape \(2, 8\): .*; as int64 \(token "
                     r"ids\): RuntimeError", err), err


def test_sweep_on_a_user_model_resumes_without_duplicates(user_dir, capsys):
    folder, mod = user_dir
    argv = ["sweep", "--model", f"{mod}:audio", "--data", "audio.npz", "--chip", "rram-22nm",
            "--adc-bits", "4,6", "--out", "sw", "--calibration", "8", "--limit", "12"]
    assert main(argv) == 0, capsys.readouterr().err
    first = pd.read_csv(folder / "sw" / "sweep.csv")
    assert main(argv) == 0
    assert "resumed: 2 of 2 points" in capsys.readouterr().out
    lines = (folder / "sw" / "sweep.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len({json.loads(ln)["point_id"] for ln in lines}) == 2
    again = pd.read_csv(folder / "sw" / "sweep.csv")
    assert len(again) == 2 and list(again["point_id"]) == list(first["point_id"])
    assert again["accuracy"].between(0, 1).all() and (again["status"] == "ok").all()
    assert (folder / "sw" / "pareto.png").stat().st_size > 0


def test_sweep_without_labels_records_the_output_cosine(user_dir, capsys):
    """A GPT's tokens have no labels: the sweep recorded costs and no fidelity at all."""
    folder, mod = user_dir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the embedding stays digital
        rc = main(["sweep", "--model", f"{mod}:gpt", "--data", "tokens.npz", "--chip",
                   "rram-22nm", "--adc-bits", "3,6", "--out", "sw", "--calibration", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "cosine" in out
    frame = pd.read_csv(folder / "sw" / "sweep.csv")
    assert frame["accuracy"].isna().all() and not frame["on_front"].any()
    cos = frame.set_index("adc_bits")["output_cosine"]
    assert 0.0 < cos[3] < cos[6] <= 1.0  # more ADC bits, closer to float


def test_train_a_user_model_end_to_end(user_dir, capsys):
    folder, mod = user_dir
    argv = ["train", "--model", f"{mod}:audio", "--data", "audio.npz", "--chip", "rram-22nm",
            "--out", "tr", "--limit", "8", "--calibration", "4", "--batch-size", "4"]
    assert main(argv) == 0, capsys.readouterr().err
    log = json.loads((folder / "tr" / "training.json").read_text())
    assert log["epochs"] == 1 and len(log["loss"]) == 1 and math.isfinite(log["loss"][0])
    saved = json.loads((folder / "tr" / "report.json").read_text())
    assert [r["kind"] for r in saved["layers"]] == ["conv", "recurrent", "recurrent", "linear"]
    assert 0.0 <= saved["summary"]["simulated_accuracy"] <= 1.0


# ---------------------------------------------------------------------------------------------
# 4. drift
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["audio-seqfirst", "encoder-batchfirst-prenorm",
                                  "conv3d-transpose", "rnn-relu"])
def test_drift_moves_a_zoo_model_and_compensation_brings_it_back(name):
    """pcm-22nm (small arrays, conversion and 1/f read noise off: the devices alone move):
    without compensation the outputs drift away from float with time, global compensation
    keeps them near t0, and going back to t0 gives t0's outputs bit for bit (docs/drift.md)."""
    base = cimsim.load_chip("pcm-22nm")
    quiet = base.replace(array=base.array.replace(n_rows=64, n_cols=32),
                         noise=base.noise.replace(thermal_sigma_lsb=0.0),
                         device=base.device.replace(read_noise_q_s=()))
    model, args, _ = _build(name)
    with torch.no_grad():
        want = _out(model(*args))
    errors = {}
    for comp in ("none", "global"):
        chip = quiet.replace(device=quiet.device.replace(drift_compensation=comp))
        sim, _, _ = _deploy(name, chip)
        outs = []
        for t in (1.0, 86400.0, 3.15e7, 1.0):
            sim.reset()
            sim.set_time(t)
            outs.append(_out(sim(*args)))
        assert torch.equal(outs[0], outs[3])
        errors[comp] = [float((y - want).norm() / want.norm()) for y in outs[:3]]
        assert math.isfinite(sim.report().totals["energy_pj_per_inference"])
        if comp == "global":  # priced as docs/drift.md §3 says, and as that alone
            sim.reset()
            sim.set_time(3.15e7)
            sim(*args)
            assert sim.events[EventKey(Component.DIGITAL, Action.DRIFT_GAIN_MULTIPLY, 0)] > 0
            assert not [k for k in sim.events if k.action is Action.SLICE_MULTIPLY]
    none, glob = errors["none"], errors["global"]
    assert none[0] == glob[0]  # t0: nothing to compensate
    assert none[0] < none[1] < none[2]
    assert glob[2] < none[2]


def test_drift_gain_is_not_also_charged_as_slice_multiplies():
    """The compensation's gain is folded into the conversions' digital weights; those weights
    were then no powers of two, and every conversion was charged a ``digital.slice_multiply``
    on top of the gain's own multiplies: a zoo model on pcm-22nm cost 40 % more energy per
    inference one day after programming than at t0."""
    chip = cimsim.load_chip("pcm-22nm")
    w = np.random.default_rng(0).integers(-127, 128, (8, 40))
    layer = program(w, chip, np.random.default_rng(1))
    later = layer.with_time(86400.0)
    assert np.any(later.conv_coef != layer.conv_coef)  # the gain is folded in
    assert later.n_slice_multiplies == layer.n_slice_multiplies == 0
    # weights that are no powers of two (ColumnQuant's alphas) are still counted, and keep
    # their gain at a later time (with_time used to go back to the programmed weights)
    coef = layer.conv_coef * 1.5
    alphas = later.with_conv_coef(coef)
    assert alphas.n_slice_multiplies == np.count_nonzero(coef)
    np.testing.assert_allclose(alphas.conv_coef, coef * later.aging.gain)
    np.testing.assert_allclose(alphas.with_time(1.0).conv_coef, coef)


# ---------------------------------------------------------------------------------------------
# exported graphs (.pt2) of zoo models: what stays digital is listed, computed weights fold
# ---------------------------------------------------------------------------------------------
def _exported(model: nn.Module, x: torch.Tensor) -> nn.Module:
    from cimsim.mapping.loaders import modules_from_graph

    batch = torch.export.Dim("batch", min=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecation notes
        ep = torch.export.export(model.eval(), (x,), dynamic_shapes=({0: batch},))
        return modules_from_graph(ep.module())


def test_exported_transformer_lists_its_embedding_and_attention_products():
    """The embedding and the attention products of a .pt2 ran in float unlisted (the digital
    table was empty); a Python model lists both."""
    from tests.mapping.test_new_models import GPT

    torch.manual_seed(0)
    x = torch.randint(0, 20, (4, 8))
    model = GPT().eval()
    graph = _exported(model, x)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x))
    with pytest.warns(UserWarning, match=r"emb \(Embedding\)"):  # its module's name
        sim = cimsim.deploy(graph, lossless_chip("channel"), x)
    kinds = [kind for _, kind, _ in sim.digital]
    assert kinds == ["Embedding", "attention products", "attention products"]
    assert len(sim.sim_layers) == 9  # 2 x (in, out, 2 FFN) + the head
    sim(x)
    assert list(sim.report().digital["type"]) == kinds


def test_exported_functional_weight_is_named_as_for_a_python_model():
    """``x @ self.w`` in a .pt2 is an aten.matmul: it ran in float without the warning."""
    from tests.mapping.test_new_models import Functional

    torch.manual_seed(0)
    x = torch.randn(4, 8)
    graph = _exported(Functional(), x)
    with pytest.warns(UserWarning, match=r"1 weight\(s\).*w \(matmul"):
        sim = cimsim.deploy(graph, lossless_chip("channel"), x)
    assert [(name, kind) for name, kind, _ in sim.digital] == [("w", "parameter")]


def test_exported_weight_norm_model_loads_with_its_folded_weights():
    """weight_norm / spectral_norm export the weight as a computation on constants: loading
    the .pt2 failed ("weight _weight_norm is computed in the graph")."""
    from tests.mapping.test_new_models import Normed

    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    model = Normed().eval()
    graph = _exported(model, x)
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x))
    sim = cimsim.deploy(graph, lossless_chip("channel"), x)
    assert len(sim.sim_layers) == 3 and not sim.digital
    assert float((sim(x) - model(x)).norm() / model(x).norm()) < 0.02


@pytest.mark.parametrize("method", ["qat", "distill"])
def test_train_an_exported_model(method, tmp_path, capsys):
    """``cimsim train --model M.pt2`` ended in torch's "Calling train() is not supported yet"
    (an exported module refuses train()/eval(); the twin inside it switches modes)."""
    from tests.mapping.test_new_models import MobileBlock

    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    ep = torch.export.export(MobileBlock().eval(), (x[:4],),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=2)},))
    torch.export.save(ep, tmp_path / "mobile.pt2")
    np.savez(tmp_path / "data.npz", x=x.numpy(), y=np.arange(8) % 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        rc = main(["train", "--model", str(tmp_path / "mobile.pt2"), "--data",
                   str(tmp_path / "data.npz"), "--chip", "ideal", "--method", method, "--out",
                   str(tmp_path / "out"), "--calibration", "4", "--batch-size", "3"])
    assert rc == 0, capsys.readouterr().err
    log = json.loads((tmp_path / "out" / "training.json").read_text())
    assert log["method"] == method and math.isfinite(log["loss"][0])
    assert (tmp_path / "out" / "report.html").is_file()
