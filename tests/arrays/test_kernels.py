"""The fused conversion kernel against its NumPy twin on rows wider than one tile, outputs and
clip counts."""

from __future__ import annotations

import numpy as np
import pytest

from cimsim.arrays._kernels import _TILE, NL_NONE, analog_linear, convert_accumulate
from cimsim.arrays._reference import convert_accumulate_reference
from cimsim.arrays._rng import KN, QZ, WN, _mix_np
from cimsim.arrays.analog import analog_from_partial_sums

CASES = {
    # the one-loop path: direct columns, linear ADC, thermal noise only
    "plain": dict(),
    "plain-noise-off": dict(thermal=0.0),
    "read-noise": dict(var=True),
    "comparator-noise": dict(cmp=0.3),
    "pairs-offcurrent-saturating": dict(pairs=True, xsum=True, nl=1),
    "nonlinear-adc": dict(levels=True, cmp=0.3),
    # the exact code sampler: on the direct path, and after pairs, off-current, non-linearity
    "exact": dict(exact=True),
    "exact-large-steps": dict(exact=True, step_scale=3.9),
    "exact-pairs-offcurrent-saturating": dict(exact=True, pairs=True, xsum=True, nl=1),
}


def _problem(rng, n_conv, *, thermal=1.0, var=False, cmp=0.0, pairs=False, xsum=False, nl=0,
             levels=False, exact=False, step_scale=0.7):
    p, m = 3, 4
    jg = n_conv + 2
    ps = rng.integers(-40, 40, (p, m, jg)).astype(np.int32)
    if pairs:
        pos = rng.integers(0, jg, n_conv)
        neg = np.where(rng.random(n_conv) < 0.5, rng.integers(0, jg, n_conv), -1)
    else:
        ps = ps[:, :, :n_conv].copy()
        jg = n_conv
        pos, neg = np.arange(n_conv), -np.ones(n_conv, dtype=np.int64)
    if levels:
        thr = np.sort(rng.normal(0, 20, (n_conv, 7)), axis=1)
        lvl = np.sort(rng.normal(0, 20, (n_conv, 8)), axis=1)
    else:
        thr = lvl = np.zeros((0, 0))
    return ps, dict(
        xsum=rng.random((p, m)) * 5 if xsum else np.zeros((p, 0)),
        var=rng.random((p, m, jg)).astype(np.float32) if var else np.zeros((0, 0, 0), np.float32),
        sig=2.0 ** np.arange(p), pos=pos, neg=neg, off_add=rng.random(jg),
        out_col=rng.integers(0, 5, n_conv), coef=rng.normal(size=n_conv),
        lo=-40.0 + rng.random(n_conv), delta=1.0 + rng.random(n_conv), top_code=63.0,
        nl_kind=nl, nl_fs=60.0, nl_sat=1.0, nl_beta=0.3, nl_poly=np.zeros(0),
        thermal_sigma=thermal, gain=0.01, offset_lsb=0.2, cmp_sigma=cmp,
        group=1, m_offset=3, m_total=9, thr=thr, lvl=lvl,
        # bounds inside the partial sums' spread: some conversions of every row clip
        clip_lo=-30.0 + 5 * rng.random(n_conv), clip_hi=25.0 + 5 * rng.random(n_conv),
        noise_steps=step_scale * (0.2 + rng.random(n_conv)) / 1.2 if exact else np.zeros(0),
    )


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("n_conv", [1, _TILE - 1, _TILE, _TILE + 1, 2 * _TILE + 189])
def test_kernel_equals_twin_across_tiles(case, n_conv):
    # odd widths put the draws of a row at odd counters: tiles start mid-pair
    rng = np.random.default_rng(n_conv)
    ps, args = _problem(rng, n_conv, **CASES[case])
    key_noise, key_cmp = 0x1234_5678_9ABC_DEF1, 2**64 - 7
    out = np.zeros((ps.shape[1], 5))
    ref = np.zeros_like(out)
    clips = np.full(ps.shape[1], 3, dtype=np.int64)  # added to, not overwritten
    clips_ref = clips.copy()
    convert_accumulate(ps, key_noise=np.uint64(key_noise), key_cmp=np.uint64(key_cmp),
                       kn=KN, wn=WN, qz=QZ, out=out, clips=clips, **args)
    convert_accumulate_reference(ps, key_noise=key_noise, key_cmp=key_cmp, out=ref,
                                 clips=clips_ref, **args)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(clips, clips_ref)
    if n_conv > 8:
        assert np.all(clips > 3)


