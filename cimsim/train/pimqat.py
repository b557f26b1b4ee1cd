"""PIM-QAT on the training twin: decompositions, forward/backward rescaling, adjusted precision.

PIM-QAT (Jin, Chen, Ren, Li, Wang, Yang, "PIM-QAT: Neural Network Quantization for
Processing-In-Memory (PIM) Systems", arXiv 2209.08617, 2022) trains a quantized network with the
chip's low-resolution partial-sum conversion (``Q_PIM``) in the forward pass, rescales the
forward and backward passes, re-estimates BatchNorm statistics on the non-ideal chip
(:func:`cimsim.train.calibrate_bn`) and trains at an adjusted ADC precision against thermal noise.
Only the paper's abstract was read: the rescaling used here is derived in ``docs/pim-qat.md``
(§2), not copied from the paper.

* :func:`pim_chip` — the three decompositions as chip settings the twin covers (``native``,
  ``bit-serial``, ``differential``), W/A bits, rows per conversion, a hardware-fixed
  (``full_scale``) ADC of ``adc_bits``, optional thermal noise and a cubic non-linearity;
* :func:`rescale_factors` / :func:`layer_rescale` — the per-layer scalars ``(η_f, η_b)`` from
  rows per conversion, the ADC's grid and the decomposition, under independent uniform
  operands and a Gaussian partial sum;
* :func:`apply_rescaling` — sets them on every twin (``TwinMatmul.out_rescale`` /
  ``grad_rescale``), each switchable;
* :func:`prepare_pimqat` — ``prepare`` on the training chip (optionally another ADC precision:
  adjusted-precision training) from a float model, with the scales of an earlier twin carried
  over (:func:`transfer_scales`).

Deploying on the target chip (other ADC bits, noise, non-linearity, variation) is
``prepared.deploy(seed, chip=target)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._seed import check_int, check_nonnegative_number
from ..config import (
    ADCPlacement,
    ChipConfig,
    Nonlinearity,
    RangePolicy,
    WeightEncoding,
    _is_real,
    as_chip,
)
from ..errors import ConfigError
from .twin import (
    PreparedModel,
    TwinMatmul,
    conversion_digits,
    input_planes,
    prepare,
    regrids_adc_tables,
)

__all__ = ["DECOMPOSITIONS", "adc_moments", "apply_rescaling", "layer_rescale", "pim_chip",
           "prepare_pimqat", "rescale_factors", "transfer_scales"]

#: The decompositions :func:`pim_chip` builds.
DECOMPOSITIONS = ("native", "bit-serial", "differential")


def pim_chip(decomposition: str, *, adc_bits: int, rows: int, weight_bits: int = 4,
             input_bits: int = 4, thermal_sigma_lsb: float = 0.0, cubic: float = 0.0,
             base: ChipConfig | None = None) -> ChipConfig:
    """A PIM chip with one of PIM-QAT's three decompositions (docs/pim-qat.md §1).

    Parameters
    ----------
    decomposition : {'native', 'bit-serial', 'differential'}
        ``native``: all input bits in one shot (``dac.bits = input_bits``), each signed weight
        in one multi-level cell (``signed_cell``): one conversion of Σ x·w per output and row
        group. ``bit-serial``: one input bit per cycle, one weight bit per cell in two's
        complement: every binary partial sum Σ x^(i)·w^(j) is converted, then shift-added.
        ``differential``: all input bits in one shot, |w| of positive and negative weights in
        two columns, each converted and subtracted digitally.
    adc_bits : int
        Bits of the ADC; its range is the hardware-fixed full scale of ``rows`` rows.
    rows : int
        Rows summed per conversion (arrays of ``max(rows, 128)`` rows).
    weight_bits, input_bits : int
        W/A precision (signed weights, unsigned inputs after ReLU).
    thermal_sigma_lsb : float
        Thermal noise at every conversion, sigma in cell-LSB.
    cubic : float
        Cubic integral non-linearity of the column: ``a -> a + F·cubic·(a/F)³`` (F the column's
        full-scale current; negative compresses). 0: linear.
    base : ChipConfig, optional
        Technology, costs and capacity (default: the ``ideal`` preset).
    """
    from ..config import load_chip

    if decomposition not in DECOMPOSITIONS:
        raise ConfigError(f"decomposition = {decomposition!r} is invalid; allowed: "
                          f"{', '.join(DECOMPOSITIONS)}")
    # this function's own arguments, named as given: a float was cut to an int while the
    # chip's name kept it, and weight_bits reached the cell as bits_per_cell = w - 1
    adc_bits = check_int("adc_bits", adc_bits, 1, 24)
    rows = check_int("rows", rows, 1, 65536)  # the chip's array limit, named as given
    input_bits = check_int("input_bits", input_bits, 1, 16)  # the DAC's, named as given
    # (float() of it took "0.5" and True as noise, and let None's TypeError escape)
    thermal_sigma_lsb = check_nonnegative_number("thermal_sigma_lsb", thermal_sigma_lsb)
    if not _is_real(cubic) or not math.isfinite(cubic):
        raise ConfigError(f"cubic = {cubic!r} is invalid; allowed: a finite number (0: linear)")
    one_cell = decomposition != "bit-serial"  # the signed weight's magnitude in one cell
    # bit-serial weights are two's complement, which needs a sign bit and a magnitude bit: a
    # 1-b weight passed this check and was refused by ChipConfig naming weight_encoding, a
    # setting the caller never gave
    weight_bits = check_int("weight_bits" + (f" ({decomposition}: one cell holds its "
                                             "magnitude)" if one_cell else
                                             " (bit-serial: two's complement)"),
                            weight_bits, 2, 8 if one_cell else None)
    base = load_chip("ideal") if base is None else base
    n_rows = max(rows, 128)
    if decomposition == "bit-serial":
        dac_bits, enc, bpc = 1, WeightEncoding.TWOS_COMPLEMENT, 1
    elif decomposition == "native":
        dac_bits, enc, bpc = input_bits, WeightEncoding.SIGNED_CELL, weight_bits - 1
    else:
        dac_bits, enc, bpc = input_bits, WeightEncoding.DIFFERENTIAL, weight_bits - 1
    noise = base.noise.replace(
        thermal_sigma_lsb=thermal_sigma_lsb,
        nonlinearity=Nonlinearity.POLYNOMIAL if cubic else Nonlinearity.NONE,
        poly_coeffs=(0.0, float(cubic)) if cubic else ())
    return base.replace(
        name=f"pim-{decomposition}-r{rows}-adc{adc_bits}", weight_bits=weight_bits,
        input_bits=input_bits, weight_encoding=enc, differential_readout="digital",
        array=base.array.replace(n_rows=n_rows, n_cols=n_rows, rows_per_conversion=rows),
        device=base.device.replace(bits_per_cell=bpc),
        dac=base.dac.replace(bits=dac_bits),
        adc=base.adc.replace(bits=adc_bits, range_policy=RangePolicy.FULL_SCALE),
        noise=noise)


# --------------------------------------------------------------------------------------------
# The rescaling scalars (docs/pim-qat.md §2)
# --------------------------------------------------------------------------------------------
def _phi(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def adc_moments(mu: float, var: float, lo: float, delta: float, n_codes: int
                ) -> tuple[float, float]:
    """``(λ, ρ)`` of a linear ADC on a Gaussian analog value a ~ N(mu, var).

    The ADC is the engine's: ``code = clamp(floor((a − lo)/Δ + 1/2), 0, n_codes − 1)``, value
    ``Q(a) = lo + code·Δ``. ``λ = Cov(a, Q(a)) / Var(a)`` (by Stein's lemma the expected slope
    E[Q'(a)] of the quantizer, which the straight-through estimator takes as 1) and
    ``ρ = Var(Q(a)) / Var(a)``. A value that never varies (var = 0) gives (1, 1).
    """
    if var <= 0:
        return 1.0, 1.0
    sd = math.sqrt(var)
    # only the codes within 12 sigma carry probability (the tails beyond are < 1e-32): the
    # first and last of them take everything below and above
    k0 = int(min(max(math.floor((mu - 12 * sd - lo) / delta), 0), n_codes - 1))
    k1 = int(max(min(math.ceil((mu + 12 * sd - lo) / delta), n_codes - 1), k0))
    k = np.arange(k0, k1 + 1, dtype=np.float64)
    # the moments of Q(a) − mu, not of Q(a): both are unchanged by the shift, and far from 0
    # (mu, lo ~ 1e6, sd ~ 0.1) E[aQ] − mu·E[Q] of the raw moments cancelled every digit (a
    # negative slope came out)
    d = (lo - mu) + k * delta
    # bin k holds [lo + (k − ½)Δ, lo + (k + ½)Δ); the end codes hold everything beyond
    z = np.concatenate([[-np.inf], ((lo - mu) + (k[1:] - 0.5) * delta) / sd, [np.inf]])
    cdf = _cdf(z)
    pdf = np.where(np.isfinite(z), _phi(np.where(np.isfinite(z), z, 0.0)), 0.0)
    p = cdf[1:] - cdf[:-1]
    e_d = float(np.sum(d * p))
    e_d2 = float(np.sum(d * d * p))
    # Cov(a, Q) = E[(a − mu)(Q − mu)] = sd · Σ_k d_k (φ(z_k) − φ(z_k+1)) (Stein: the
    # E[a − mu | bin k] · p_k of a Gaussian)
    cov = sd * float(np.sum(d * (pdf[:-1] - pdf[1:])))
    return cov / var, max(e_d2 - e_d * e_d, 0.0) / var


def rescale_factors(terms: Iterable[tuple[float, float, float, float, float, float, int]]
                    ) -> tuple[float, float]:
    """``(η_f, η_b)`` of a sum of converted partial sums ``y = Σ_i c_i·Q_i(a_i)``.

    ``terms``: ``(c, rows, mean, var, lo, delta, n_codes)`` per conversion, where ``mean`` and
    ``var`` are those of ONE row's product ``x·d`` (independent rows: a has ``rows·mean`` and
    ``rows·var``). With independent conversions, ``V₀ = Σ c²·var_a`` (the product without
    conversion), ``C = Σ c²·λ·var_a``, ``V_Q = Σ c²·ρ·var_a``:
    ``η_f = sqrt(V₀ / V_Q)`` (the forward multiplier that restores the variance of the
    unconverted product) and ``η_b = C / V₀`` (the expected slope of y in the unconverted
    product, the backward multiplier that replaces the estimator's 1).
    """
    v0 = cov = vq = 0.0
    for c, rows, mean, var, lo, delta, n_codes in terms:
        var_a = rows * var
        lam, rho = adc_moments(rows * mean, var_a, lo, delta, n_codes)
        w = c * c * var_a
        v0, cov, vq = v0 + w, cov + w * lam, vq + w * rho
    if v0 <= 0:
        return 1.0, 1.0
    if vq <= 0:
        # every conversion reads one code: no forward multiplier restores a variance of 0
        # (η_f stays 1), while the expected slope C / V₀ is still defined (≈ 0)
        return 1.0, float(cov / v0)
    return math.sqrt(v0 / vq), float(cov / v0)


def _value_moments(values: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and mean square per leading index of (L, n) values taken uniformly."""
    v = values.double().reshape(values.shape[0], -1)
    return v.mean(dim=1).numpy(), (v * v).mean(dim=1).numpy()


def layer_rescale(twin: TwinMatmul) -> tuple[float, float]:
    """``(η_f, η_b)`` of one twin from its rows per conversion, ADC grid and decomposition.

    Statistical model (docs/pim-qat.md §2): integer inputs uniform over the layer's input
    range, integer weights uniform over ``[−q, q]`` (``{−1, +1}`` for binary weights), all
    independent; the digits each input
    plane and each conversion column see follow from the decomposition (the twin's own
    :func:`~cimsim.train.twin.input_planes` and :func:`~cimsim.train.twin.conversion_digits`
    applied to every value); a partial sum of r rows is Gaussian (r·mean, r·var).
    """
    chip = twin.chip
    dt = torch.float64
    # the codes the arrays are driven with: x_int + zero_point (the A-shift's -2^(B_x-1), an
    # asymmetric quantizer's z; -z·Σw is added exactly after the ADCs, outside V₀ and V_Q)
    xs = torch.arange(twin.x_lo, twin.x_hi + 1, dtype=dt)[None] + twin.zero_point  # (1, n_x)
    ws = torch.arange(-twin.w_qmax, twin.w_qmax + 1, dtype=dt)[None]  # (1, n_w)
    if twin.binary:
        ws = ws[ws != 0][None]  # ±1: a binary weight has no 0
    px, px2 = _value_moments(input_planes(xs, chip, twin.input_signed))  # (P,)
    dq, dq2 = _value_moments(conversion_digits(ws, chip))  # (Qc,)
    sig = twin._sig.detach().cpu().double().numpy()
    coef = twin._coef.detach().cpu().double().numpy()[:twin.n_kinds]
    gidx = twin._gidx.cpu().numpy()
    rows = (gidx < twin.n_inputs).sum(axis=1)
    lo, delta = (t.detach().cpu().double().numpy() for t in twin.adc_tables())
    n_codes = int(twin.top_code) + 1
    terms = []
    for g in range(twin.n_groups):
        for p in range(len(sig)):
            for q in range(twin.n_kinds):
                mean = px[p] * dq[q]
                var = px2[p] * dq2[q] - mean * mean
                # full-scale tables are the same for every output of a conversion kind
                terms.append((sig[p] * coef[q], int(rows[g]), mean, var, float(lo[g, q]),
                              float(delta[g, q]), n_codes))
    return rescale_factors(terms)


#: An η_b below this warns: the layer's gradient is cut a thousandfold or more.
DEAD_SLOPE = 1e-3


def apply_rescaling(prepared: PreparedModel, *, forward: bool = True, backward: bool = True
                    ) -> dict[str, tuple[float, float]]:
    """Set every twin's ``out_rescale`` (η_f, if ``forward``) and ``grad_rescale`` (η_b, if
    ``backward``); 1 where switched off. Returns ``{name: (η_f, η_b)}`` as computed."""
    out = {}
    for name, twin in prepared.twins():
        f, b = layer_rescale(twin)
        if backward and b < DEAD_SLOPE:
            warnings.warn(f"PIM-QAT: layer {name!r}'s expected slope η_b = {b:.3g}: under the "
                          "rescaling's model nearly every conversion reads one code (an ADC "
                          "step wider than its partial sums), so its weights and inputs get "
                          "almost no gradient (fewer rows per conversion or more ADC bits "
                          "would give it one)", stacklevel=2)
        twin.out_rescale = f if forward else 1.0
        twin.grad_rescale = b if backward else 1.0
        out[name] = (f, b)
    return out


# --------------------------------------------------------------------------------------------
# Preparing a twin for PIM-QAT
# --------------------------------------------------------------------------------------------
def transfer_scales(src: PreparedModel, dst: PreparedModel) -> None:
    """Copy the learned activation and weight scales of ``src``'s twins into ``dst``'s
    (same model, other chip); the weights come with ``src.float_model()``."""
    src_twins = dict(src.twins())
    with torch.no_grad():
        for name, twin in dst.twins():
            s = src_twins.get(name)
            if s is None:
                continue
            twin.act_scale.copy_(s.act_scale.detach())
            if twin.weight_scale.shape == s.weight_scale.shape:
                twin.weight_scale.copy_(s.weight_scale.detach())


def check_train_adc_bits(chip: ChipConfig, bits: object, name: str = "train_adc_bits") -> int:
    """``bits`` as the training twin's ADC bits for ``chip`` (an integer in 1..24), or a
    ``ConfigError`` naming ``name`` (the command line's flag): on a chip whose ADC ranges are
    calibrated, other bits deploy the learned range on the chip's grid
    (:func:`cimsim.train.twin.regrids_adc_tables`) where the ADC is linear and no layer's
    ADC is its fused activation; otherwise only the chip's own bits deploy."""
    bits = check_int(name, bits, 1, 24)
    adc = chip.adc
    if adc.range_policy is not RangePolicy.CALIBRATED or bits == adc.bits:
        return bits
    fused = adc.placement is ADCPlacement.LAYER_OUTPUT and adc.fuse_activation
    if regrids_adc_tables(adc.replace(bits=bits), adc) and not fused:
        return bits
    # refused before training: the twin's calibrated levels (a nonlinear converter's, a fused
    # activation's) hold at its own bits only, and deploy(chip=) has no calibration pass
    # (it failed after the epochs)
    flag = name.startswith("--")
    why = ("its layer-output ADCs are the fused activations, whose levels are learned at "
           "the twin's bits" if fused else f"its adc.kind = {adc.kind.value!r} is not a linear "
           "converter, whose range could be carried to other bits")
    raise ConfigError(
        f"{name} = {bits} on chip {chip.name!r}, whose adc.range_policy = 'calibrated': "
        f"{why}; the deployed chip's ADC would need calibrating at its own bits, which "
        "deploying a trained twin does not do; allowed: a chip with adc.range_policy = "
        "'full_scale' or 'fixed' (the paper's adjusted-precision training uses full-scale "
        "ADCs" + ("; --set adc.range_policy=full_scale" if flag else
                  "; on the command line --set adc.range_policy=full_scale")
        + f"), or {name} equal to adc.bits ({adc.bits})")


def prepare_pimqat(model: nn.Module | PreparedModel, chip: ChipConfig | str | Path, calibration, *,
                   seed: int = 0, forward_rescale: bool = True, backward_rescale: bool = True,
                   train_adc_bits: int | None = None, **options) -> PreparedModel:
    """A twin of ``model`` for PIM-QAT on ``chip``.

    Parameters
    ----------
    model : nn.Module or PreparedModel
        A float model, or a twin trained before (e.g. digital QAT): its learned weights and
        scales are the start.
    chip : ChipConfig, str or Path
        The chip trained for, as it is: its noise injected in training (``train_noise``) and
        its column non-linearity in every forward (the twin computes it as the engine). The
        paper's way against a non-linearity, training on the linear chip and deploying with
        ``prepared.deploy(chip=chip)``, is to pass the linear chip here.
    calibration
        Inputs of the calibration pass (``prepare``).
    seed : int
        The programming and noise seed of the twin and its deploy.
    forward_rescale, backward_rescale : bool
        Switch the two rescalings (:func:`apply_rescaling`).
    train_adc_bits : int, optional
        Adjusted-precision training: the ADC of the training twin has this many bits (deploy
        on ``chip``, which keeps its own).
    **options
        ``TwinOptions``.
    """
    chip = as_chip(chip)
    train_chip = chip
    if train_adc_bits is not None:
        train_adc_bits = check_train_adc_bits(chip, train_adc_bits)
        train_chip = train_chip.replace(adc=train_chip.adc.replace(bits=train_adc_bits))
    src = model if isinstance(model, PreparedModel) else None
    float_model = src.float_model() if src is not None else model
    prep = prepare(float_model, train_chip, calibration, seed=seed, **options)
    if src is not None:
        transfer_scales(src, prep)
    apply_rescaling(prep, forward=forward_rescale, backward=backward_rescale)
    return prep
