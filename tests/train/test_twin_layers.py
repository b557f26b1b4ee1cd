"""Training twins of Conv3d, ConvTranspose1d/2d/3d, RNN/LSTM/GRU and their cells:
``prepare`` maps them as deploy does, the twin equals deploy and ``PreparedModel.deploy()`` on
the lossless chip, gradients reach every parameter, ``float_model`` gives the torch modules
back, and layer types that stay float are listed and warned about."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.train import prepare
from cimsim.train.twin_layers import TwinConv3d, TwinConvTranspose, TwinRNN, TwinRNNCell

from .test_methods_new_models import METHODS, check_method


def _chip():
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(array=chip.array.replace(n_rows=20, n_cols=16), input_bits=6,
                        dac=chip.dac.replace(bits=2))
    return chip.replace(quant=chip.quant.replace(weight_granularity="column"))


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv3d(2, 4, (2, 3, 3), padding=1, groups=2, padding_mode="replicate")
        self.c2 = nn.Conv3d(4, 3, 2, stride=(1, 2, 2), bias=False)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = F.relu(self.c2(F.relu(self.c1(x))))
        return self.fc(h.mean(dim=(2, 3, 4)))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.u1 = nn.ConvTranspose1d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.u2 = nn.ConvTranspose2d(4, 4, (2, 3), stride=(2, 1), groups=2, dilation=(1, 2))
        self.u3 = nn.ConvTranspose3d(4, 2, 2, stride=2, bias=False)

    def forward(self, x):
        h = F.relu(self.u1(x))  # (B, 4, 2L)
        h = F.relu(self.u2(h[:, :, None, :]))  # (B, 4, 2, 2L + 4)
        return self.u3(h[:, :, None])


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
        self.proj = nn.LSTM(10, 6, proj_size=3)
        self.gru = nn.GRU(3, 4, bias=False)
        self.rnn = nn.RNN(4, 4, nonlinearity="relu")

    def forward(self, x):
        h, _ = self.lstm(x)
        h, (hn, _) = self.proj(h.transpose(0, 1))
        g, gn = self.gru(h)
        r, _ = self.rnn(g, gn)
        return torch.cat([h, r], 2)


class Cells(nn.Module):
    """Cells stepped by hand over a (T, B, 3) sequence: LSTMCell -> GRUCell (no bias) ->
    RNNCell (ReLU), each fed back its own state."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTMCell(3, 5)
        self.gru = nn.GRUCell(5, 4, bias=False)
        self.rnn = nn.RNNCell(4, 4, nonlinearity="relu")

    def forward(self, x):
        state, g, r = None, None, None
        outs = []
        for t in range(x.shape[0]):
            state = self.lstm(x[t], state)
            g = self.gru(state[0], g)
            r = self.rnn(g, r)
            outs.append(r)
        return torch.stack(outs)


MODELS = {
    "conv3d": (Video, (2, 2, 4, 5, 5), {"c1": TwinConv3d, "c2": TwinConv3d}, 2 + 1 + 1),
    "conv_transpose": (Decoder, (3, 3, 4), {"u1": TwinConvTranspose, "u2": TwinConvTranspose,
                                            "u3": TwinConvTranspose}, 1 + 2 + 1),
    "recurrent": (Recurrent, (3, 4, 3), {"lstm": TwinRNN, "proj": TwinRNN, "gru": TwinRNN,
                                         "rnn": TwinRNN}, 8 + 3 + 2 + 2),
    "cells": (Cells, (4, 2, 3), {"lstm": TwinRNNCell, "gru": TwinRNNCell, "rnn": TwinRNNCell},
              2 + 2 + 2),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_twin_equals_deploy_and_its_own_deploy_on_the_lossless_chip(kind):
    make, shape, classes, n_twins = MODELS[kind]
    torch.manual_seed(0)
    model = make().double().eval()
    x_cal = torch.randn(6, *shape[1:], dtype=torch.float64)
    x = torch.randn(*shape, dtype=torch.float64)
    chip = _chip()
    sim = cimsim.deploy(model, chip, x_cal, seed=3)
    prep = prepare(model, chip, x_cal, seed=3).eval()
    for name, cls in classes.items():
        assert type(prep.twin_layers[name]) is cls
    assert sum(1 for _ in prep.twins()) == n_twins
    cores = [c.name for layer in sim.sim_layers.values() for c in layer.cores]
    assert [name for name, _ in prep.twins()] == cores  # deploy's names, in deploy's order
    assert prep.digital == sim.digital == []
    with torch.no_grad():
        y_twin = prep(x)
    torch.testing.assert_close(y_twin, sim(x), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(prep.deploy()(x).numpy(), y_twin.numpy())


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_gradients_reach_every_parameter_and_float_model_gives_torch_back(kind):
    make, shape, classes, _ = MODELS[kind]
    torch.manual_seed(1)
    model = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    prep = prepare(model, cimsim.load_chip("rram-22nm"), x, seed=0).train()
    prep(x).square().mean().backward()
    missing = [n for n, p in prep.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert not missing, missing
    back = prep.float_model()
    assert {n: type(m) for n, m in back.named_modules()} == \
        {n: type(m) for n, m in model.named_modules()}
    ref = dict(model.named_parameters())
    for n, p in back.named_parameters():  # untrained: the original weights
        assert torch.equal(p, ref[n]), n
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x), model.eval()(x))


def test_prepare_lists_and_warns_about_layer_types_kept_float():
    class WithEmbedding(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.lstm = nn.LSTM(4, 3)

        def forward(self, tokens):
            return self.lstm(self.emb(tokens))[0]

    tokens = torch.randint(0, 10, (5, 2))
    with pytest.warns(UserWarning, match=r"prepare: 1 layer\(s\) .*emb \(Embedding\)"):
        prep = prepare(WithEmbedding(), _chip(), tokens)
    assert prep.digital == [("emb", "Embedding", "layer type not supported")]
    assert set(prep.twin_layers) == {"lstm"}


@pytest.mark.parametrize("method", [m for m in METHODS if m != "distill"])
def test_every_method_steps_a_model_of_cells_and_deploys_to_its_twin(method):
    """PIM-QAT, ColumnQuant and RAOQ + LoRA on hand-stepped cells (states fed back through the
    twins): one step, then deployed to what the twin computes."""
    torch.manual_seed(2)
    check_method(Cells().double(), (torch.randn(4, 6, 3, dtype=torch.float64),), 1, method)
