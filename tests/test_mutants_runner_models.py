"""Tests from a mutation round over the sweep runner and Dask driver, the atomic writer, the ADC
survey fits, the digits data and demo models, the ImageNet architectures, the NumPy reference
matmul and the fused activation ADC: ``cimsim/sweep/runner.py``, ``sweep/cluster.py``,
``_atomic.py``, ``cost/adc_survey.py``, ``data/digits.py``, ``models/_common.py``,
``models/imagenet.py``, ``models/digits_cnn.py``, ``models/resnet_digits.py``,
``arrays/_reference.py`` and ``adc/activation.py``.

Each test pins behaviour that a mutant of those files changed without any other test noticing
(a fit's exponent or family, a record's warnings or measured totals, a lost Dask point, an
orphaned temporary file, a lock's holder, a training argument dropped on the way, a residual
or initialisation of an architecture), with hand-computed answers or relations. All use toy
modules, fakes in place of process pools and Dask clusters, and run in well under a second
each.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import cimsim
from cimsim import _atomic
from cimsim.config import ADCKind
from cimsim.cost import adc_survey
from cimsim.errors import CimsimError, ConfigError


# ---------------------------------------------------------------------------------------------
# cost/adc_survey.py
# ---------------------------------------------------------------------------------------------
def test_fom_scales_with_node_to_the_fit_slope_and_with_supply_squared():
    # SAR: FOM_45 = 5.68 fJ, slope 0.30; at 90 nm and twice the reference supply
    assert adc_survey.fom_w_fj(ADCKind.SAR, 90.0, 1.6) == pytest.approx(5.68 * 2**0.30 * 4)
    assert adc_survey.fom_w_fj(ADCKind.FLASH, 22.5) == pytest.approx(59.32 * 0.5**0.82)


def test_steps_areas_and_scatter_by_hand():
    assert adc_survey.steps(ADCKind.FLASH, 4) == 15  # one comparator per threshold
    assert adc_survey.steps(ADCKind.SAR, 4) == 16
    assert adc_survey.steps(ADCKind.RAMP, 3) == 8
    assert adc_survey.step_area_um2(ADCKind.SAR, 22.0) == pytest.approx(4895.0 * 0.022**2)
    assert adc_survey.step_area_um2(ADCKind.CCO, 100.0) == pytest.approx(11892.0 * 0.01)
    assert adc_survey.scatter_factor(ADCKind.CCO) == pytest.approx(math.exp(1.45))
    # a b-bit DAC: the SAR area per step times 2^b unit elements
    assert adc_survey.dac_area_um2(4, 22.0) == pytest.approx(4895.0 * 0.022**2 * 16)


def test_each_kind_is_priced_by_its_documented_family():
    kinds = (ADCKind.SAR, ADCKind.FLASH, ADCKind.RAMP, ADCKind.SINGLE_SLOPE, ADCKind.CCO,
             ADCKind.INTEGRATE_FIRE)
    family = {k: adc_survey.family_of(k).family for k in kinds}
    assert family == {ADCKind.SAR: "sar", ADCKind.FLASH: "flash", ADCKind.RAMP: "flash",
                      ADCKind.SINGLE_SLOPE: "flash", ADCKind.CCO: "time",
                      ADCKind.INTEGRATE_FIRE: "time"}


def test_rate_exponent_is_the_speed_caps_slope_in_energy():
    assert adc_survey.RATE_EXPONENT == pytest.approx(2.8719 * math.log(10) / 10)
    assert adc_survey.RATE_EXPONENT == pytest.approx(0.661, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# data/digits.py
# ---------------------------------------------------------------------------------------------
def test_split_size_is_rounded_and_pixels_scaled_by_16():
    from cimsim.data import load_digits_split

    x_train, _, x_test, _ = load_digits_split(test_fraction=0.1)
    assert len(x_test) == 180 and len(x_train) == 1617  # round(179.7), not int()
    pixels = torch.cat([x_train, x_test])
    assert pixels.max() == 1.0 and torch.equal(pixels * 16, torch.round(pixels * 16))


def test_split_refuses_an_infinite_fraction_as_a_config_error():
    from cimsim.data import load_digits_split

    for bad in (math.inf, math.nan):
        with pytest.raises(ConfigError, match="test_fraction"):
            load_digits_split(test_fraction=bad)


# ---------------------------------------------------------------------------------------------
# models/_common.py
# ---------------------------------------------------------------------------------------------
class _Recorder(nn.Module):
    """A classifier of one feature that records every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 10)
        self.seen: list[list[int]] = []

    def forward(self, x):
        self.seen.append(x[:, 0].long().tolist())
        return self.fc(x)


