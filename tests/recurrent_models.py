"""Small recurrent models shared by the tests of inputs beside the first (initial states)."""

from __future__ import annotations

import torch
from torch import nn


class StateLSTM(nn.Module):
    """An LSTM run from a given ``(h0, c0)`` state, its last step classified."""

    def __init__(self):
        super().__init__()
        self.rnn, self.fc = nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 4)

    def forward(self, x, hc):
        return self.fc(self.rnn(x, hc)[0][:, -1])


def state_lstm_data(n: int = 16) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``n`` sequences of 10 steps and their initial ``(h0, c0)``, each (1, n, 16)."""
    return torch.randn(n, 10, 8), (torch.randn(1, n, 16), torch.randn(1, n, 16))
