#!/usr/bin/env python
"""The training methods on architectures the other studies never trained: a depthwise-separable
CNN with BatchNorm and dropout, a one-block ViT over 2x2 patches, an MLP-Mixer and a GRU that
reads the 8 rows of a digit as a sequence (defined here, trained in float on the bundled digits,
seeds fixed).

Reproduce the table of docs/training.md §10 (from the repository root)::

    python scripts/methods_on_architectures.py --epochs 3

For every model and chip: the float accuracy, ``cimsim.deploy`` of the float model, then each
method for ``--epochs`` epochs as ``cimsim train --method`` runs it (Adam at ``--lr`` with the
twin's per-scale learning rates, cross-entropy on the labels, or the distillation MSE for
``distill``), the twin's eval accuracy (noise off), the twin with the chip's conversion noise on,
and ``prepared.deploy()``'s accuracy on the 449 test images. ``--quick``: one model, one chip,
two methods, 128 training images.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.config import ChipConfig
from cimsim.data import load_digits_split
from cimsim.errors import ConfigError
from cimsim.evaluate import accuracy
from cimsim.train import prepare
from cimsim.train.bskmq import prepare_bskmq
from cimsim.train.columnquant import deploy_columnquant, prepare_columnquant
from cimsim.train.distill import distillation_loss
from cimsim.train.methods import parse_method
from cimsim.train.pimqat import prepare_pimqat


def patches(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, 8, 8) digits as (B, 16, 4): sixteen 2x2 patches."""
    b = x.shape[0]
    return x.reshape(b, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(b, 16, 4)


class SeparableCNN(nn.Module):
    """Conv-BN-ReLU, depthwise 3x3-BN-ReLU, pointwise 1x1-BN-ReLU, pool, dropout, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
                                nn.BatchNorm2d(16), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(32 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.pw(self.dw(self.stem(x))))
        return self.fc(self.drop(torch.flatten(x, 1)))


class TinyViT(nn.Module):
    """Patch embedding, learned positions, one pre-norm block (4-head attention, GELU MLP)."""

    def __init__(self, d: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(4, d)
        self.pos = nn.Parameter(torch.randn(1, 16, d) * 0.02)
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.ln3 = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(patches(x)) + self.pos
        h = self.ln1(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        t = t + self.mlp(self.ln2(t))
        return self.head(self.ln3(t).mean(1))


class Mixer(nn.Module):
    """MLP-Mixer: one token-mixing and one channel-mixing MLP (LayerNorm, GELU)."""

    def __init__(self, d: int = 32, tokens: int = 16) -> None:
        super().__init__()
        self.embed = nn.Linear(4, d)
        self.ln1 = nn.LayerNorm(d)
        self.tok = nn.Sequential(nn.Linear(tokens, 32), nn.GELU(), nn.Linear(32, tokens))
        self.ln2 = nn.LayerNorm(d)
        self.ch = nn.Sequential(nn.Linear(d, 64), nn.GELU(), nn.Linear(64, d))
        self.ln3 = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(patches(x))
        t = t + self.tok(self.ln1(t).transpose(1, 2)).transpose(1, 2)
        t = t + self.ch(self.ln2(t))
        return self.head(self.ln3(t).mean(1))


class RowGRU(nn.Module):
    """A GRU over the 8 rows (8 pixels each), its last state through Linear-ReLU-Linear."""

    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.gru = nn.GRU(8, hidden, batch_first=True)
        self.fc1 = nn.Linear(hidden, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x.reshape(x.shape[0], 8, 8))
        return self.fc2(self.act(self.fc1(h[-1])))


MODELS = {"separable-cnn": SeparableCNN, "vit": TinyViT, "mixer": Mixer, "gru": RowGRU}
CHIPS = ("rram-22nm", "sram-65nm")
METHODS = ("qat", "distill", "pim-qat", "columnquant", "qat+a-shift", "qat+w-reshape",
           "qat+bitaug", "raoq", "bskmq")


def one_thread() -> None:
    """One torch thread, again: the engine's first parallel Numba kernel starts Numba's OpenMP
    threading layer, which sets the OpenMP thread count torch reads (2 on the 2-core machine),
    so a model trained after a ``cimsim.deploy`` in the same process summed in another order
    (other float weights, other figures) than the same model trained first."""
    torch.set_num_threads(1)


def train_float(name: str, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 40,
                seed: int = 0) -> nn.Module:
    """``MODELS[name]`` trained in float with Adam (3e-3, batch 64), seeded."""
    one_thread()
    torch.manual_seed(seed)
    model = MODELS[name]()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], 64):
            idx = order[start:start + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def bskmq_chip(chip: ChipConfig) -> ChipConfig:
    """``chip`` with BS-KMQ's converter: one conversion per output (all input bits at once,
    the weight in one cell, rows for the largest K here) into a 4-b ramp NL-ADC at the layer
    output, fused with the ReLU, its levels fitted by BS-KMQ."""
    return chip.replace(
        weight_bits=4, dac=chip.dac.replace(bits=None),
        device=chip.device.replace(bits_per_cell=3),
        array=chip.array.replace(n_rows=512),
        adc=chip.adc.replace(kind="ramp", bits=4, range_policy="calibrated",
                             calibration_granularity="layer", level_fit="bs_kmq",
                             placement="layer_output", fuse_activation=True))


def noisy_accuracy(prep, x, y) -> float:
    """The eval twin (dropout off, BatchNorm running statistics) with every matrix's
    conversion noise on, as in training."""
    prep.eval()
    for _, twin in prep.twins():
        twin.train()
    try:
        with torch.no_grad():
            return accuracy(prep, x, y, batch_size=None)
    finally:
        prep.eval()


def run(model: nn.Module, chip: ChipConfig, method: str, data, *, epochs: int, lr: float,
        seed: int) -> dict:
    """One row: the twin (noise off / on) and the deployed accuracy after ``epochs`` epochs."""
    x_train, y_train, x_test, y_test = data
    recipe = parse_method(method)
    x_cal = x_train[:256]
    if recipe.bskmq:
        chip = bskmq_chip(chip)
    chip = recipe.chip(chip)
    t0 = time.perf_counter()
    one_thread()
    if recipe.bskmq:
        prep = prepare_bskmq(model, chip, x_cal, seed=seed)
    elif recipe.base == "pim-qat":
        prep = prepare_pimqat(model, chip, x_cal, seed=seed)
    elif recipe.base == "columnquant":  # cimsim train's defaults
        prep = prepare_columnquant(model, chip, x_cal, seed=seed, centre="frozen",
                                   init="engine")
    else:
        prep = prepare(model, chip, x_cal, seed=seed)
    context = (distillation_loss(prep, model) if recipe.base == "distill"
               else contextlib.nullcontext(lambda x, y: F.cross_entropy(prep(x), y)))
    with context as base:
        batches = (x_train,) if recipe.base == "distill" else (x_train, y_train)
        recipe.fit(prep, base, batches, epochs=epochs, lr=lr, seed=seed)
    row = {"twin": accuracy(prep, x_test, y_test, batch_size=None),
           "twin_noisy": noisy_accuracy(prep, x_test, y_test)}
    sim = (deploy_columnquant(prep, x_cal, seed) if recipe.base == "columnquant"
           else prep.deploy(seed))
    row["deployed"] = accuracy(sim, x_test, y_test, batch_size=256)
    row["s"] = time.perf_counter() - t0
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--chips", nargs="+", default=list(CHIPS))
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--limit", type=int, default=0, help="training images (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="gru on rram-22nm, qat and distill, 128 images, 1 epoch")
    args = ap.parse_args()
    if args.quick:
        args.models, args.chips, args.methods = ["gru"], ["rram-22nm"], ["qat", "distill"]
        args.limit, args.epochs = 128, 1
    x_train, y_train, x_test, y_test = load_digits_split()
    fit = (x_train, y_train)
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    data = (x_train, y_train, x_test, y_test)
    print("| model | chip | method | float | deployed, untrained | twin | twin, noise on "
          "| deployed, trained | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model = train_float(name, *fit, seed=args.seed)
        flt = accuracy(model, x_test, y_test, batch_size=None)
        for chip_name in args.chips:
            chip = cimsim.load_chip(chip_name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                before = accuracy(cimsim.deploy(model, chip, x_train[:256], seed=args.seed),
                                  x_test, y_test, batch_size=256)
            for method in args.methods:
                head = f"| {name} | {chip_name} | {method} | {100 * flt:.1f} % | " \
                       f"{100 * before:.1f} % |"
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        r = run(model, chip, method, data, epochs=args.epochs, lr=args.lr,
                                seed=args.seed)
                except ConfigError as exc:
                    print(f"{head} refused: {str(exc)[:120]} | | | |", flush=True)
                    continue
                print(f"{head} {100 * r['twin']:.1f} % | {100 * r['twin_noisy']:.1f} % | "
                      f"**{100 * r['deployed']:.1f} %** | {r['s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
