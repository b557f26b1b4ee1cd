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
