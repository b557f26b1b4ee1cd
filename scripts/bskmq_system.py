#!/usr/bin/env python
"""BS-KMQ at system level (issue 12): ResNet-18 at 224x224, the paper's "6/2/3b" reading
(6-bit weights, 2 bits per cell, 3-bit NL-ADC) against an IMC baseline with 7- and 8-bit SARs.

    python scripts/bskmq_system.py       # writes docs/bskmq-system.md and .csv

Costs come from the public estimator only (``cimsim.cost.estimate(sim.work())``, per
inference, today's cost model). The network is ResNet-18's topology (BatchNorm folded into
conv biases, random He-initialised weights: accuracy is not the question, every chip runs
the same model and the same image). The counts that depend on data (DAC pulses, cell reads)
come from one random-normal 224x224 image. All chips are ``rram-22nm`` (22 nm RRAM, ideal
devices and no noise so that only the architecture differs) with 6-bit weights, 8-bit inputs
and enough tiles to hold every weight (no time-multiplexing):

- ``SAR-8`` / ``SAR-7``: the baseline, 128x128 arrays, 2-bit cells, differential weights,
  bit-serial inputs, an 8- / 7-bit SAR on every partial sum (calibrated per column);
- ``NL-3 partial-sum``: the same arrays and drive, a 3-bit in-memory ramp NL-ADC (levels
  ``bs_kmq``) instead of the SAR on every partial sum: the ADC swap alone;
- ``NL-3 layer-output``: the BS-KMQ setting as cimsim can map it: one conversion per output
  (all 8 input bits at once, the whole dot product in one column: 4,608-row arrays and the
  6-bit weight in one 5-bit signed cell, since a layer-output ADC cannot sum 2-bit slices),
  the 3-bit ramp NL-ADC fused with the ReLU where a ReLU follows.
One thread; the engine runs each chip once (minutes each on the 2-core machine).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

import cimsim
from cimsim._atomic import write_text
from cimsim.cost import estimate

DOCS = Path(__file__).resolve().parent.parent / "docs"


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.down = (nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout
                     else nn.Identity())
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(self.conv2(self.relu1(self.conv1(x))) + self.down(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al., CVPR 2016) with BatchNorm folded into the conv biases."""

    def __init__(self, n_classes: int = 1000):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 7, 2, 3)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2, 1)
        chans = [64, 64, 128, 256, 512]
        blocks = []
        for i in range(4):
            blocks += [Block(chans[i], chans[i + 1], 1 if i == 0 else 2),
                       Block(chans[i + 1], chans[i + 1], 1)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(512, n_classes)
        gen = torch.Generator().manual_seed(0)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen)
                                   * np.sqrt(2.0 / fan_in))
                    m.bias.copy_(0.01 * torch.randn(m.bias.shape, generator=gen))

    def forward(self, x):
        return self.fc(self.head(self.blocks(self.pool(self.relu(self.stem(x))))))


def chips() -> dict[str, cimsim.ChipConfig]:
    base = cimsim.load_chip("rram-22nm")
    base = base.replace(
        weight_bits=6, input_bits=8,
        device=base.device.replace(variation="none", variation_sigma=0.0, bits_per_cell=2),
        noise=base.noise.replace(thermal_sigma_lsb=0.0),
        array=base.array.replace(n_tiles=4096))
    out = {}
    for b in (8, 7):
        out[f"SAR-{b}"] = base.replace(adc=base.adc.replace(bits=b))
    ramp = base.adc.replace(kind="ramp", bits=3, level_fit="bs_kmq",
                            calibration_stat="minmax")
    out["NL-3 partial-sum"] = base.replace(adc=ramp)
    out["NL-3 layer-output"] = base.replace(
        weight_encoding="signed_cell", dac=base.dac.replace(bits=None),
        device=base.device.replace(bits_per_cell=5),
        array=base.array.replace(n_rows=4608, n_cols=128, n_tiles=512),
        adc=ramp.replace(placement="layer_output", calibration_granularity="column"))
    return out


