"""What the two digits-model training scripts print after training (shared by both)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from cimsim.data import load_digits_split
from cimsim.models import evaluate


def print_summary(model: nn.Module, elapsed_s: float, weights: Path) -> None:
    """Parameters, training time, train/test accuracy of ``model`` and the weights file."""
    x_train, y_train, x_test, y_test = load_digits_split()
    print(f"parameters:     {sum(p.numel() for p in model.parameters())}")
    print(f"training time:  {elapsed_s:.1f} s")
    print(f"train accuracy: {evaluate(model, x_train, y_train):.4f} ({len(y_train)} images)")
    print(f"test accuracy:  {evaluate(model, x_test, y_test):.4f} ({len(y_test)} images)")
    print(f"weights:        {weights} ({weights.stat().st_size} bytes)")
