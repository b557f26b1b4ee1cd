"""Label-free fine-tuning (issue 10, item 3): ``cimsim.train.distill`` raises the cosine of a
prepared model to its float teacher on a lossy chip; the epoch loop resumes exactly; bad
arguments are ``ConfigError``s naming the argument."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.config import CalibrationGranularity
from cimsim.data import load_digits_split
from cimsim.errors import ConfigError
from cimsim.train import distill, prepare
from cimsim.train.columnquant import columnquant_optimizer
from cimsim.train.distill import distillation_loss, output_cosine
from cimsim.train.loop import as_tensors, param_groups, train_epoch

from ..recurrent_models import StateLSTM, state_lstm_data


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, _ = load_digits_split()
    return x_train.flatten(1), y_train, x_test.flatten(1)


@pytest.fixture(scope="module")
def teacher(digits):
    """A 64-32-10 MLP trained in float on the digits (full batch, 100 Adam steps)."""
    x, y, _ = digits
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def lossy_chip():
    """rram-22nm with a 4-bit ADC whose range is calibrated once per layer."""
    chip = cimsim.load_chip("rram-22nm")
    return chip.replace(adc=chip.adc.replace(
        bits=4, calibration_granularity=CalibrationGranularity.LAYER))


def test_distillation_raises_cosine_to_teacher(digits, teacher, lossy_chip):
    from cimsim.evaluate import accuracy

    x_train, _, x_test = digits
    y_test = load_digits_split()[3]
    prepared = prepare(teacher, lossy_chip, x_train[:128], seed=0, train_noise=False)
    before = output_cosine(prepared, teacher, x_test)
    acc_before = accuracy(prepared.eval(), x_test, y_test)
    history = distill(prepared, teacher, x_train[:512], epochs=3, lr=3e-3, progress=False)
    after = output_cosine(prepared, teacher, x_test)
    # the figures of docs/training.md (pytest -s -k raises_cosine_to_teacher)
    print(f"float {accuracy(teacher, x_test, y_test):.1%}; cosine to the teacher {before:.3f} "
          f"-> {after:.3f}, twin accuracy {acc_before:.1%} -> "
          f"{accuracy(prepared.eval(), x_test, y_test):.1%}")
    assert set(history) == {"loss", "epochs", "n_inputs"}
    assert len(history["loss"]) == 3 and history["n_inputs"] == 512
    assert history["loss"][-1] < history["loss"][0]
    assert before < 0.98  # the chip is lossy for this model ...
    assert after > before + 0.005  # ... and distillation on held-apart inputs recovers part
    assert not prepared.training
    # the teacher is untouched
    assert all(p.grad is None for p in teacher.parameters()) and not teacher.training


def test_intermediate_layers_and_cosine_loss(digits, teacher, lossy_chip):
    x_train, _, _ = digits
    prepared = prepare(teacher, lossy_chip, x_train[:128], seed=0, train_noise=False)
    with distillation_loss(prepared, teacher, loss="cosine", layers=["1"]) as fn:
        with_layer = float(fn(x_train[:64]).detach())
    with distillation_loss(prepared, teacher, loss="cosine") as fn:
        out_only = float(fn(x_train[:64]).detach())
    assert with_layer > out_only > 0  # the ReLU output "1" adds its own mismatch
    # the hooks are gone after the block
    assert not prepared.model[1]._forward_hooks and not teacher[1]._forward_hooks
    history = distill(prepared, teacher, (x_train[:128], None), epochs=1, layers=["1"],
                      loss="cosine", progress=False)
    assert np.isfinite(history["loss"][0])


def test_cosine_loss_and_output_cosine_are_means_over_inputs_by_hand():
    """``loss="cosine"`` is the mean over inputs of ``1 - cos`` of each input's flattened
    output, and ``output_cosine`` the mean of those cosines over all inputs whatever the
    batch size (docs: distillation_loss, output_cosine): both by hand on a linear teacher and
    a student prepared from other weights (the cosine of the whole batch as one vector, or a
    mean of batch means, is another number)."""
    torch.manual_seed(0)
    teacher = nn.Linear(6, 3).double().eval()
    student = nn.Linear(6, 3).double()
    x = torch.rand(10, 6, dtype=torch.float64) - 0.3
    prepared = prepare(student, cimsim.load_chip("ideal"), x, train_noise=False).eval()
    with torch.no_grad():
        s, t = prepared(x).numpy(), teacher(x).numpy()
    cos = (s * t).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(t, axis=1))
    assert np.ptp(cos) > 0.1  # the inputs disagree by different amounts
    with distillation_loss(prepared, teacher, loss="cosine") as fn:
        assert float(fn(x).detach()) == pytest.approx(float(np.mean(1 - cos)), rel=1e-9)
    for batch_size in (3, 4, 10, 256):
        assert output_cosine(prepared, teacher, x, batch_size=batch_size) == pytest.approx(
            float(cos.mean()), rel=1e-9)


def test_epochs_resume_exactly(digits, teacher, lossy_chip):
    """Epoch e depends on (seed, e) only: epochs 0 and 1 in one go equal epoch 1 run after a
    restored state of epoch 0 (what ``cimsim train`` relies on to resume)."""
    x_train = digits[0][:256]

    def start():
        prepared = prepare(teacher, lossy_chip, x_train[:64], seed=0)  # training noise on
        return prepared, torch.optim.Adam(param_groups(prepared, 1e-3))

    def run(prepared, opt, epoch):
        with distillation_loss(prepared, teacher) as fn:
            return train_epoch(prepared, (x_train,), fn, opt, batch_size=64, seed=3,
                               epoch=epoch, progress=False)

    a, opt_a = start()
    run(a, opt_a, 0)
    state = copy.deepcopy((a.state_dict(), opt_a.state_dict()))
    loss_a = run(a, opt_a, 1)
    b, opt_b = start()
    b.load_state_dict(state[0])
    opt_b.load_state_dict(state[1])
    torch.manual_seed(12345)  # the caller's RNG state does not matter
    assert run(b, opt_b, 1) == loss_a
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_step_sizes_learn_at_their_own_scale(digits, teacher, lossy_chip):
    prepared = prepare(teacher, lossy_chip, digits[0][:64], seed=0)
    groups = param_groups(prepared, 1e-3)
    assert groups[0]["lr"] == 1e-3
    twin = next(t for _, t in prepared.twins())
    step_lr = {id(g["params"][0]): g["lr"] for g in groups[1:]}
    assert step_lr[id(twin.act_scale)] == pytest.approx(1e-3 * float(twin.act_scale.detach()))
    n = sum(len(g["params"]) for g in groups)
    assert n == len([p for p in prepared.parameters() if p.requires_grad])


def test_a_frozen_source_model_is_said_to_train_only_its_steps(digits, teacher, lossy_chip):
    # a model built frozen for inference (requires_grad_(False)) stays frozen in the twin:
    # the distillation then moves only step sizes, which is said, not done quietly
    frozen = copy.deepcopy(teacher).requires_grad_(False)
    prepared = prepare(frozen, lossy_chip, digits[0][:64], seed=0, train_noise=False)
    weights = [t.weight for _, t in prepared.twins()]
    assert weights and not any(w.requires_grad for w in weights)
    before = [w.detach().clone() for w in weights]
    with pytest.warns(UserWarning, match=r"requires_grad_\(True\) before prepare"):
        distill(prepared, teacher, digits[0][:64], epochs=1, lr=1e-3, progress=False)
    assert all(torch.equal(w, b) for w, b in zip(weights, before, strict=True))
    with pytest.warns(UserWarning, match="only the .* step-size parameters learn"):
        columnquant_optimizer(prepared)  # ColumnQuant's own optimizer says it too
    # unfrozen, the weights train and nothing is said
    prepared = prepare(copy.deepcopy(frozen).requires_grad_(True), lossy_chip,
                       digits[0][:64], seed=0, train_noise=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        groups = param_groups(prepared, 1e-3)
    assert all(t.weight.requires_grad for _, t in prepared.twins())
    assert groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("kwargs, name", [
    ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"), ({"epochs": True}, "epochs"),
    ({"lr": 0.0}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": "fast"}, "lr"),
    ({"batch_size": 0}, "batch_size"), ({"layers": "1"}, "layers"),
    ({"layers": ["no.such"]}, "layers"), ({"loss": "kl"}, "loss"), ({"seed": 1.0}, "seed"),
])
def test_bad_arguments_name_the_argument(digits, teacher, lossy_chip, kwargs, name):
    prepared = prepare(teacher, lossy_chip, digits[0][:32], seed=0)
    with pytest.raises(ConfigError, match=rf"^{name}\b"):
        distill(prepared, teacher, digits[0][:32], progress=False, **kwargs)


@pytest.mark.parametrize("data, match", [
    ("not data", "data must be"), (torch.zeros(0, 64), "data is empty"),
    ((), "data must be"),
])
def test_bad_data(digits, teacher, lossy_chip, data, match):
    prepared = prepare(teacher, lossy_chip, digits[0][:32], seed=0)
    with pytest.raises(ConfigError, match=match):
        distill(prepared, teacher, data, progress=False)


def test_training_tensors_must_align():
    with pytest.raises(ConfigError, match="data: the tensors differ"):
        as_tensors("data", (torch.zeros(4, 64), torch.zeros(3)))


def test_bad_prepared_and_teacher(digits, teacher, lossy_chip):
    prepared = prepare(teacher, lossy_chip, digits[0][:32], seed=0)
    with pytest.raises(ConfigError, match="^prepared must be"):
        distill(teacher, teacher, digits[0][:32], progress=False)
    with pytest.raises(ConfigError, match="^teacher must be"):
        distill(prepared, "teacher", digits[0][:32], progress=False)


def test_a_model_returning_a_dict_of_heads_is_distilled_on_all_of_them():
    """A multi-head model's dict output was refused ("distillation matches tensors", no way
    out): its float tensors are matched together, each input's row of all heads."""
    from cimsim.train.distill import _tensor_of

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk, self.cls, self.box = nn.Linear(6, 8), nn.Linear(8, 3), nn.Linear(8, 2)

        def forward(self, x):
            h = torch.relu(self.trunk(x))
            return {"cls": self.cls(h), "box": self.box(h), "count": torch.tensor(3)}

    torch.manual_seed(0)
    model, x = Heads().eval(), torch.randn(64, 6)
    out = model(x)
    joined = _tensor_of(out, "the model")
    assert torch.equal(joined, torch.cat([out["cls"], out["box"]], dim=1))
    prep = prepare(model, "rram-22nm", calibration=x)
    history = distill(prep, model, x, epochs=1)
    assert len(history["loss"]) == 1 and history["loss"][0] >= 0
    with pytest.raises(ConfigError, match="one row per input"):
        _tensor_of({"a": torch.zeros(2, 3), "b": torch.zeros(5)}, "the model")


