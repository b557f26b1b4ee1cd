"""Data that ships with cimsim: scikit-learn's bundled digits and the demo models' weights.

Nothing here downloads: ``load_digits_split`` reads scikit-learn's ``load_digits`` (1,797
greyscale 8x8 images), and the trained weights of the demo models (``*.npz``, pickle-free) sit
beside this module as package data.
"""

from .digits import PIXEL_MAX, bundled_file, load_digits_split

__all__ = ["PIXEL_MAX", "bundled_file", "load_digits_split"]
