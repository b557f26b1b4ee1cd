#!/usr/bin/env python
"""Train the bundled digits CNN and write its weights as a pickle-free ``.npz``.

Reproduce the shipped weights (from the repository root)::

    python scripts/train_digits.py --seed 0 --epochs 40 --out cimsim/data/digits_cnn.npz

Training is deterministic on CPU, so running this twice gives bitwise-identical
arrays with the same torch build.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from _summary import print_summary  # a sibling script module (scripts/ is on sys.path)

from cimsim.models import save_weights, train_digits_cnn

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "cimsim" / "data" / "digits_cnn.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="init/shuffle seed (default 0)")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output .npz path (default cimsim/data/digits_cnn.npz)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log per-epoch loss")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )

    t0 = time.perf_counter()
    model = train_digits_cnn(seed=args.seed, epochs=args.epochs)
    elapsed = time.perf_counter() - t0

    save_weights(model, args.out)
    print_summary(model, elapsed, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
