"""A BatchNorm (or Dropout) the user put in eval mode inside a model in training mode stays so
through ``prepare`` and the passes the methods run on a prepared model (frozen BatchNorm
statistics are the usual way to fine-tune a model with BatchNorm on a few batches)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.train import prepare
from cimsim.train.bskmq import prepare_bskmq, refit_chip_levels
from cimsim.train.columnquant import freeze_psum, prepare_columnquant, psum_mse
from cimsim.train.twin import recalibrate_adcs


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.BatchNorm1d(8),
                         nn.Dropout(0.5), nn.Linear(8, 3))


def _frozen(model: nn.Module) -> nn.Module:
    model.train()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.Dropout)):
            m.eval()
    return model


def _states(prepared) -> list[bool]:
    return [m.training for m in prepared.modules() if isinstance(m, (nn.BatchNorm1d, nn.Dropout))]


def _x() -> torch.Tensor:
    return torch.rand(64, 12, generator=torch.Generator().manual_seed(1))


def test_prepare_keeps_a_frozen_batchnorm_frozen():
    # prepare restored the root's mode to every module (root.train(True)): the BatchNorm's
    # running statistics then moved in every training forward. Fails without the fix.
    x = _x()
    prepared = prepare(_frozen(_model()), cimsim.load_chip("rram-22nm"), x, seed=0)
    assert prepared.training
    assert _states(prepared) == [False, False]
    bn = next(m for m in prepared.modules() if isinstance(m, nn.BatchNorm1d))
    before = bn.running_mean.clone()
    prepared(x)
    assert torch.equal(bn.running_mean, before)


def _bskmq_chip():
    ideal = cimsim.load_chip("ideal")
    return ideal.replace(weight_bits=4, dac=ideal.dac.replace(bits=None),
                         device=ideal.device.replace(bits_per_cell=3),
                         array=ideal.array.replace(n_rows=64, n_cols=64),
                         adc=ideal.adc.replace(kind="ramp", bits=3, range_policy="calibrated",
                                               calibration_granularity="layer",
                                               level_fit="bs_kmq", placement="layer_output"))


@pytest.mark.parametrize("method", ["freeze_psum", "psum_mse", "refit_chip_levels",
                                    "recalibrate_adcs"])
def test_passes_on_a_prepared_model_keep_module_modes(method):
    # each pass ran in eval mode and then set the root's mode on every module
    # (prepared.train(True)), unfreezing the BatchNorm and the Dropout. Fails without the fix.
    x = _x()
    if method == "refit_chip_levels":
        prepared = prepare_bskmq(_model(), _bskmq_chip(), x, seed=0)
    else:
        prepared = prepare_columnquant(_model(), "rram-22nm", x, seed=0, centre="frozen",
                                       decomposition="ternary" if method == "recalibrate_adcs"
                                       else None)
    _frozen(prepared)
    {"freeze_psum": lambda: freeze_psum(prepared, x),
     "psum_mse": lambda: psum_mse(prepared, x),
     "refit_chip_levels": lambda: refit_chip_levels(prepared, x),
     "recalibrate_adcs": lambda: recalibrate_adcs(prepared, x)}[method]()
    assert prepared.training
    assert _states(prepared) == [False, False]
