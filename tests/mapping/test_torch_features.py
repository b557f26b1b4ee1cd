"""A deployed model with standard torch features: tracers, state dicts, modules replaced or
added after deploy."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError


def _deployed() -> tuple[nn.Module, cimsim.SimModel, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 4)).eval()
    x = torch.randn(8, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, cimsim.deploy(model, "ideal", x), x


def test_tracers_are_refused_naming_what_they_cannot_record():
    """torch.jit.trace of a deployed model recorded the tracing call's outputs as constants
    (a traced model gave them for every input, 1.15 off the deployed model, with torch's
    generic TracerWarnings only); torch.export and torch.fx failed inside torch or the layer,
    naming nothing. torch.compile still runs the layers eagerly."""
    _, sim, x = _deployed()
    with pytest.raises(MappingError, match=r"^SimModel: called under torch\.jit\.trace"):
        torch.jit.trace(sim, x, check_trace=False)
    with pytest.raises(MappingError, match=r"^SimModel: called under torch\.export"):
        torch.export.export(sim, (x,))
    with pytest.raises(MappingError, match=r"^1: called under torch\.fx symbolic tracing"):
        torch.fx.symbolic_trace(sim.model)
    assert torch.equal(sim(x), sim(x))  # nothing left behind


def _negated(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: -v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("where", ["sim", "sim.model"])
def test_a_state_dict_with_mapped_weights_is_refused_and_nothing_loaded(strict, where):
    """strict=False loaded the layers kept digital (a negated LayerNorm flipped the output)
    and left the programmed layers as they were, named only in unexpected_keys; strict=True
    failed with torch's bare "Unexpected key(s)". Refused before any module takes a value
    (the LayerNorm comes before the mapped layer)."""
    model, sim, x = _deployed()
    before = sim(x)
    state = _negated(model)
    target = sim if where == "sim" else sim.model
    if where == "sim":
        state = {f"model.{k}": v for k, v in state.items()}
    with pytest.raises(MappingError, match=r"^1: load_state_dict holds weights of this "
                                           r"mapped layer .*nothing was loaded"):
        target.load_state_dict(state, strict=strict)
    assert torch.equal(sim(x), before)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # state_dict's note that it holds the digital layers
        sim.load_state_dict(sim.state_dict())  # its own: the digital layers' round trip
    copy = pickle.loads(pickle.dumps(sim))  # the refusal survives a pickle
    with pytest.raises(MappingError, match="load_state_dict holds weights"):
        copy.model.load_state_dict(_negated(model))


def test_a_mapped_layer_replaced_after_deploy_is_refused():
    """``sim.model[1] = nn.Linear(...)`` ran that layer in float without a word while the
    report still listed it mapped (0 MACs, all of its ADC energy)."""
    _, sim, x = _deployed()
    sim(x)
    sim.model[1] = nn.Linear(16, 16)
    with pytest.raises(MappingError, match=r"1 mapped layer\(s\) are no longer in sim\.model "
                                           r"\(replaced or removed after deploy\): '1'"):
        sim(x)
    sim.model[1] = nn.Sequential(sim.sim_layers["1"])  # wrapped, still there: it runs
    sim(x)


def test_a_module_added_after_the_first_forward_is_set_to_eval():
    """A Dropout appended after the first call (new modules start in training mode) escaped
    the eval check, whose module list was kept from the first call: 49 % of the outputs
    zeroed, two calls differing, without a word."""
    _, sim, x = _deployed()
    sim(x)
    sim.model.append(nn.Dropout(0.5))
    with pytest.warns(UserWarning, match=r"1 module\(s\) of the deployed model were in "
                                         r"training mode \('4'\)"):
        first = sim(x)
    assert torch.equal(first, sim(x))


@pytest.mark.parametrize("strict", [True, False])
def test_the_float_models_own_names_are_refused_too(strict):
    """The float model's state dict loaded into ``sim`` (no ``model.`` before its names), or
    into a one-layer model wrapped by deploy (``weight``, not ``0.weight``): strict=False
    loaded nothing, strict=True failed with the bare "Unexpected key(s)"."""
    model, sim, _ = _deployed()
    with pytest.raises(MappingError, match=r"^1: load_state_dict holds weights"):
        sim.load_state_dict(_negated(model), strict=strict)
    torch.manual_seed(0)
    linear, x = nn.Linear(4, 3).eval(), torch.randn(8, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = cimsim.deploy(linear, "ideal", x)
    for target in (one, one.model):
        with pytest.raises(MappingError, match=r"^0: load_state_dict holds weights of this "
                                               r"mapped layer \(bias, weight\)"):
            target.load_state_dict(linear.state_dict(), strict=strict)


def test_a_torch_without_is_exporting_runs_the_deployed_model(monkeypatch):
    """torch.compiler.is_exporting came with torch 2.6: the tracing check failed every forward
    with an AttributeError on the torch versions before it."""
    _, sim, x = _deployed()
    want = sim(x)
    monkeypatch.delattr(torch.compiler, "is_exporting")
    sim.reset(noise=True)
    assert torch.equal(sim(x), want)


@pytest.mark.parametrize("make", [lambda: nn.GRU(8, 8, num_layers=2, batch_first=True),
                                  lambda: nn.Linear(8, 8)], ids=["gru", "linear"])
def test_a_mappable_root_in_eval_mode_deploys_in_eval_mode(make):
    """A mappable module given as the whole model is held in a new container, and new
    modules start in training mode: a deployed eval ``nn.GRU`` warned at its first call that
    '(the model)' was in training mode. The container takes the module's mode."""
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 5, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = cimsim.deploy(model, "ideal", x)
    assert not sim.model.training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim(x)
    prepared = cimsim.train.prepare(model, "ideal", x)
    assert prepared.model.training == model.training