def test_fit_classifier_batches_follow_the_seeded_generator_and_cover_every_sample():
    from cimsim.models._common import fit_classifier

    x, y = torch.arange(10.0)[:, None], torch.arange(10) % 10
    model = fit_classifier(_Recorder, x, y, seed=3, epochs=2, batch_size=4, lr=1e-3)
    gen = torch.Generator().manual_seed(3)
    expected = []
    for _ in range(2):
        order = torch.randperm(10, generator=gen).tolist()
        expected += [order[0:4], order[4:8], order[8:10]]
    assert model.seen == expected
    assert not model.training


def test_fit_classifier_passes_weight_decay_and_anneals_over_the_epochs(monkeypatch):
    from cimsim.models import _common

    made, steps = {}, []
    real_adam, real_cos = torch.optim.Adam, torch.optim.lr_scheduler.CosineAnnealingLR

    def adam(params, **kw):
        made["adam"] = kw
        return real_adam(params, **kw)

    class Cosine(real_cos):
        def __init__(self, opt, T_max):
            made["T_max"] = T_max
            super().__init__(opt, T_max=T_max)
            steps.clear()  # (the constructor's own initial step)

        def step(self, *a):
            steps.append(1)
            super().step(*a)

    monkeypatch.setattr(torch.optim, "Adam", adam)
    monkeypatch.setattr(torch.optim.lr_scheduler, "CosineAnnealingLR", Cosine)
    x, y = torch.arange(4.0)[:, None], torch.arange(4)
    _common.fit_classifier(_Recorder, x, y, seed=0, epochs=3, batch_size=4, lr=0.5,
                           weight_decay=0.25, cosine_lr=True)
    assert made == {"adam": {"lr": 0.5, "weight_decay": 0.25}, "T_max": 3}
    assert len(steps) == 3  # once per epoch


def test_fit_classifier_refuses_zero_epochs():
    from cimsim.models._common import fit_classifier

    with pytest.raises(ConfigError, match="epochs"):  # it returned an untrained model
        fit_classifier(_Recorder, torch.zeros(2, 1), torch.zeros(2, dtype=torch.int64), seed=0,
                       epochs=0, batch_size=1, lr=1e-3)


def test_deterministic_cpu_restores_threads_and_warn_only():
    from cimsim.models._common import deterministic_cpu

    threads = torch.get_num_threads()
    det, warn_only = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.set_num_threads(2)
        torch.use_deterministic_algorithms(True, warn_only=True)
        with deterministic_cpu(0):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)


def test_weights_round_trip_int32_buffers_into_a_new_folder(tmp_path):
    from cimsim.models._common import _read_state, load_state, save_weights

    model = nn.Linear(2, 2)
    model.register_buffer("count", torch.tensor([3, 4], dtype=torch.int32))
    path = tmp_path / "new" / "deeper" / "w.npz"
    save_weights(model, path)  # an int32 buffer is saved (as int64), the folders made
    state = _read_state(path)
    assert state["count"].dtype == torch.int64 and state["count"].tolist() == [3, 4]
    assert state["weight"].dtype == torch.float32
    fresh = nn.Linear(2, 2)
    fresh.register_buffer("count", torch.zeros(2, dtype=torch.int32))
    fresh.train()
    assert load_state(fresh, path, "unused.npz") is fresh and not fresh.training
    assert torch.equal(fresh.weight, model.weight) and fresh.count.tolist() == [3, 4]


