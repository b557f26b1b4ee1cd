"""A sweep of a model trained for the chip (``cimsim.train.PreparedModel``): every point
deploys what it learned (``PreparedModel.deploy(chip=)``), as a loop over the points would,
with no calibration pass; points it cannot be deployed at are skipped, named up front."""

from __future__ import annotations

import warnings

import pytest
import torch

import cimsim
from cimsim.errors import ConfigError
from cimsim.evaluate import accuracy
from cimsim.sweep import chip_for_point
from cimsim.train import prepare
from tests import test_sweep
from tests.test_sweep import N_CAL, _count_points, _sweep

data = test_sweep.data


@pytest.fixture(scope="module")
def chip():
    rram = cimsim.load_chip("rram-22nm")  # calibrated ADC ranges; noise off: exact compares
    return rram.replace(noise=rram.noise.replace(thermal_sigma_lsb=0.0))


@pytest.fixture(scope="module")
def trained(chip, data):
    """A twin of the tiny digits model after a few steps of training on the chip."""
    warnings.simplefilter("ignore")
    x, y = data
    prep = prepare(test_sweep.tiny_model(), chip, calibration=x[:N_CAL], seed=0)
    opt = torch.optim.Adam(prep.parameters(), lr=1e-3)
    prep.train()
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(prep(x[:32]), y[:32]).backward()
        opt.step()
    return prep.eval()


def test_each_point_is_the_trained_model_deployed_there(trained, data, chip, tmp_path):
    """ADC bits on a calibrated chip: the learned ranges on each point's grid, the figures
    those of ``trained.deploy(chip=point)``; an array size the twin was not tiled for is
    skipped with deploy's reason, before any point runs; the twin itself is not changed."""
    x, y = data
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    frame = _sweep(trained, data, chip, {"adc_bits": [3, 6], "array_size": [128, 256]},
                   tmp_path)
    assert chip.array.n_rows == 128
    ok = frame[frame["status"] == "ok"]
    assert ok["array_size"].tolist() == [128, 128] and ok["adc_bits"].tolist() == [3, 6]
    skipped = frame[frame["array_size"] == 256]["status"]
    assert skipped.str.startswith("skipped: deploy(chip=...): chip").all()
    assert skipped.str.contains("array.n_rows").all()
    for _, row in ok.iterrows():
        variant = chip_for_point(chip, {"adc_bits": row["adc_bits"]})
        sim = trained.deploy(0, chip=variant)
        assert row["accuracy"] == accuracy(sim, x[N_CAL:], y[N_CAL:])
        assert row["energy_pj_per_inference"] == pytest.approx(
            float(sim.report().totals["energy_pj_per_inference"]), rel=1e-12)
    assert ok["accuracy"].iloc[0] != ok["accuracy"].iloc[1]  # the bits do change the chip
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())


def test_a_rerun_resumes_and_what_deploy_hands_the_engine_is_the_points_identity(
        trained, data, chip, tmp_path, monkeypatch):
    """The same twin resumes every point; a forward rescale (a plain attribute PIM-QAT sets,
    folded into the deployed scales, not in the state dict) is another model: run again."""
    grid = {"adc_bits": [4]}
    first = _sweep(trained, data, chip, grid, tmp_path)
    counted = _count_points(monkeypatch)
    again = _sweep(trained, data, chip, grid, tmp_path)
    assert counted == [] and again["point_id"].tolist() == first["point_id"].tolist()
    # a reference float model is for the cosine without labels: with labels no identity of it
    again = _sweep(trained, data, chip, grid, tmp_path, reference=test_sweep.tiny_model())
    assert counted == [] and again["point_id"].tolist() == first["point_id"].tolist()
    twin = next(t for _, t in trained.twins())
    twin.out_rescale = 1.5
    try:
        other = _sweep(trained, data, chip, grid, tmp_path)
    finally:
        twin.out_rescale = 1.0
    assert counted == [1] and other["point_id"].tolist() != first["point_id"].tolist()


def test_points_it_cannot_be_deployed_at_are_refused_or_skipped(trained, data, chip,
                                                                 tmp_path):
    """No point deployable: the first one's reason, before anything runs; an exclusion is
    the one prepare made."""
    with pytest.raises(ConfigError, match=r"sweep point \{'bits_per_cell': 1\}: deploy\(chip"):
        _sweep(trained, data, chip, {"bits_per_cell": [1, 4]}, tmp_path)
    assert not (tmp_path / "sweep.jsonl").exists()
    with pytest.raises(ConfigError, match=r"exclude = '0' with a prepared model"):
        _sweep(trained, data, chip, {"adc_bits": [4]}, tmp_path, exclude="0")