class _StateLogged(nn.Module):
    """A GRU run from a given initial state, logging which sample's sequence met which
    sample's state (each carries its sample's index in its first feature)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)
        self.pairs: list[tuple[list[float], list[float]]] = []

    def forward(self, x, h0):
        self.pairs.append((x[:, 0, 0].tolist(), h0[0, :, 0].tolist()))
        return self.fc(self.rnn(x, h0)[0][:, -1])


@pytest.mark.parametrize("as_dict", [False, True])
@pytest.mark.parametrize("batch_size", [8, 3])
def test_an_initial_state_is_cut_and_shuffled_with_its_sequence(as_dict, batch_size):
    """A ``(layers, B, H)`` state is cut along its dimension 1, with its own sample's
    sequence: it was passed whole, each shuffled sequence run from another sample's state
    without a word (or a shape error at a batch smaller than the data), and a tuple of the
    two was refused."""
    torch.manual_seed(0)
    model, n = _StateLogged().eval(), 8
    x, h0 = torch.randn(n, 10, 8), torch.randn(1, n, 16)
    x[:, :, 0] = torch.arange(float(n))[:, None]
    h0[0, :, 0] = torch.arange(float(n))
    prepared = prepare(model, "ideal", calibration=(x, h0), seed=0)
    model.pairs.clear()
    data = {"x": x, "h0": h0} if as_dict else (x, h0)
    out = distill(prepared, model, data, epochs=1, batch_size=batch_size, progress=False)
    assert out["n_inputs"] == n
    seen = [i for xs, _ in model.pairs for i in xs]
    assert sorted(seen) == list(map(float, range(n)))  # every sample once (teacher's calls)
    assert all(xs == hs for xs, hs in model.pairs)


def test_a_sequence_first_model_with_a_state_is_distilled_along_its_batch():
    class SeqFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.GRU(8, 16), nn.Linear(16, 4)

        def forward(self, x, h0):
            return self.fc(self.rnn(x, h0)[0][-1])

    torch.manual_seed(0)
    model = SeqFirst().eval()
    x, h0 = torch.randn(10, 16, 8), torch.randn(1, 16, 16)
    prepared = prepare(model, "ideal", calibration=(x, h0), seed=0, batch_dim=1)
    for data in ((x, h0), {"x": x, "h0": h0}):  # a dict was refused at batch_dim = 1
        assert distill(prepared, model, data, batch_size=4, progress=False)["n_inputs"] == 16


def test_a_two_input_teacher_given_one_tensor_is_told_what_it_needs():
    torch.manual_seed(0)
    model = StateLSTM().eval()
    x, hc = state_lstm_data()
    prepared = prepare(model, "ideal", calibration=(x, hc), seed=0)
    with pytest.raises(ConfigError, match=r"needs 2 inputs \(x, hc\); data gives 1"):
        distill(prepared, model, x, progress=False)
    labels = torch.zeros(16, dtype=torch.long)  # after the inputs: ignored
    assert distill(prepared, model, (x, hc, labels), batch_size=4,
                   progress=False)["n_inputs"] == 16
