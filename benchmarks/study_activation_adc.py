"""Study: the layer-output ADC as the activation quantizer (ReLU fused), per fitting method.

The BS-KMQ setting: each hidden layer's whole dot product is one conversion, and its ADC
produces the ReLU activation directly (``adc.placement = 'layer_output'``,
``adc.fuse_activation = true``; docs/hardware-model.md §7). The bundled digits CNN is deployed
on ``rram-22nm`` changed so that one conversion holds a dot product: 4-bit weights
(differential, 3 magnitude bits in one 3-bit cell), all 8 input bits applied at once, 512-row
arrays. Its four hidden layers are fused with their ReLU; the logits layer (no ReLU) is kept
digital so that only activation quantization is measured. For ADC bits 2, 3, 4 and each kind
(linear ``sar``, and the ``ramp`` NL-ADC with each ``level_fit``), the script prints the test
accuracy with the ADC fused (quantizing ``ReLU(y)`` on ``[0, a_max]``) and not fused (quantizing
the pre-activation ``y`` over its calibrated range, the ReLU applied digitally after), plus the
float model and the same chip with a lossless 16-bit ADC. Devices are ideal and there is no
noise, so the numbers isolate the ADC. With the ADC fused it also prints the activation NMSE of
each hidden layer: mean((out - ReLU(y))^2) / Var(ReLU(y)) over the test images, y the layer's
exact quantized pre-activation (its integer weights and inputs, dequantized, plus bias) and
``out`` what the simulated layer returned.

    python benchmarks/study_activation_adc.py             # all test images
    python benchmarks/study_activation_adc.py --limit 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import cimsim
from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy
from cimsim.mapping.layers import SimConv
from cimsim.mapping.quant import quantize_acts
from cimsim.models import load_digits_cnn

METHODS = ("uniform", "lloyd_max", "cdf", "kmeans", "kmeans_optimal", "bs_kmq")


def study_chip() -> cimsim.ChipConfig:
    base = cimsim.load_chip("rram-22nm")
    return base.replace(
        weight_bits=4,
        dac=base.dac.replace(bits=None),
        device=base.device.replace(bits_per_cell=3, variation="none", variation_sigma=0.0,
                                   off_current_compensation="analog"),
        noise=base.noise.replace(thermal_sigma_lsb=0.0),
        array=base.array.replace(n_rows=512, n_cols=512),
        adc=base.adc.replace(placement="layer_output", range_policy="calibrated",
                             calibration_stat="minmax", calibration_granularity="column"),
    )


def _exact_pre_activation(layer, x: torch.Tensor) -> torch.Tensor:
    """The layer's pre-activation from its dequantized integer weights and inputs, plus bias."""
    core = layer.cores[0]
    x_q = quantize_acts(x.double().numpy(), core.s_x, core.chip.input_bits, core.signed) * core.s_x
    w_q = core.w_int * core.s_w[0][:, None]
    bias = torch.as_tensor(core.bias)
    x_q = torch.as_tensor(x_q)
    if isinstance(layer, SimConv):
        w = torch.as_tensor(w_q).reshape(layer.out_channels, -1, *layer.kernel)
        return F.conv2d(F.pad(x_q, layer.pads), w, bias, layer.stride, 0, layer.dilation)
    return F.linear(x_q, torch.as_tensor(w_q), bias)


def _run(sim, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict[str, float]]:
    """Accuracy (%) and the activation NMSE of every fused layer, one pass over ``x``."""
    err: dict[str, list[float]] = {}
    hooks = []
    for name in sim.fused_activations:
        layer = sim.sim_layers[name]

        def hook(mod, inp, out, name=name):
            ref = torch.relu(_exact_pre_activation(mod, inp[0])).numpy()
            e = err.setdefault(name, [0.0, 0.0, 0.0, 0.0])
            e[0] += float(np.sum((out.double().numpy() - ref) ** 2))
            e[1] += float(ref.sum())
            e[2] += float(np.sum(ref**2))
            e[3] += ref.size

        hooks.append(layer.register_forward_hook(hook))
    try:
        acc = accuracy(sim, x, y, batch_size=None)
    finally:
        for h in hooks:
            h.remove()
    nmse = {n: e[0] / (e[2] - e[1] ** 2 / e[3]) for n, e in err.items()}
    return 100 * acc, nmse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="test images (default: all)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    model = load_digits_cnn()
    x_tr, _, x_te, y_te = load_digits_split()
    x_cal = torch.as_tensor(x_tr[:256])
    x_te, y_te = torch.as_tensor(x_te[: args.limit]), torch.as_tensor(y_te[: args.limit])
    chip = study_chip()
    keep = ["classifier.3"]

    def run(c: cimsim.ChipConfig) -> tuple[float, dict[str, float]]:
        return _run(cimsim.deploy(model, c, x_cal, exclude=keep, seed=0), x_te, y_te)

    float_acc = 100 * accuracy(model, x_te, y_te, batch_size=None)
    lossless, _ = run(chip.replace(adc=chip.adc.replace(bits=16, fuse_activation=False)))
    print(f"digits CNN, {len(y_te)} test images; float model {float_acc:.2f} %; this chip with "
          f"a lossless 16-bit SAR at the layer outputs {lossless:.2f} %\n")
    rows = []
    for kind in ["sar"] + [f"ramp:{m}" for m in METHODS]:
        name, _, fit = kind.partition(":")
        for bits in (2, 3, 4):
            adc = chip.adc.replace(kind=name, bits=bits, level_fit=fit or "uniform")
            fused, nmse = run(chip.replace(adc=adc))
            plain, _ = run(chip.replace(adc=adc.replace(fuse_activation=False)))
            rows.append((kind, bits, fused, plain, nmse))
    layers = list(rows[0][4])
    print("| ADC | bits | accuracy fused (%) | not fused (%) | "
          + " | ".join(f"NMSE {n}" for n in layers) + " | geo. mean |")
    print("|---|---:|---:|---:|" + "---:|" * (len(layers) + 1))
    for kind, bits, fused, plain, nmse in rows:
        vals = [nmse[n] for n in layers]
        geo = float(np.exp(np.mean(np.log(vals))))
        print(f"| `{kind}` | {bits} | {fused:.2f} | {plain:.2f} | "
              + " | ".join(f"{v:.3g}" for v in vals) + f" | {geo:.3g} |")
    print(f"\nfused layers: {', '.join(layers)}; kept digital: {', '.join(keep)}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