def test_a_columnquant_twin_is_swept_once_its_centre_is_frozen(chip, data, tmp_path):
    """A grid centred on every batch (ColumnQuant's centre='batch') was deployed at the
    calibration's grid start, no centre at all, and swept as 'ok' (a model neither the twin
    nor deploy_columnquant's); refused, naming the way, by deploy and so by the sweep. Frozen,
    it sweeps at its own bits; at other bits its centre (set at the twin's bits) is no range
    to carry, and those points are skipped."""
    from cimsim.train.columnquant import deploy_columnquant, freeze_psum, prepare_columnquant

    x, y = data
    prep = prepare_columnquant(test_sweep.tiny_model(), chip, x[:N_CAL], centre="batch").eval()
    with pytest.raises(ConfigError, match=r"twin '1' centres its ADC grid on every batch.*"
                       r"deploy_columnquant\(prepared, calibration\)"):
        prep.deploy(0)
    with pytest.raises(ConfigError, match=r"sweep point \{'adc_bits': 6\}: deploy: twin '1' "
                       r"centres"):
        _sweep(prep, data, prep.chip, {"adc_bits": [6]}, tmp_path)  # the method's chip
    freeze_psum(prep, x[:N_CAL])
    frame = _sweep(prep, data, prep.chip, {"adc_bits": [4, 6]}, tmp_path)
    assert frame["status"].iloc[0].startswith("skipped: deploy(chip=...): chip 'rram-22nm' has "
                                              "adc.range_policy = 'calibrated' and its grid "
                                              "starts at the centre a method set")
    assert "other adc.bits" not in frame["status"].iloc[0]  # not offered: that was refused
    assert frame["status"].iloc[1] == "ok"
    assert frame["accuracy"].iloc[1] == accuracy(deploy_columnquant(prep, x[:N_CAL], 0),
                                                 x[N_CAL:], y[N_CAL:])


def test_points_run_at_their_time_not_the_time_the_twin_was_trained_for(data, tmp_path):
    """A twin prepared for t_inference_s = 1e6 s deployed there at a point without time_s,
    while the row said time_s = t0 and the point kept t0's id: a later time_s = [t0] sweep
    resumed the 1e6-s figures. Each point runs at its own time (t0 where not swept: said, with
    the time to sweep for the trained one)."""
    x, y = data
    pcm = cimsim.load_chip("pcm-22nm")  # its devices drift
    chip = pcm.replace(noise=pcm.noise.replace(thermal_sigma_lsb=0.0))
    t0 = chip.device.drift_t0_s
    late = prepare(test_sweep.tiny_model(), chip, calibration=x[:N_CAL], seed=0,
                   t_inference_s=1e6).eval()
    with pytest.warns(UserWarning, match=r"trained for t_inference_s = 1e\+06 s .* add "
                      r"'time_s': \[1e\+06\] to the grid"):
        plain = _sweep(late, data, chip, {"adc_bits": [6]}, tmp_path / "a")
    timed = _sweep(late, data, chip, {"adc_bits": [6], "time_s": [t0, 1e6]}, tmp_path / "b")
    assert timed["point_id"].iloc[0] == plain["point_id"].iloc[0]
    for row, t in ((plain.iloc[0], t0), (timed.iloc[0], t0), (timed.iloc[1], 1e6)):
        sim = late.deploy(0, chip=chip, t_inference_s=t)
        assert row["accuracy"] == accuracy(sim, x[N_CAL:], y[N_CAL:])
        assert row["energy_pj_per_inference"] == pytest.approx(
            float(sim.report().totals["energy_pj_per_inference"]), rel=1e-12)
    assert timed["energy_pj_per_inference"].iloc[0] != timed["energy_pj_per_inference"].iloc[1]


def test_engine_digest_holds_the_seed_the_chip_and_the_float64_tables(trained, chip):
    """Pins what ``PreparedModel.engine_digest`` hashes beside the state dict, as documented:
    the prepared seed, the prepared chip, and every twin's float64 ADC tables (``_init64``,
    what ``to_engine`` hands the engine: a change below the float32 buffers' precision leaves
    the state dict as it was but deploys other ranges). Each alone changes the digest; the
    same model gives the same digest."""
    import copy

    import numpy as np

    from cimsim.sweep.store import model_fingerprint

    base = trained.engine_digest()
    assert trained.engine_digest() == base
    reseeded = copy.deepcopy(trained)
    reseeded._set_seed(trained.seed + 1)
    assert reseeded.engine_digest() != base
    rechipped = copy.deepcopy(trained)
    rechipped.chip = chip.replace(noise=chip.noise.replace(thermal_sigma_lsb=0.5))
    assert rechipped.engine_digest() != base
    retabled = copy.deepcopy(trained)
    twin = next(t for _, t in retabled.twins())
    twin._init64["lo"] = twin._init64["lo"] + np.abs(twin._init64["lo"]) * 1e-12 + 1e-300
    assert model_fingerprint(retabled) == model_fingerprint(trained)  # no state changed
    assert retabled.engine_digest() != base