# ---------------------------------------------------------------------------------------------
# models/digits_cnn.py, models/resnet_digits.py
# ---------------------------------------------------------------------------------------------
def test_train_digits_cnn_passes_its_arguments_on(monkeypatch):
    from cimsim.models import digits_cnn

    got = {}

    def split(test_fraction, seed):
        got["split"] = (test_fraction, seed)
        return torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.int64), None, None

    def fit(build, x, y, **kw):
        got["fit"] = kw
        return build()

    monkeypatch.setattr(digits_cnn, "load_digits_split", split)
    monkeypatch.setattr(digits_cnn, "fit_classifier", fit)
    digits_cnn.train_digits_cnn(seed=5, epochs=2, batch_size=3, lr=0.1, weight_decay=0.01,
                                test_fraction=0.3, split_seed=7)
    assert got == {"split": (0.3, 7), "fit": {"seed": 5, "epochs": 2, "batch_size": 3,
                                               "lr": 0.1, "weight_decay": 0.01}}


def test_train_resnet_digits_uses_the_cosine_schedule(monkeypatch):
    from cimsim.models import resnet_digits

    got = {}

    def fit(build, x, y, **kw):
        got.update(kw)
        return build()

    monkeypatch.setattr(resnet_digits, "fit_classifier", fit)
    resnet_digits.train_resnet_digits(seed=1, epochs=2, batch_size=3, lr=0.1, weight_decay=0.5)
    assert got == {"seed": 1, "epochs": 2, "batch_size": 3, "lr": 0.1, "weight_decay": 0.5,
                   "cosine_lr": True}


def test_the_loaders_read_the_given_file(tmp_path):
    from cimsim.models import (
        DigitsCNN,
        ResNetDigits,
        load_digits_cnn,
        load_resnet_digits,
        save_weights,
    )

    for build, load in ((DigitsCNN, load_digits_cnn), (ResNetDigits, load_resnet_digits)):
        model = build()
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.125)
        save_weights(model, tmp_path / "w.npz")
        loaded = load(tmp_path / "w.npz")
        assert all(bool((p == 0.125).all()) for p in loaded.parameters())


def test_resnet_digits_block_shortcuts_and_stage_strides():
    from cimsim.models.resnet_digits import BasicBlock, ResNetDigits

    block = BasicBlock(2, 4)  # a change of width alone needs the projection
    assert isinstance(block.shortcut, nn.Sequential)
    assert block(torch.rand(1, 2, 4, 4)).shape == (1, 4, 4, 4)
    model = ResNetDigits(widths=(2, 3, 4), blocks=2).eval()
    x = model.stem(torch.rand(1, 1, 8, 8))
    assert model.stage1(x).shape == (1, 2, 16, 16)  # the first stage keeps the side
    assert model.stage2(model.stage1(x)).shape == (1, 3, 8, 8)
    with pytest.raises(ConfigError, match="widths"):
        ResNetDigits(widths=(2, 3, 4, 5))


# ---------------------------------------------------------------------------------------------
# models/imagenet.py
# ---------------------------------------------------------------------------------------------
def test_make_divisible_rounds_to_nearest_and_never_down_by_over_ten_percent():
    from cimsim.models.imagenet import _make_divisible

    assert _make_divisible(100) == 104  # nearest multiple of 8, not floor (96)
    assert _make_divisible(9) == 16  # 8 would be 11 % down
    assert _make_divisible(32) == 32 and _make_divisible(3) == 8


def test_mobilenet_last_channel_is_never_below_1280_and_strides_once_per_stage():
    from cimsim.models.imagenet import InvertedResidual, mobilenet_v2

    model = mobilenet_v2(num_classes=10, width_mult=0.25)
    assert model.last_channel == 1280
    strides = [m.stride for m in model.features if isinstance(m, InvertedResidual)]
    assert strides == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    linear = model.classifier[1]
    assert 0.005 < float(linear.weight.detach().std()) < 0.015  # N(0, 0.01), torchvision's


