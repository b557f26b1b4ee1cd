"""What the PIM-QAT and ColumnQuant studies share: data, one-thread torch, QAT epochs, accuracy,
the shared trained start (digital W4A4 QAT, trained once and cached), an incrementally written
CSV."""

from __future__ import annotations

import csv
import hashlib
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import cimsim
from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy
from cimsim.sweep.store import data_fingerprint
from cimsim.train.loop import SCHEDULES, lr_schedule, param_groups, train_epoch

CACHE = Path(".cache/studies")
"""Where :func:`digital_start` keeps its trained twin (gitignored)."""


def add_noisy_chip_args(ap) -> None:
    """The options the PIM-QAT scripts share: the rates of the fine-tuning (and its schedule)
    and of the start (a), the noisy chip of arms (d)-(h) (thermal noise and cubic INL), the
    seed and where the start (a) is cached."""
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam rate of the fine-tuning arms")
    ap.add_argument("--lr-a", type=float, default=1e-3, help="Adam rate of the start (a)")
    ap.add_argument("--schedule", default="constant", choices=SCHEDULES,
                    help="the fine-tuning arms' rate over their epochs (default constant)")
    ap.add_argument("--sigma", type=float, default=0.5, help="thermal noise, LSB")
    ap.add_argument("--cubic", type=float, default=-0.2, help="cubic INL coefficient")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=CACHE, help="where (a) is cached")


def setup(n_train: int, n_test: int):
    """One torch thread (the machine is shared); (x_train, y_train, x_test, y_test) tensors."""
    torch.set_num_threads(1)
    x_tr, y_tr, x_te, y_te = (torch.as_tensor(v) for v in load_digits_split())
    return x_tr[:n_train], y_tr[:n_train], x_te[:n_test], y_te[:n_test]


def qat(prep, x, y, *, epochs: int, lr: float, seed: int, optimizer=None,
        schedule: str = "constant", after_epoch=None) -> list[float]:
    """Cross-entropy QAT epochs (BatchNorm statistics frozen, Adam with per-step rates unless
    ``optimizer``; its rate ``schedule``, ``lr_schedule``); ``after_epoch(e, loss)`` is called
    after epoch e (its mean loss) with the twin in eval mode; the twin is left in eval mode."""
    opt = optimizer or torch.optim.Adam(param_groups(prep, lr))
    batch = 64
    sched = lr_schedule(opt, schedule, epochs=epochs, n=int(x.shape[0]), batch_size=batch)
    losses = []
    for e in range(epochs):
        losses.append(train_epoch(prep, (x, y), lambda a, b: F.cross_entropy(prep(a), b), opt,
                                  batch_size=batch, seed=seed, epoch=e, progress=False,
                                  scheduler=sched))
        prep.eval()
        if after_epoch is not None:
            after_epoch(e, losses[-1])
    return losses


def acc(model, x, y) -> float:
    """Accuracy in % (a twin in eval mode, or a SimModel)."""
    return 100.0 * accuracy(model, x, y, batch_size=64)


class Rows:
    """CSV rows written as they come (a study cut short keeps what it measured)."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fields).writeheader()
        self.t0 = time.perf_counter()

    def add(self, **row) -> None:
        row["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        with self.path.open("a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.fields).writerow(row)
        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def digital_start(x, y, x_cal, *, epochs: int, lr: float, seed: int, cache: Path | None = CACHE):
    """The shared start of every fine-tuning arm: ResNetDigits QAT-trained at W4A4 on a lossless
    chip (``pim_chip('native', adc_bits=24)``: conversions exact), ``epochs`` epochs over
    ``x``, Adam ``lr``. Trained once per setting and cached under ``cache`` (None: not
    cached); the twin is returned in eval mode."""
    from cimsim.models import load_resnet_digits
    from cimsim.train import prepare
    from cimsim.train.pimqat import pim_chip

    prep = prepare(load_resnet_digits(), pim_chip("native", adc_bits=24, rows=128), x_cal,
                   seed=seed)
    # keyed by the data and by cimsim's own sources: a start trained by other code (another
    # twin, quantizer or loop) is trained again, not reused, so a study's figures come from
    # the code that prints them
    sources = sorted(Path(cimsim.__file__).parent.rglob("*.py"))
    code = hashlib.sha256(b"".join(f.read_bytes() for f in sources)).hexdigest()
    tag = hashlib.sha256((data_fingerprint(x, y, x_cal) + code).encode()).hexdigest()[:12]
    path = None if cache is None else cache / f"digital-w4a4-e{epochs}-lr{lr}-s{seed}-{tag}.pt"
    if path is not None and path.is_file():
        prep.load_state_dict(torch.load(path))
        return prep.eval()
    t0 = time.perf_counter()
    losses = qat(prep, x, y, epochs=epochs, lr=lr, seed=seed)
    print(f"digital start: {epochs} epochs, losses {[round(v, 4) for v in losses]}, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # studies run side by side
        torch.save(prep.state_dict(), tmp)
        os.replace(tmp, path)
    return prep
