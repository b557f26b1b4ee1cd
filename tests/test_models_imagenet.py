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
