"""A tenth zoo (worktree ``zoo10``, after ``test_zoo9.py``): scientific ML (a PINN and a
Hamiltonian NN differentiating their own forward, DeepONet, SchNet's generated filters, an
E(n)-equivariant GNN), time series (N-BEATS, TFT's gated residual networks and variable
selection, Informer's ProbSparse attention, PatchTST, DeepAR), reinforcement learning (an
actor-critic returning ``torch.distributions``, a dueling DQN, a policy sampling in its
forward), meta-learning (MAML's ``torch.func.functional_call``, fast weights) and instrumented
forwards (a steering hook, a normalising pre-hook, autocast inside the forward, a sparse COO
weight, a Brevitas-style QuantLinear). Models in ``zoo10_models.py``.

What a user gets where cimsim cannot follow: a deployed layer has no gradient, so a forward
that differentiates itself (PINN, HNN, MAML's inner step) is a ``MappingError`` naming the
layer (the twin of ``prepare`` trains through it); adapted weights passed by
``functional_call`` to a mapped layer are refused by name (they used to be silently ignored:
the old weights computed); a sparse weight torch cannot copy is named; a QuantLinear is kept
digital with its reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    build_seeded,
    check_every_matrix,
    check_lossy_run,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy
from .test_zoo5 import _quiet, _rram_noise_free
from .zoo10_models import (
    EGNN,
    HNN,
    MAML,
    PINN,
    ActorCritic,
    Autocast,
    DeepAR,
    DeepONet,
    DuelingDQN,
    FastWeights,
    Informer,
    NBeats,
    PatchTST,
    QuantNet,
    SampledPolicy,
    SchNet,
    SparseNet,
    Steered,
    TFTVariableSelection,
    mlp,
)


def flat(out) -> torch.Tensor:
    """One tensor of a model's outputs; a distribution as its parameters (Categorical: its
    logits, Normal: its mean and scale)."""
    if isinstance(out, torch.distributions.Categorical):
        return out.logits.flatten()
    if isinstance(out, torch.distributions.Normal):
        return torch.cat([out.loc.flatten(), out.scale.flatten()])
    if isinstance(out, (tuple, list)):
        return torch.cat([flat(o).to(torch.float64) for o in out])
    return flat_output(out).to(torch.float64)


ZOO10 = {
    "deeponet": (DeepONet, lambda: (torch.randn(3, 6), torch.rand(3, 5, 1))),
    "schnet": (SchNet, lambda: (torch.randint(0, 5, (3, 4)), torch.randn(3, 4, 3))),
    "egnn": (EGNN, lambda: (torch.randn(3, 4, 6), torch.randn(3, 4, 3))),
    "nbeats": (NBeats, lambda: (torch.randn(3, 12),)),
    "tft": (TFTVariableSelection, lambda: (torch.randn(3, 5, 3), torch.randn(3, 4))),
    "informer": (Informer, lambda: (torch.randn(3, 10, 2),)),
    "patchtst": (PatchTST, lambda: (torch.randn(3, 2, 16),)),
    "deepar": (DeepAR, lambda: (torch.randn(3, 6), torch.randn(3, 6, 2))),
    "actor-critic": (ActorCritic, lambda: (torch.randn(3, 6),)),
    "actor-critic-normal": (lambda: ActorCritic(continuous=True), lambda: (torch.randn(3, 6),)),
    "dueling-dqn": (DuelingDQN, lambda: (torch.randn(3, 2, 7, 7),)),
    "sampled-policy": (SampledPolicy, lambda: (torch.randn(3, 6),)),
    "fast-weights": (FastWeights, lambda: (torch.randn(3, 5, 8),)),
    "steered": (Steered, lambda: (torch.randn(3, 8),)),
    "autocast": (Autocast, lambda: (torch.randn(3, 8),)),
}

# what stays digital, by name: the products of activations of the module computing them
# (DeepONet's and SchNet's einsums, the ProbSparse attention, the fast-weight reads),
# SchNet's embedding, N-BEATS's fixed polynomial bases (buffers read by a matmul)
_DIGITAL = {
    "deeponet": {"model"},
    "schnet": {"embed", "model"},
    "nbeats": {"blocks.0.vb", "blocks.0.vf"},
    "informer": {"attn"},
    "patchtst": {"encoder.layers.0.self_attn"},
    "fast-weights": {"model"},
}
# the integer re-implementation covers Linear / Conv / MHA; DeepAR's LSTM is not in it
_NOT_EXACT = {"deepar"}
# 2-D parameters no product reads: PatchTST's learned positions (added)
_NOT_MATRICES = {"patchtst": ("pos",)}


class Flat(nn.Module):
    """The model's outputs as one tensor (distributions as their parameters); ``sampled``: the
    global generator seeded before each call and the drawn action left out (an integer)."""

    def __init__(self, model: nn.Module, sampled: bool = False):
        super().__init__()
        self.model, self.sampled = model, sampled

    def forward(self, *args):
        if self.sampled:
            torch.manual_seed(7)
            return flat(self.model(*args)[1:])
        return flat(self.model(*args))


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO10[name], dtype)


def _call(model, args, seed: int = 7):
    torch.manual_seed(seed)  # the sampled policy draws from the global generator
    return model(*args)


@pytest.mark.parametrize("name", list(ZOO10))
def test_lossless_deploy_is_the_quantized_model_and_near_float(name):
    model, args = _build(name)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    with torch.no_grad():
        ref = _call(model, args)
    got = _call(sim, args)
    assert type(got) is type(ref)
    if name not in _NOT_EXACT:
        with torch.no_grad():
            want = _call(reference_model(model, sim), args)
        assert_bitwise(flat(got), flat(want))
    if name == "sampled-policy":  # the same draw: the same action as float
        assert torch.equal(got[0], ref[0])
    assert float((flat(got) - flat(ref)).norm() / flat(ref).norm()) < 0.03
    assert sim.n_inferences == args[0].shape[0]
    assert {d[0] for d in sim.digital} == _DIGITAL.get(name, set())


@pytest.mark.parametrize("name", list(ZOO10))
def test_rram_deploy_runs_reports_and_accounts_for_every_matrix(name):
    model, args = _build(name)
    with torch.no_grad():
        want = flat(_call(model, args))
    # DeepONet's output (a sum of 5 products) is small beside rram-22nm's conversion noise
    chip = _rram_noise_free() if name == "deeponet" else _rram()
    sim = _quiet(cimsim.deploy, model, chip, args)
    got = flat(_call(sim, args))
    if name == "sampled-policy":  # the action drawn may differ: its log-probabilities
        got, want = got[3:], want[3:]
    check_lossy_run(got.float(), want.float(), sim)
    check_every_matrix(model, sim, _DIGITAL.get(name, set()), _NOT_MATRICES.get(name, ()))


@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", [n for n in ZOO10 if n != "autocast"])
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    model, args = _build(name, torch.float64)
    chip_cfg = lossless_chip("channel") if chip == "ideal" else _rram_noise_free()

    prep = prepare_step_deploy(Flat(model, name == "sampled-policy"), chip_cfg, args, 0,
                               main=lambda y: y)
    assert {d[0] for d in prep.digital} == {"model." + d if d != "model" else "model"
                                            for d in _DIGITAL.get(name, set())}


def test_autocast_inside_the_forward_deploys_and_trains():
    """``torch.autocast(bfloat16)`` inside the model's forward: deploy on rram-22nm failed in
    the engine's float32 GEMM ('Got unsupported ScalarType BFloat16': the arrays' sums ran
    under the model's autocast). The twin trains under it and deploys to what it computes
    (to bfloat16's rounding of the float ops between the layers, not float64's 1e-9)."""
    model, args = _build("autocast")  # float32: its forward casts back with .float()
    sim = _quiet(cimsim.deploy, model, _rram(), args)
    assert torch.isfinite(sim(*args)).all()
    prep = _quiet(prepare, model, _rram_noise_free(), args)
    opt = torch.optim.SGD(prep.parameters(), lr=1e-2)
    prep.train()(*args).pow(2).mean().backward()
    opt.step()
    prep.eval()
    with torch.no_grad():
        want = prep(*args)
    torch.testing.assert_close(prep.deploy()(*args), want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# a forward that differentiates itself: PINN, HNN
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, layer", [(PINN, "net.0"), (HNN, "h.0")])
def test_a_forward_taking_gradients_is_refused_by_deploy_and_trained_by_the_twin(make, layer):
    """A deployed layer computes on the chip (NumPy) and has no gradient: deploy says so,
    naming the first layer the gradient runs through (it was torch's 'element 0 of tensors
    does not require grad' from inside the functional watch). ``prepare``'s calibration pass
    carried no gradient either (the same error); its twin now trains on a loss of the
    derivatives (create_graph: second derivatives of the twin), and its deploy refuses as
    deploy does."""
    torch.manual_seed(0)
    model = make().double().eval()
    x = torch.randn(6, 2, dtype=torch.float64)
    with pytest.raises(MappingError, match=rf"^{layer}: the model's forward asks for gradients"):
        _quiet(cimsim.deploy, model, lossless_chip("channel"), x)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    with torch.no_grad():  # the twin's outputs: the float model's to 8-bit quantization
        got, want = prep.eval()(x), model(x)
    assert float((got - want).norm() / want.norm()) < 0.1
    before = [p.detach().clone() for p in prep.parameters()]
    opt = torch.optim.SGD(prep.parameters(), lr=1e-2)
    out = prep.train()(x)
    loss = (out[:, 2] - out[:, 3]).pow(2).mean() if make is PINN else out.pow(2).mean()
    loss.backward()
    assert prep.model.get_submodule(layer).twins[0].weight.grad.abs().sum() > 0
    opt.step()
    assert any(not torch.equal(p, b) for p, b in zip(prep.parameters(), before, strict=True))
    with pytest.raises(MappingError, match=rf"^{layer}: .* has no gradient"):
        prep.eval().deploy()(x)


# ---------------------------------------------------------------------------------------------
# meta-learning: functional_call with adapted parameters
# ---------------------------------------------------------------------------------------------
def test_functional_call_with_adapted_weights_is_refused_not_ignored():
    """``torch.func.functional_call(net, adapted, x)`` on a deployed or prepared net set the
    adapted tensors as plain attributes of the mapped layers, which never read them: the
    programmed (or twin) weights computed, silently. Refused by name now. On the prepared
    model the twin's own names take adapted weights (they are its parameters)."""
    torch.manual_seed(0)
    net = mlp(4, 8, 3, act=nn.ReLU).eval()
    x = torch.randn(5, 4)
    adapted = {n: p.detach() + 0.5 for n, p in net.named_parameters()}
    sim = _quiet(cimsim.deploy, net, lossless_chip("channel"), x)
    with pytest.raises(MappingError, match=r"^0: called with \.bias, \.weight set from outside"):
        torch.func.functional_call(sim.model, adapted, (x,))
    prep = _quiet(prepare, net, lossless_chip("channel"), x).eval()
    with pytest.raises(MappingError, match=r"^0: called with .*NAME\.twins\.0\.weight"):
        torch.func.functional_call(prep.model, adapted, (x,))
    own = {n: p.detach() * 1.05 for n, p in prep.named_parameters()
           if n.endswith(("twins.0.weight", "twins.0.bias"))}
    with torch.no_grad():
        got = torch.func.functional_call(prep, own, (x,))
        want = torch.func.functional_call(
            net, {n: p.detach() * 1.05 for n, p in net.named_parameters()}, (x,))
    assert float((got - want).norm() / want.norm()) < 0.05  # the adapted net, quantized
    assert not torch.equal(prep(x), got)  # and the programmed weights are left as they were


def test_maml_inner_step_in_the_forward_is_named():
    """MAML's forward differentiates the net's own parameters: a deployed net holds none
    (the weights are on the arrays) and neither does a twin in its calibration pass, so
    ``autograd.grad`` of no parameters failed with torch's bare "`inputs` argument to
    `grad()` cannot be empty"; said with the reason and the way out now."""
    torch.manual_seed(0)
    model = MAML().eval()
    args = (torch.randn(3, 4), torch.tensor([0, 1, 2]), torch.randn(3, 4))
    for run, who in ((cimsim.deploy, "deploy"), (prepare, "prepare")):
        with pytest.raises(MappingError, match=rf"^{who}: the model's forward takes gradients "
                                               r"torch cannot give .*cannot be empty.*MAML"):
            _quiet(run, model, lossless_chip("channel"), args)


# ---------------------------------------------------------------------------------------------
# a sparse weight, a fake-quantizing Linear
# ---------------------------------------------------------------------------------------------
def test_a_sparse_coo_weight_is_named():
    """torch cannot deep-copy a sparse Parameter ('unsupported memory format option
    Preserve', from inside copy.deepcopy): the parameter and its layout are named."""
    torch.manual_seed(0)
    model = SparseNet().eval()
    for run in (cimsim.deploy, prepare):
        with pytest.raises(MappingError, match=r"sparse parameter .*fc1\.weight "
                                               r"\(torch\.sparse_coo\).*to_dense"):
            run(model, lossless_chip("channel"), torch.randn(3, 8))


def test_a_brevitas_style_quant_linear_is_named_as_not_mappable():
    """A Linear subclass fake-quantizing its weight in its own forward: the arrays would not
    run it with the raw weight; each is named with the reason (nothing else to map here)."""
    torch.manual_seed(0)
    with pytest.raises(MappingError, match=r"fc1 \(QuantLinear: not mappable: fc1: QuantLinear "
                                           r"overrides Linear\.forward.*fc2 \(QuantLinear"):
        cimsim.deploy(QuantNet().eval(), lossless_chip("channel"), torch.randn(3, 8))
