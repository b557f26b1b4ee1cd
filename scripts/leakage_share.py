"""ADC leakage share of a model's energy under each power-gating policy (docs/cost-model.md §4).

    python scripts/leakage_share.py [--chip rram-22nm] [--n 64]

Deploys the bundled ResNet-20-style digits network (``cimsim.models.load_resnet_digits``) on
the chip, runs ``--n`` test digits, and prints the share of ``adc/leak`` in the energy per
inference with ``tech.power_gating = "none"`` and ``"layer"`` (the events are the same run's;
only the pricing differs).
"""

from __future__ import annotations

import argparse
import sys

import torch

import cimsim
from cimsim.cost import estimate
from cimsim.data import load_digits_split
from cimsim.models import load_resnet_digits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chip", default="rram-22nm")
    ap.add_argument("--n", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    x_train, _, x_test, _ = load_digits_split()
    model = load_resnet_digits().eval()
    chip = cimsim.load_chip(args.chip)
    sim = cimsim.deploy(model, chip, calibration=x_train[:64], seed=0)
    with torch.no_grad():
        sim(x_test[:args.n])
    work = sim.work()
    for gating in ("none", "layer"):
        c = chip.replace(tech=chip.tech.replace(power_gating=gating))
        rep = estimate(work, c)
        total = rep.totals["energy_pj_per_inference"]
        leak = sum(r["energy_pj_per_inference"] for r in rep.events if r["action"] == "leak")
        print(f"{args.chip} power_gating={gating:<5} energy {total:,.0f} pJ/inference, "
              f"ADC leakage {100 * leak / total:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
