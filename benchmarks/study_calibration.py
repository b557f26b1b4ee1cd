"""Study: ADC ranges fitted to float inputs vs to the inputs each layer sees in simulation.

``adc.calibration_mode = 'float'`` fits every calibrated ADC to the float model's activations;
``'simulated'`` fits each layer's ADC to its inputs with the layers before it simulated
(docs/hardware-model.md §7; ``'float'`` is the default). For the bundled digits CNN (the demo)
and the bundled ResNet-20 digits model, on ``rram-22nm`` and variants of its ADC, the script
prints the test accuracy, the share of conversions that clipped over the test run (mean over
layers and the worst layer, ``report.layers.adc_clip_pct``) and the deploy time, for both modes.
Calibration: the first 256 training images (as ``cimsim demo``); test: the 449 test images.

    python benchmarks/study_calibration.py                 # both models, every chip variant
    python benchmarks/study_calibration.py --model demo --limit 200
    python benchmarks/study_calibration.py --model demo --preset-only --seeds 4   # seed means

``logit_err`` is the relative error of the simulated outputs (logits) against the float model's
on the same test images, ||sim - float|| / ||float|| over all images and classes. With
``--seeds N`` every figure is the mean over deploy seeds 0..N-1.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import cimsim
from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy
from cimsim.models import load_digits_cnn, load_resnet_digits


def variants() -> dict[str, cimsim.ChipConfig]:
    base = cimsim.load_chip("rram-22nm")
    adc = base.adc
    out = {"rram-22nm (6b, p99.99, column)": base}
    for bits in (4, 6):
        out[f"{bits}b minmax column"] = base.replace(adc=adc.replace(
            bits=bits, calibration_stat="minmax"))
    out["6b minmax layer"] = base.replace(adc=adc.replace(
        calibration_stat="minmax", calibration_granularity="layer"))
    out["4b p99.99 column, ideal, no noise"] = base.replace(
        adc=adc.replace(bits=4),
        device=base.device.replace(variation="none", variation_sigma=0.0),
        noise=base.noise.replace(thermal_sigma_lsb=0.0))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("demo", "resnet-digits", "both"), default="both")
    ap.add_argument("--limit", type=int, default=None, help="test images (default all)")
    ap.add_argument("--margin", type=float, default=0.0, help="adc.calibration_margin")
    ap.add_argument("--seeds", type=int, default=1, help="mean over deploy seeds 0..N-1")
    ap.add_argument("--preset-only", action="store_true",
                    help="only rram-22nm as shipped, not the ADC variants")
    args = ap.parse_args(argv)
    x_train, _, x_test, y_test = load_digits_split()
    if args.limit:
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    models = {"demo": load_digits_cnn, "resnet-digits": load_resnet_digits}
    names = list(models) if args.model == "both" else [args.model]
    print("model          chip                               mode       acc_%  "
          "clip_mean_%  clip_max_%  logit_err  deploy_s")
    for name in names:
        model = models[name]()
        with torch.no_grad():
            ref = model(x_test)
        print(f"{name:<14} float model                                   "
              f"{100 * accuracy(model, x_test, y_test, batch_size=None):6.2f}")
        chips = variants()
        if args.preset_only:
            chips = dict(list(chips.items())[:1])
        for label, chip in chips.items():
            for mode in ("float", "simulated"):
                c = chip.replace(adc=chip.adc.replace(calibration_mode=mode,
                                                      calibration_margin=args.margin))
                rows = [_one_seed(model, c, seed, x_train[:256], x_test, y_test, ref)
                        for seed in range(args.seeds)]
                acc, clip_mean, clip_max, err, t_deploy = np.mean(rows, axis=0)
                print(f"{name:<14} {label:<34} {mode:<9} {100 * acc:6.2f} "
                      f"{clip_mean:12.4f} {clip_max:11.4f} {err:10.4f} {t_deploy:9.1f}")


def _one_seed(model, chip, seed, x_cal, x_test, y_test, ref) -> list[float]:
    """Accuracy, mean and worst clipping, relative logit error and deploy time of one seed."""
    t0 = time.perf_counter()
    sim = cimsim.deploy(model, chip, x_cal, seed=seed)
    t_deploy = time.perf_counter() - t0
    outs = []

    def recorded(x):  # the outputs accuracy() computes, kept: a second pass would draw new noise
        out = sim(x)
        outs.append(out)
        return out

    acc = accuracy(recorded, x_test, y_test, batch_size=128)
    err = float(torch.linalg.norm(torch.cat(outs) - ref) / torch.linalg.norm(ref))
    clip = sim.report().layers["adc_clip_pct"]
    return [acc, clip.mean(), clip.max(), err, t_deploy]

if __name__ == "__main__":
    main()
