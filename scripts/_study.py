"""What the PIM-QAT and ColumnQuant studies share: data, one-thread torch, QAT epochs, accuracy,
an incrementally written CSV."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy
from cimsim.train.loop import param_groups, train_epoch


def setup(n_train: int, n_test: int):
    """One torch thread (the machine is shared); (x_train, y_train, x_test, y_test) tensors."""
    torch.set_num_threads(1)
    x_tr, y_tr, x_te, y_te = (torch.as_tensor(v) for v in load_digits_split())
    return x_tr[:n_train], y_tr[:n_train], x_te[:n_test], y_te[:n_test]


def qat(prep, x, y, *, epochs: int, lr: float, seed: int, optimizer=None) -> list[float]:
    """Cross-entropy QAT epochs (BatchNorm statistics frozen, Adam with per-step rates unless
    ``optimizer``); the twin is left in eval mode."""
    opt = optimizer or torch.optim.Adam(param_groups(prep, lr))
    losses = [train_epoch(prep, (x, y), lambda a, b: F.cross_entropy(prep(a), b), opt,
                          batch_size=64, seed=seed, epoch=e, progress=False)
              for e in range(epochs)]
    prep.eval()
    return losses


def acc(model, x, y) -> float:
    """Accuracy in % (a twin in eval mode, or a SimModel)."""
    return 100.0 * accuracy(model, x, y, batch_size=64)


class Rows:
    """CSV rows written as they come (a study cut short keeps what it measured)."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            csv.DictWriter(f, fields).writeheader()
        self.t0 = time.perf_counter()

    def add(self, **row) -> None:
        row["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(row)
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
