"""``cimsim.models.imagenet``: the architectures of ``benchmarks/bench_models.py``."""

from __future__ import annotations

import pytest
import torch

import cimsim
from cimsim.models.imagenet import mobilenet_v2, resnet18, vit_tiny


@pytest.mark.parametrize("make, n_params", [
    (resnet18, 11_689_512),      # torchvision resnet18
    (mobilenet_v2, 3_504_872),   # torchvision mobilenet_v2
    (vit_tiny, 5_717_416),       # DeiT-Ti (timm deit_tiny_patch16_224)
])
def test_published_parameter_counts_and_logits(make, n_params):
    model = make()
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert not model.training
    with torch.no_grad():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 1000)


def test_torchvision_module_names():
    """A torchvision state dict loads by name: spot-check the names torchvision uses."""
    keys = set(resnet18().state_dict())
    assert {"conv1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer4.1.bn2.running_var", "fc.bias"} <= keys
    keys = set(mobilenet_v2().state_dict())
    assert {"features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
            "features.2.conv.0.0.weight", "features.18.0.weight", "classifier.1.weight"} <= keys


def test_small_vit_deploys_with_attention_on_the_arrays():
    model = vit_tiny(num_classes=10, image=32, depth=1, dim=48)
    x = torch.rand(2, 3, 32, 32)
    sim = cimsim.deploy(model, cimsim.load_chip("rram-22nm"), x)
    kinds = {layer.kind for layer in sim.sim_layers.values()}
    assert "attention" in kinds and sim(x).shape == (2, 10)


@pytest.mark.parametrize("make, kwargs, message", [
    (resnet18, dict(width=0), r"width = 0 is invalid; allowed: an integer >= 1"),
    (resnet18, dict(num_classes=0), r"num_classes = 0 is invalid"),
    (mobilenet_v2, dict(width_mult=0), r"width_mult = 0 is invalid; allowed: a finite number > 0"),
    (mobilenet_v2, dict(width_mult=float("nan")), r"width_mult = nan is invalid"),
    (mobilenet_v2, dict(width_mult=True), r"width_mult = True is invalid"),
    (vit_tiny, dict(image=8), r"image = 8 is invalid; allowed: an integer >= 16"),
    (vit_tiny, dict(dim=7), r"dim = 7 is invalid; allowed: a multiple of 3"),
    (vit_tiny, dict(depth=-1), r"depth = -1 is invalid"),
    (vit_tiny, dict(seed=-1), r"seed = -1 is invalid"),
])
def test_bad_arguments_are_refused_naming_them(make, kwargs, message):
    """Each builder names a bad argument before building (mobilenet_v2(width_mult=0) built an
    8-channel network; vit_tiny(image=8) built, then failed at its first forward)."""
    with pytest.raises(cimsim.ConfigError, match=message):
        make(**kwargs)


def test_building_leaves_the_callers_random_stream():
    """The builders seed their own draws and put torch's generator back (they reseeded it and
    left it so); the same seed still gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        before = torch.get_rng_state()
        a = vit_tiny(3, image=16, depth=1, dim=6, seed=1)
        assert torch.equal(torch.get_rng_state(), before)
        b = vit_tiny(3, image=16, depth=1, dim=6, seed=1)
        c = resnet18(3, width=2, seed=4)
        assert torch.equal(torch.get_rng_state(), before)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert not c.training