def test_a_grid_of_skipped_and_undeployable_points_is_refused_up_front(trained, data, chip,
                                                                        tmp_path):
    """Pins ``_check_prepared``'s count: points ``_check_points`` skipped (an invalid
    combination) count with the ones the twin cannot be deployed at, and are not checked
    again. With none left to run the sweep is refused naming the first undeployable point
    (it ran with every point skipped, exit 0, or counted a skipped point twice)."""
    from cimsim.sweep.grid import expand_grid
    from cimsim.sweep.run import _check_points

    grid = {"array_size": [64, 256], "cols_per_adc": [32, 128]}
    skipped = _check_points(chip, expand_grid(grid))
    assert len(skipped) == 1  # 128 columns per ADC on a 64-column array
    with pytest.raises(ConfigError, match=r"sweep point \{'array_size': 64, 'cols_per_adc': "
                       r"32\}: deploy\(chip=\.\.\.\)"):
        _sweep(trained, data, chip, grid, tmp_path)
    assert not (tmp_path / "sweep.jsonl").exists()


def test_other_adc_bits_do_not_lift_the_twins_conversions_check(trained, chip):
    """Pins ``_check_same_geometry``'s regrid term: at other ADC bits on the calibrated chip
    the learned tables are carried (regridded), so they belong to the twin's conversions;
    other bits per cell there are refused before programming, naming the field, as at the
    chip's own bits (else the twin's tables were programmed onto another decomposition)."""
    for bits in (chip.adc.bits, 4):
        variant = chip_for_point(chip, {"adc_bits": bits, "bits_per_cell": 1})
        with pytest.raises(ConfigError, match=r"differs from the prepared chip 'rram-22nm' in "
                           r"device\.bits_per_cell \(with the twin's ADC settings"):
            trained.check_chip(variant)


def test_without_labels_the_cosine_is_to_the_reference_which_is_part_of_the_identity(
        trained, data, chip, tmp_path, monkeypatch):
    """Pins the cosine without labels: against the twin's ``float_model()`` (its learned
    float weights, not the twin's own quantized forward) where no reference is given, and
    against ``reference`` where one is, which is then part of the points' identity (another
    reference reruns the point into the same folder, not resuming the first's cosine)."""
    from cimsim.evaluate import output_cosine

    x, _ = data
    grid = {"adc_bits": [6]}
    own = _sweep(trained, x, chip, grid, tmp_path)
    sim = trained.deploy(0, chip=chip_for_point(chip, {"adc_bits": 6}))
    assert own["output_cosine"].iloc[0] == pytest.approx(
        output_cosine(trained.float_model(), sim, x[N_CAL:]), abs=1e-9)
    counted = _count_points(monkeypatch)
    reference = test_sweep.tiny_model()
    other = _sweep(trained, x, chip, grid, tmp_path, reference=reference)
    assert counted == [1] and other["point_id"].iloc[0] != own["point_id"].iloc[0]
    assert other["output_cosine"].iloc[0] == pytest.approx(
        output_cosine(reference, sim, x[N_CAL:]), abs=1e-9)
    assert other["output_cosine"].iloc[0] != own["output_cosine"].iloc[0]


def test_no_time_warning_where_the_grid_sweeps_time(data, tmp_path):
    """Pins the ``'time_s' not in grid`` term of ``run_sweep``'s warning for a twin trained
    for a later time: a grid that sweeps ``time_s`` says at which times it runs, so nothing is
    warned (the warning told the caller to add what the grid already had)."""
    x, _ = data
    pcm = cimsim.load_chip("pcm-22nm")
    chip = pcm.replace(noise=pcm.noise.replace(thermal_sigma_lsb=0.0))
    late = prepare(test_sweep.tiny_model(), chip, calibration=x[:N_CAL], seed=0,
                   t_inference_s=1e6).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*trained for t_inference_s")
        frame = _sweep(late, data, chip, {"adc_bits": [6], "time_s": [1e6]}, tmp_path)
    assert frame["status"].tolist() == ["ok"]


def test_chip_fields_of_a_trained_twin_deploy_or_skip_as_deploy_does(trained, data, chip,
                                                                      tmp_path):
    """A supply (a technology field) is deployed with what the twin learned; other input bits
    (the twin's quantization) are skipped with deploy's reason, naming the field."""
    x, y = data
    frame = _sweep(trained, data, chip, {"input_bits": [4, 8], "tech.vdd_v": [0.7]}, tmp_path)
    skipped = frame[frame["input_bits"] == 4]["status"].iloc[0]
    assert skipped.startswith("skipped: deploy(chip=...)") and "input_bits" in skipped
    row = frame[frame["input_bits"] == 8].iloc[0]
    assert row["status"] == "ok"
    sim = trained.deploy(0, chip=chip_for_point(chip, {"tech.vdd_v": 0.7}))
    assert row["accuracy"] == accuracy(sim, x[N_CAL:], y[N_CAL:])
    assert row["energy_pj_per_inference"] == pytest.approx(
        float(sim.report().totals["energy_pj_per_inference"]), rel=1e-12)
