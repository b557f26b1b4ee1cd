"""Deploy time of ResNet-18 against its one-image forward (issue 14), and redeploys that reuse
the programmed cells.

A torchvision-architecture ResNet-18 defined here (the registry's torchvision wheel does not
import against the CPU torch), random weights (``torch.manual_seed(0)``), one 3x224x224 image
as the calibration data and as the input. On ``rram-22nm`` (6-bit calibrated ADC, thermal
noise, 5 % log-normal programming variation; time-multiplexed arrays, as the model needs
twice the chip's) it prints:

- ``deploy_s``: ``cimsim.deploy`` with an empty programming cache (programming, the float
  calibration pass and the ADC calibration of every layer);
- ``redeploy_adc_s``: the same model deployed again with a 5-bit ADC: the drawn cells come
  from the cache (:mod:`cimsim.arrays.cache`); ``redeploy_seed_s``: with another seed (no
  reuse, for comparison);
- ``forward_s``: one simulated forward of the image; ``float_forward_s``: the float model's;
- ``deploy_over_forward``: deploy_s / forward_s (the issue's target: <= 5).

    python benchmarks/bench_deploy.py [--size 224] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

import cimsim
from cimsim.arrays import cache


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + idt)


class ResNet18(nn.Module):
    """torchvision.models.resnet18's architecture (layer names included)."""

    def __init__(self, n_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, c_in = [64, 128, 256, 512], 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}",
                    nn.Sequential(BasicBlock(c_in, w, stride), BasicBlock(w, w, 1)))
            c_in = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="image height and width")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ResNet18().eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, as a trained model has
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 3, args.size, args.size)
    base = cimsim.load_chip("rram-22nm")
    # ResNet-18 needs 5724 of its 2688 arrays: time-multiplexed (reprogramming is charged)
    chip = base.replace(array=base.array.replace(allow_time_multiplexing=True))
    # warm up (JIT caches, imports) on a small model of the same kinds of layers
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 16 * 16, 10))
    xs = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        cimsim.deploy(small, chip, calibration=xs)(xs)
    cache.clear()
    with torch.no_grad():
        t_float = min(seconds(lambda: model(x)) for _ in range(3))
        sim: list = []
        t_deploy = seconds(lambda: sim.append(cimsim.deploy(model, chip, calibration=x)))
        t_fwd = seconds(lambda: sim[0](x))
        chip5 = chip.replace(adc=chip.adc.replace(bits=5))
        t_re_adc = seconds(lambda: cimsim.deploy(model, chip5, calibration=x))
        t_re_seed = seconds(lambda: cimsim.deploy(model, chip, calibration=x, seed=1))
    info = cache.cache_info()
    n_w = sum(int(np.prod(m.weight.shape)) for m in model.modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)))
    print(f"ResNet-18 {args.size}x{args.size}, {n_w / 1e6:.2f} M weights, chip {chip.name}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"deploy_s={t_deploy:.2f}")
    print(f"forward_s={t_fwd:.2f}")
    print(f"float_forward_s={t_float:.3f}")
    print(f"redeploy_adc_s={t_re_adc:.2f}")
    print(f"redeploy_seed_s={t_re_seed:.2f}")
    print(f"cache_hits={info.hits} cache_misses={info.misses} cache_mib={info.nbytes / 2**20:.0f}")
    print(f"deploy_over_forward={t_deploy / t_fwd:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