def test_exact_sampler_patches_its_undecided_draws():
    # large noise (4 steps): ~0.7 % of the draws have a code boundary inside their quantile
    # cell; the kernel's vectorised loop adds nothing for them and the slow path adds their
    # code after: the sums and clip counts still equal the twin's, draw for draw
    rng = np.random.default_rng(5)
    ps, args = _problem(rng, _TILE + 37, exact=True, step_scale=4.0)
    ps = np.concatenate([ps] * 8, axis=1)  # more vectors: thousands of draws
    args["xsum"] = np.zeros((ps.shape[0], 0))
    args["m_total"] = ps.shape[1] + 3
    out, ref = np.zeros((ps.shape[1], 5)), np.zeros((ps.shape[1], 5))
    clips, clips_ref = np.zeros(ps.shape[1], np.int64), np.zeros(ps.shape[1], np.int64)
    convert_accumulate(ps, key_noise=np.uint64(77), key_cmp=np.uint64(78), kn=KN, wn=WN, qz=QZ,
                       out=out, clips=clips, **args)
    convert_accumulate_reference(ps, key_noise=77, key_cmp=78, out=ref, clips=clips_ref, **args)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(clips, clips_ref)
    # the draws whose cell does not decide the code (the twin's rule), counted
    p, m, c = ps.shape
    idx = ((((args["group"] * p + np.arange(p))[:, None, None] * args["m_total"]
             + args["m_offset"] + np.arange(m)[None, :, None]) * c
            + np.arange(c)[None, None, :]).astype(np.uint64))
    with np.errstate(over="ignore"):
        h = _mix_np(np.uint64(77) + (idx >> np.uint64(2)) * np.uint64(0x9E3779B97F4A7C15))
    cell = ((h >> ((idx & np.uint64(3)) << np.uint64(4))) & np.uint64(0xFFFF)).astype(int) >> 4
    u = (ps * (1 + args["gain"]) + args["offset_lsb"] * args["delta"] - args["lo"]) \
        / args["delta"] + 0.5
    s = args["noise_steps"]
    lo_k = np.floor(u + s * QZ[np.clip(cell, 1, 4094)])
    hi_k = np.floor(u + s * QZ[np.clip(cell, 1, 4094) + 1])
    undecided = (lo_k != hi_k) | (cell == 0) | (cell == 4095)
    assert undecided.sum() > 50


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64])
@pytest.mark.parametrize("pairs", [False, True])
@pytest.mark.parametrize("xsum", [False, True])
def test_analog_kernel_equals_twin(dtype, pairs, xsum):
    """``analog_linear`` (what calibration reads) gives exactly the float64 values of its
    NumPy twin ``analog_from_partial_sums`` for a linear column: the GEMM's partial sums of
    each kind, pairs (some conversions without a negative column) and the off-current."""
    rng = np.random.default_rng(7)
    ps, kw = _problem(rng, _TILE + 3, pairs=pairs, xsum=xsum)
    ps = ps.astype(dtype)
    out = np.empty((*ps.shape[:2], kw["pos"].shape[0]))
    analog_linear(ps, kw["xsum"], kw["pos"], kw["neg"], kw["off_add"], out)
    want = analog_from_partial_sums(ps, kw["xsum"], kw["pos"], kw["neg"], kw["off_add"],
                                    NL_NONE, 60.0, 1.0, 0.3, np.zeros(0))
    assert np.array_equal(out, want)