def test_inverted_residual_adds_its_input_where_the_shape_is_kept():
    from cimsim.models.imagenet import InvertedResidual

    torch.manual_seed(0)
    block = InvertedResidual(8, 8, 1, 6).eval()
    nn.init.zeros_(block.conv[-1].weight)  # the projection's BatchNorm outputs zeros
    x = torch.rand(1, 8, 4, 4)
    with torch.no_grad():
        assert torch.equal(block(x), x)


def test_resnet18_convolutions_use_kaiming_fan_out():
    from cimsim.models.imagenet import resnet18

    conv = resnet18(num_classes=10, width=8).conv1  # 8 x 3 x 7 x 7: fan_out 392, fan_in 147
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / 392), rel=0.1)


def test_vit_blocks_are_pre_norm_residuals_and_the_head_reads_the_class_token():
    from cimsim.models.imagenet import EncoderBlock, vit_tiny

    torch.manual_seed(0)
    block = EncoderBlock(6, 3).eval()
    nn.init.zeros_(block.attn.out_proj.weight)
    nn.init.zeros_(block.attn.out_proj.bias)  # attention adds nothing: x + mlp(norm2(x))
    x = torch.rand(2, 5, 6) * 4
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.mlp(block.norm2(x)))
    model = vit_tiny(num_classes=4, image=32, depth=0, dim=6)
    assert float(model.cls_token.detach().abs().sum()) > 0  # N(0, 0.02), not zeros
    with torch.no_grad():  # no blocks: the class token's logits ignore the image
        torch.testing.assert_close(model(torch.rand(1, 3, 32, 32)), model(torch.rand(1, 3, 32, 32)))


# ---------------------------------------------------------------------------------------------
# sweep/runner.py
# ---------------------------------------------------------------------------------------------
def _sweep_ctx(model=None, **kw):
    from cimsim.sweep.runner import SweepContext

    base = {"model": model, "chip": cimsim.load_chip("ideal"), "x_cal": None, "x_eval": None,
            "y_eval": None, "seed": 0, "batch_size": 16}
    return SweepContext(**(base | kw))


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).eval(), torch.randn(5, 8)


