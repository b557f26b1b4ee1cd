#!/usr/bin/env python
"""Train the bundled ResNet-20-style digits model and write its weights as a pickle-free ``.npz``.

Reproduce the shipped weights (from the repository root)::

    python scripts/train_resnet_digits.py --seed 0 --epochs 30 --out cimsim/data/resnet_digits.npz

Training is deterministic on CPU (one thread), so running this twice gives bitwise-identical
arrays with the same torch build; it takes under a minute.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from _summary import print_summary  # a sibling script module (scripts/ is on sys.path)

from cimsim.models import load_resnet_digits, save_weights, train_resnet_digits

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "cimsim" / "data" / "resnet_digits.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="init/shuffle seed (default 0)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output .npz path (default cimsim/data/resnet_digits.npz)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log per-epoch loss")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s")

    t0 = time.perf_counter()
    model = train_resnet_digits(seed=args.seed, epochs=args.epochs)
    elapsed = time.perf_counter() - t0
    save_weights(model, args.out)
    # Accuracy of the weights as written (read back), the numbers docs/training.md quotes.
    model = load_resnet_digits(args.out)

    print_summary(model, elapsed, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