def adc_latency_share(rep) -> float:
    """Share of the latency the busiest ADCs spend converting: each block's ADC duty, weighted
    by its latency (``CostReport.blocks``)."""
    lat = np.array([b["latency_ns"] for b in rep.blocks], dtype=float)
    duty = np.array([b["adc_duty"] for b in rep.blocks], dtype=float)
    return float((lat * duty).sum() / lat.sum()) if lat.sum() > 0 else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="image side (default 224)")
    ap.add_argument("--out", type=Path, default=DOCS / "bskmq-system")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    model = ResNet18().eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, args.size, args.size, generator=gen)
    rows = []
    for name, chip in chips().items():
        t0 = time.perf_counter()
        sim = cimsim.deploy(model, chip, x[:1], seed=0)
        with torch.no_grad():
            sim(x[1:2])
        rep = estimate(sim.work())
        tot = rep.totals
        by = tot["energy_pj_per_inference_by_component"]
        rows.append({
            "chip": name, "adc": f"{chip.adc.kind.value} {chip.adc.bits} b "
                                 f"({chip.adc.placement.value})",
            "energy_uj": tot["energy_pj_per_inference"] * 1e-6,
            "latency_us": tot["latency_ns_per_inference"] * 1e-3,
            "tops_per_w": tot["tops_per_w"], "area_mm2": tot["area_mm2_used"],
            "adc_energy_share": by.get("adc", 0.0) / tot["energy_pj_per_inference"],
            "adc_latency_share": adc_latency_share(rep),
            "fused": len(sim.fused_activations),
            "seconds": round(time.perf_counter() - t0, 1)})
        r = rows[-1]
        print(f"{name:<20} {r['energy_uj']:.4g} uJ  {r['latency_us']:.4g} us  "
              f"{r['tops_per_w']:.3g} TOPS/W  ADC {100 * r['adc_energy_share']:.1f} % of "
              f"energy, {100 * r['adc_latency_share']:.1f} % of latency  ({r['seconds']} s)",
              flush=True)
    df = pd.DataFrame(rows)
    for ref in ("SAR-8", "SAR-7"):
        e = float(df.loc[df.chip == ref, "energy_uj"].iloc[0])
        t = float(df.loc[df.chip == ref, "latency_us"].iloc[0])
        df[f"speedup_vs_{ref}"] = t / df["latency_us"]
        df[f"energy_eff_vs_{ref}"] = e / df["energy_uj"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out.with_suffix(".csv"), index=False)
    elapsed = time.perf_counter() - t_start
    lines = ["# BS-KMQ at system level: ResNet-18, 3-bit NL-ADC vs 7-8-bit SAR", "",
             f"Generated by `python scripts/bskmq_system.py` ({time.strftime('%Y-%m-%d')}, one "
             f"thread, {elapsed / 60:.1f} min; {args.size}x{args.size} input; today's cost "
             "model through `cimsim.cost.estimate`). Chips and model: the script's docstring; "
             "reading: `docs/papers.md` (BS-KMQ).", "",
             "| chip | ADC | energy (µJ/inf.) | latency (µs/inf.) | TOPS/W | area used (mm²) "
             "| ADC share of energy | ADC share of latency | speed-up vs SAR-8 / SAR-7 | "
             "energy eff. vs SAR-8 / SAR-7 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in df.to_dict("records"):
        lines.append(
            f"| {r['chip']} | {r['adc']} | {r['energy_uj']:.4g} | {r['latency_us']:.4g} | "
            f"{r['tops_per_w']:.3g} | {r['area_mm2']:.3g} | "
            f"{100 * r['adc_energy_share']:.1f} % | {100 * r['adc_latency_share']:.1f} % | "
            f"{r['speedup_vs_SAR-8']:.2f}x / {r['speedup_vs_SAR-7']:.2f}x | "
            f"{r['energy_eff_vs_SAR-8']:.2f}x / {r['energy_eff_vs_SAR-7']:.2f}x |")
    lines.append("")
    write_text(args.out.with_suffix(".md"), "\n".join(lines))
    print(f"done in {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