def test_measure_without_labels_scores_against_the_given_reference():
    from cimsim.sweep.runner import _measure

    model, x = _tiny()
    chip = cimsim.load_chip("ideal")
    row = _measure(model, chip, x, x, None, 0, 16)
    assert row["output_cosine"] == pytest.approx(1.0, abs=1e-3) and math.isnan(row["accuracy"])
    negated = nn.Sequential(model, nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        negated[1].weight.copy_(-torch.eye(3))
    row = _measure(model, chip, x, x, None, 0, 16, reference=negated)
    assert row["output_cosine"] == pytest.approx(-1.0, abs=1e-3)


def test_measure_adc_area_and_exclude():
    from cimsim.events import Component
    from cimsim.sweep.runner import _measure

    model, x = _tiny()
    chip = cimsim.load_chip("rram-22nm")
    row = _measure(model, chip, x, x, torch.zeros(5, dtype=torch.int64), 0, 16)
    sim = cimsim.deploy(model, chip, x, seed=0, progress=False)
    sim(x)
    area = sim.report().area
    adc = float(area.loc[area["component"] == Component.ADC, "area_um2"].sum())
    assert adc > 0 and row["adc_area_mm2"] == pytest.approx(adc * 1e-6)
    kept = _measure(model, chip, x, x, torch.zeros(5, dtype=torch.int64), 0, 16,
                    exclude=("0",))
    assert kept["n_arrays"] < row["n_arrays"]


def test_measure_deploys_a_trained_twin_at_the_points_time_and_scores_its_float_model(
        monkeypatch):
    from cimsim.sweep import runner

    model, x = _tiny()
    negated = nn.Sequential(model, nn.Linear(3, 3, bias=False))
    with torch.no_grad():
        negated[1].weight.copy_(-torch.eye(3))
    chip = cimsim.load_chip("ideal")
    times = []

    class Twin:
        def deploy(self, seed, *, chip, t_inference_s):
            times.append(t_inference_s)
            return cimsim.deploy(model, chip, x, seed=seed, progress=False)

        def float_model(self):
            return negated

    monkeypatch.setattr(runner, "prepared_model", lambda m: isinstance(m, Twin))
    row = runner._measure(Twin(), chip, None, x, None, 0, 16)
    assert row["output_cosine"] == pytest.approx(-1.0, abs=1e-3)
    runner._measure(Twin(), chip, None, x, None, 0, 16, t_inference_s=5.0)
    assert times == [chip.device.drift_t0_s, 5.0]


def test_run_point_passes_the_points_time_and_records_its_warnings_once(monkeypatch):
    from cimsim.sweep import runner

    seen = []

    def measure(model, chip, x_cal, x_eval, y_eval, seed, batch_size, t, exclude, ref):
        seen.append((t, exclude))
        for _ in range(2):
            warnings.warn("two  words\n here", UserWarning, stacklevel=1)
        warnings.warn("old", PendingDeprecationWarning, stacklevel=1)
        return {}

    monkeypatch.setattr(runner, "_measure", measure)
    ctx = _sweep_ctx(exclude=("a",), chip=cimsim.load_chip("pcm-22nm"))  # a chip that drifts
    rec = runner.run_point(ctx, "id", {"time_s": 5.0})
    assert seen == [(5.0, ("a",))]
    assert rec["warnings"] == ["two words here"] and rec["status"] == "ok" and rec["final"]
    assert rec["wall_s"] >= 0 and rec["point"] == {"time_s": 5.0}


@pytest.mark.parametrize("error, final", [(CimsimError("unmappable"), True),
                                          (RuntimeError("flaky"), False)])
def test_run_point_marks_only_cimsims_own_errors_final(monkeypatch, error, final):
    from cimsim.sweep import runner

    def measure(*_a):
        raise error

    monkeypatch.setattr(runner, "_measure", measure)
    rec = runner.run_point(_sweep_ctx(), "id", {})
    assert rec["final"] is final and rec["status"].startswith("error: ")


def test_run_points_with_one_job_never_starts_a_pool(monkeypatch):
    from cimsim.sweep import runner

    def pool(*_a):
        raise AssertionError("a pool was started")

    monkeypatch.setattr(runner, "_run_pool", pool)
    monkeypatch.setattr(runner, "run_point", lambda ctx, pid, p: {"point_id": pid})
    got = []
    assert runner.run_points(None, [("a", {}), ("b", {})], 1, got.append) == []
    assert got == [{"point_id": "a"}, {"point_id": "b"}]


def test_pool_context_is_the_context_or_its_cloudpickle_bytes():
    from cimsim.sweep.runner import _pool_context

    plain = _sweep_ctx(model=nn.Linear(1, 1))
    assert _pool_context(plain) is plain
    local = _sweep_ctx(model=lambda v: v)  # the standard pickle refuses a lambda
    assert isinstance(_pool_context(local), bytes)


class _FakeProc:
    def __init__(self, stopped):
        self.stopped = stopped

    def terminate(self):
        self.stopped.append(1)


def test_run_pool_sizes_the_pool_to_the_points_and_stops_workers_only_when_interrupted(
        monkeypatch):
    """``_run_pool`` with a thread pool standing in for the process pool."""
    from concurrent.futures import ThreadPoolExecutor

    from cimsim.sweep import runner

    sizes, stopped = [], []

    class Pool(ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context, initializer, initargs):
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers)
            self._processes = {1: _FakeProc(stopped)}

    monkeypatch.setattr(runner, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(runner, "_worker_point", lambda pid, p: {"point_id": pid})
    got = []
    runner._run_pool(_sweep_ctx(), [("a", {}), ("b", {})], 8, got.append)
    assert sizes == [2] and sorted(r["point_id"] for r in got) == ["a", "b"] and not stopped

    def stop(rec):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner._run_pool(_sweep_ctx(), [("a", {}), ("b", {})], 2, stop)
    assert stopped == [1]


# ---------------------------------------------------------------------------------------------
# sweep/cluster.py (no cluster started: a fake client where one is needed)
# ---------------------------------------------------------------------------------------------
def test_parse_scheduler_strips_ignores_case_and_wants_a_whole_address():
    from cimsim.sweep.cluster import parse_scheduler

    assert parse_scheduler(" LOCAL:1 ") == ("local", 1)
    assert parse_scheduler(" tcp://10.0.0.5:8786\n") == ("address", "tcp://10.0.0.5:8786")
    with pytest.raises(ConfigError, match="scheduler"):
        parse_scheduler("tcp://host:1 tcp://other:2")


def test_quiet_distributed_raises_the_level_to_warning_and_restores_it():
    from cimsim.sweep.cluster import _quiet_distributed

    logger = logging.getLogger("distributed")
    saved = logger.level
    try:
        for before, inside in ((logging.DEBUG, logging.WARNING), (logging.ERROR, logging.ERROR)):
            logger.setLevel(before)
            with _quiet_distributed():
                assert logger.level == inside
            assert logger.level == before
    finally:
        logger.setLevel(saved)


def test_environ_kept_drops_a_variable_set_inside(monkeypatch):
    from cimsim.sweep.cluster import _environ_kept

    monkeypatch.delenv("CIMSIM_TEST_ENV_KEPT", raising=False)
    with _environ_kept():
        os.environ["CIMSIM_TEST_ENV_KEPT"] = "1"
    assert "CIMSIM_TEST_ENV_KEPT" not in os.environ


class _Worker:
    address = "tcp://w:1"


def test_dask_point_limits_threads_only_outside_the_driver(monkeypatch):
    import distributed

    from cimsim.sweep import cluster

    limited = []
    monkeypatch.setattr(cluster, "limit_threads", lambda: limited.append(1))
    monkeypatch.setattr(cluster, "run_point", lambda ctx, pid, p: {"point_id": pid})
    monkeypatch.setattr(distributed, "get_worker", _Worker)
    assert cluster._dask_point(None, "a", {}, os.getpid()) == {"point_id": "a",
                                                               "worker": "tcp://w:1"}
    assert limited == []
    cluster._dask_point(None, "b", {}, None)
    assert limited == [1]


class _FakeFuture:
    def __init__(self, outcome):
        self.outcome = outcome

    def result(self):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def release(self):
        pass


class _FakeClient:
    """Just what ``run_points_dask`` asks of a ``distributed.Client``."""

    dashboard_link = "http://fake"
    scheduler = type("S", (), {"address": "tcp://fake:1"})()

    def __init__(self, outcomes):
        self.outcomes, self.cancelled = outcomes, []

    def scheduler_info(self):
        return {"workers": {"w": {}}}

    def submit(self, fn, *args, key):
        return _FakeFuture(self.outcomes[args[1]] if len(args) > 1 else None)

    def cancel(self, futures):
        self.cancelled.extend(futures)


def test_run_points_dask_loses_the_clusters_failures_and_raises_a_workers(monkeypatch):
    import distributed

    from cimsim.sweep import cluster

    monkeypatch.setattr(distributed, "as_completed", lambda futures: list(futures))
    outcomes = {"ok": {"point_id": "ok"}, "killed": distributed.KilledWorker("k", _Worker(), 3),
                "comm": OSError("connection lost")}
    client = _FakeClient(outcomes)
    todo = [(pid, {}) for pid in outcomes]
    got = []
    assert cluster.run_points_dask(_sweep_ctx(), todo, client, got.append) == ["killed", "comm"]
    assert got == [{"point_id": "ok"}] and client.cancelled == []
    client = _FakeClient({"ok": {"point_id": "ok"}, "bad": ValueError("no module")})
    with pytest.raises(CimsimError, match="could not run sweep point bad"):
        cluster.run_points_dask(_sweep_ctx(), [("ok", {}), ("bad", {})], client, got.append)
    assert len(client.cancelled) == 2  # the interrupted sweep cancels its points


# ---------------------------------------------------------------------------------------------
# _atomic.py
# ---------------------------------------------------------------------------------------------
def test_a_rewrite_replaces_the_file_instead_of_writing_into_it(tmp_path):
    path = tmp_path / "f.json"
    _atomic.write_text(path, "old")
    held = open(path, "rb")  # a reader of the old file keeps the old bytes
    try:
        _atomic.write_text(path, "new")
        assert held.read() == b"old" and path.read_text() == "new"
    finally:
        held.close()


def test_only_old_temporaries_of_dead_writers_are_removed(tmp_path):
    path = tmp_path / "f.json"
    dead = 999_999_999  # no such process
    old = tmp_path / f".f.json.{dead}.tmp"
    young = tmp_path / f".f.json.{dead + 1}.tmp"
    alive = tmp_path / f".f.json.{os.getppid()}.tmp"
    other = tmp_path / f".f.jsonx.{dead}.tmp"
    for p in (old, young, alive, other):
        p.write_text("x")
    stale = 1e9  # 2001: far over ORPHAN_AGE_S ago
    for p in (old, alive, other):
        os.utime(p, (stale, stale))
    _atomic.write_text(path, "data")
    assert not old.exists()
    assert young.exists() and alive.exists() and other.exists()


def test_signals_deferred_restores_the_handlers_and_is_plain_off_the_main_thread():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with _atomic.signals_deferred():
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
        seen = []

        def off_main():
            with _atomic.signals_deferred():
                seen.append(signal.getsignal(signal.SIGTERM))

        t = threading.Thread(target=off_main)
        t.start()
        t.join()
        assert seen == [mine]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_exclusive_lock_names_its_holder_and_is_emptied_on_release(tmp_path):
    lock = tmp_path / ".lock"
    with _atomic.exclusive_lock(lock, "sweep", "wait for it"):
        assert lock.read_text() == f"pid {os.getpid()}"
        with pytest.raises(CimsimError, match=rf"another sweep .*\(pid {os.getpid()}\); wait"):
            with _atomic.exclusive_lock(lock, "sweep", "wait for it"):
                pass
    assert lock.read_text() == ""
    with _atomic.exclusive_lock(lock, "sweep", "wait for it"):  # free again
        pass


# ---------------------------------------------------------------------------------------------
# adc/activation.py (the fused-ReLU set-up of tests/mapping/test_fused_activation.py)
# ---------------------------------------------------------------------------------------------
def _fused_sar(x_cal, top0=None, **adc):
    """``top0``: column 0's bias moved so that its largest calibration pre-activation is
    that."""
    from tests.mapping.test_fused_activation import _chip, _mlp

    model = _mlp()
    if top0 is not None:
        with torch.no_grad():
            model[0].bias[0] += top0 - model[0](x_cal)[:, 0].max()
    return cimsim.deploy(model, _chip(kind="sar", bits=4, **adc), x_cal), model


def _expected_sar(core, x, a_max):
    from tests.mapping.test_fused_activation import _pre_activation

    step = a_max / 15
    return np.clip(np.floor(_pre_activation(core, x) / step + 0.5), 0, 15) * step


def test_percentile_sets_a_max_from_the_upper_tail():
    from tests.mapping.test_fused_activation import _data, _pre_activation

    x_cal, x = _data(2, 300), _data(3, 200)
    sim, _ = _fused_sar(x_cal, calibration_stat="percentile", percentile=90.0)
    core = sim.sim_layers["0"].cores[0]
    a_max = np.percentile(np.maximum(_pre_activation(core, x_cal), 0.0), 90.0, axis=0)
    assert np.all(a_max > 0)
    np.testing.assert_allclose(sim.model[0](x).numpy(), _expected_sar(core, x, a_max),
                               rtol=1e-9, atol=1e-12)


def test_a_unit_never_above_zero_outputs_zeros():
    """A column whose pre-activation stays just below 0 for every calibration input: its
    exact max is clipped to the ReLU's 0 too, so its levels are all 0 (a negative a_max gave
    negative levels, output for inputs near or above 0)."""
    from tests.mapping.test_fused_activation import _data

    x_cal = _data(2, 300)
    sim, model = _fused_sar(x_cal, top0=-0.05)
    assert sim.fused_activations == ["0"]
    with torch.no_grad():
        top = x_cal[int(model[0](x_cal)[:, 0].argmax())]
    x = torch.stack([top * k for k in (0.9, 1.0, 1.1, 1.5, 2.0)])  # near 0 and above it
    y = sim.model[0](x).numpy()
    assert np.all(y[:, 0] == 0.0) and y.min() >= 0.0



# ---------------------------------------------------------------------------------------------
# arrays/_reference.py (the tests' plain oracle)
# ---------------------------------------------------------------------------------------------
def test_the_reference_cuts_a_narrow_signed_msb_plane():
    """8-bit signed inputs on 3-bit DACs: planes of 3, 3 and 2 bits, the sign in the 2-bit
    plane's top bit; on the lossless chip the oracle is the exact product."""
    from cimsim.arrays._reference import matmul_reference
    from cimsim.arrays.program import program
    from tests.conftest import ideal_chip, random_inputs, random_weights

    chip = ideal_chip(dac_bits=3, n_rows=16, n_cols=16, rows_per_conversion=16)
    rng = np.random.default_rng(0)
    w = random_weights(rng, chip, 3, 10)
    x = random_inputs(rng, chip, True, 4, 10)
    layer = program(w, chip, np.random.default_rng(0), input_signed=True)
    np.testing.assert_array_equal(matmul_reference(x, layer), x @ w.T)


@pytest.mark.parametrize("variation", [0.0, 0.12])
def test_the_reference_subtracts_the_drifted_reference_column_of_an_offset_chip(variation):
    """Offset-encoded weights (no pair to cancel it) on an aged pcm-22nm with analog
    off-current compensation: the oracle subtracts the drifted reference column, as the
    engine does, for nominal cells and for cells with variation."""
    from cimsim import engine
    from cimsim.arrays._reference import matmul_reference
    from cimsim.arrays.program import program

    rng = np.random.default_rng(0)
    pcm = cimsim.load_chip("pcm-22nm")
    chip = pcm.replace(weight_encoding="offset",
                       noise=pcm.noise.replace(thermal_sigma_lsb=0.0),
                       adc=pcm.adc.replace(range_policy="full_scale", bits=12),
                       device=pcm.device.replace(
                           off_current_compensation="analog", on_off_ratio=20.0,
                           variation="gaussian" if variation else "none",
                           variation_sigma=variation))
    w, x = rng.integers(-127, 128, (4, 32)), rng.integers(0, 256, (2, 32))
    layer = program(w, chip, np.random.default_rng(5)).with_time(3600.0)
    y = engine.run(layer, x, noise_seed=3)[0]
    np.testing.assert_allclose(matmul_reference(x, layer, noise_seed=3), y, rtol=1e-12, atol=0)


def test_a_fused_sar_clamps_at_the_max_over_the_calibration_reservoir():
    """Above MAX_CALIBRATION_ROWS calibration vectors an ADC is calibrated on the core's
    reservoir sample (docs/hardware-model.md, "Calibration sample"), not on every vector: its
    clamp is the largest post-ReLU value over the rows the reservoir kept, which can sit below
    the largest over all of them, while the input scale still reads every vector."""
    from cimsim.mapping.matrix import MAX_CALIBRATION_ROWS, InputStats
    from tests.mapping.test_fused_activation import _data, _pre_activation

    x_cal = _data(2, 5000)
    assert x_cal.shape[0] > MAX_CALIBRATION_ROWS
    sim, _ = _fused_sar(x_cal)
    core = sim.sim_layers["0"].cores[0]
    assert core.s_x == pytest.approx(float(x_cal.abs().max()) / 127, rel=1e-12)
    stats = InputStats(core.seed)  # the reservoir deploy drew: batches of 256, the core's seed
    for i in range(0, x_cal.shape[0], 256):
        stats.observe(x_cal[i:i + 256].numpy())
    kept_max = np.maximum(_pre_activation(core, torch.from_numpy(stats.sample)), 0).max(axis=0)
    all_max = np.maximum(_pre_activation(core, x_cal), 0).max(axis=0)
    top = sim.model[0](10 * x_cal).numpy().max(axis=0)  # every column driven past its clamp
    np.testing.assert_allclose(top, kept_max, rtol=1e-12)
    assert np.all(kept_max <= all_max) and np.any(kept_max < all_max)
