"""Study: the six level-fitting methods of the nonlinear (ramp) ADC on the demo model.

The bundled digits CNN is deployed on the ``rram-22nm`` preset with its ADC switched to the
in-memory ramp NL-ADC (``adc.kind = 'ramp'``, ``range_policy = 'calibrated'``, the preset's
``calibration_granularity``, i.e. per column, unless ``--granularity`` says otherwise). For every
ADC resolution (2, 3, 4 bits) and every ``adc.level_fit`` method (``uniform``, ``lloyd_max``,
``cdf``, ``kmeans``, ``kmeans_optimal``, ``bs_kmq``) the model is deployed once, with the
levels fitted to the calibration images ``x_train[:256]`` exactly as ``cimsim.deploy`` does, and
then run on the held-out test images. Per (bits, method) the script measures:

(a) per mapped layer, the quantization error of the ADC on the analog partial sums of the test
    images. Each layer's test inputs on the float path (the same for every method, and produced
    like the calibration inputs) and, separately, those it receives in the simulated run are
    quantized with its ``s_x``, run through the planes/GEMM path the engine uses
    and turned into the noise-free analog value of every conversion
    (``engine.analog_values``, what ``engine.calibrate`` fits to). The ADC output is
    ``levels[code]`` with the layer's own fitted thresholds and levels of that (row group,
    conversion), through ``cimsim.adc.Levels``. Reported: raw MSE (cell-LSB^2); NMSE = MSE /
    Var(analog values), pooled over all conversions of the layer; the *output-referred* NMSE
    (the same errors after the shift-add, x plane significance x slice coefficient, summed into each
    output and dequantized, over the variance of the noise-free output); the output gain (the
    least-squares slope of the ADC'd output on the exact output); and the NMSE on the inputs of
    the simulated run;
(b) end-to-end: test accuracy of the simulated CNN (conversion noise as in the preset, averaged
    over ``--repeats`` passes with fresh conversion noise), with the float model, the lossless
    ``ideal`` chip and the preset as shipped (6-bit linear SAR) as references.

It also records, from the calibration samples, how much probability mass sits exactly at the
lower / upper end of each fitting unit (what ``bs_kmq`` pins, ``min_mass`` = 0.01) and in how
many units ``bs_kmq`` produced the same levels as ``kmeans_optimal``.

    python benchmarks/study_levels.py                  # full run, writes docs/levels-study.md
    python benchmarks/study_levels.py --quick          # smoke run (64 test images, no doc)
    python benchmarks/study_levels.py --ideal-devices  # no variation / noise

Runtime of the full run on 2 CPU cores: 400-750 s wall clock depending on machine load, about
600 s CPU (printed at the end and written to the doc).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import cimsim
from cimsim import engine
from cimsim._atomic import write_text
from cimsim.adc import Levels, calibration_units
from cimsim.adc.nonlinear import thin_samples as _thin
from cimsim.arrays.encoding import plane_layout
from cimsim.config import CalibrationGranularity
from cimsim.data import load_digits_split
from cimsim.evaluate import accuracy as accuracy_of
from cimsim.mapping.quant import quantize_acts
from cimsim.models import evaluate, load_digits_cnn

METHODS = ("uniform", "lloyd_max", "cdf", "kmeans", "kmeans_optimal", "bs_kmq")
BITS = (2, 3, 4)
PRESET = "rram-22nm"
N_CAL = 256
MIN_MASS = 0.01  # bs_kmq's default pinning threshold (docs/levels.md)
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# chips
# ---------------------------------------------------------------------------------------------
def strip_devices(chip: cimsim.ChipConfig) -> cimsim.ChipConfig:
    """No programming variation, stuck cells, thermal/read noise or ADC errors."""
    return chip.replace(
        device=chip.device.replace(variation="none", variation_sigma=0.0,
                                   p_stuck_on=0.0, p_stuck_off=0.0),
        noise=chip.noise.replace(thermal_sigma_lsb=0.0, read_noise_rel=0.0),
        adc=chip.adc.replace(gain_error=0.0, offset_error_lsb=0.0, comparator_noise_lsb=0.0),
    )


def study_chip(bits: int, method: str, granularity: str, ideal_devices: bool):
    base = cimsim.load_chip(PRESET)
    if ideal_devices:
        base = strip_devices(base)
    return base.replace(adc=base.adc.replace(kind="ramp", bits=bits, level_fit=method,
                                             range_policy="calibrated",
                                             calibration_granularity=granularity))


# ---------------------------------------------------------------------------------------------
# analog values of every conversion (the machinery of engine.calibrate)
# ---------------------------------------------------------------------------------------------
def analog_blocks(layer, x_int):
    """Yield (m0, group, a) with ``a`` (P, Mc, C) the noise-free analog conversion values."""
    for blk in engine.analog_values(layer, x_int):
        yield blk.m0, blk.group, blk.values


class LayerError:
    """Running sums of one mapped layer's conversion and output errors."""

    def __init__(self):
        self.n = 0
        self.s = 0.0
        self.s2 = 0.0
        self.e2 = 0.0
        self.out_n = 0
        self.out_s = 0.0
        self.out_s2 = 0.0
        self.out_e2 = 0.0
        self.out_se = 0.0
        self.out_ye = 0.0

    def add_conv(self, n: int, s: float, s2: float, e2: float) -> None:
        self.n += n
        self.s += s
        self.s2 += s2
        self.e2 += e2

    def add_out(self, y: np.ndarray, e: np.ndarray) -> None:
        self.out_n += y.size
        self.out_s += float(y.sum())
        self.out_s2 += float(np.square(y).sum())
        self.out_e2 += float(np.square(e).sum())
        self.out_se += float(e.sum())
        self.out_ye += float((y * e).sum())

    @staticmethod
    def _var(n, s, s2):
        return max(s2 / n - (s / n) ** 2, 0.0)

    def result(self) -> dict:
        mse = self.e2 / self.n
        var = self._var(self.n, self.s, self.s2)
        out_mse = self.out_e2 / self.out_n
        out_var = self._var(self.out_n, self.out_s, self.out_s2)
        n = self.out_n
        cov_ye = self.out_ye / n - (self.out_s / n) * (self.out_se / n)
        return dict(mse=mse, var=var, nmse=mse / var if var > 0 else float("nan"),
                    out_nmse=out_mse / out_var if out_var > 0 else float("nan"),
                    # least-squares slope of the ADC'd output on the exact output: 1 + cov/var
                    out_gain=1.0 + cov_ye / out_var if out_var > 0 else float("nan"),
                    n=self.n)


class PartAnalog:
    """Noise-free analog values of one programmed part for a set of integer inputs.

    ``blocks`` holds (m0, group, a) with ``a`` laid out (C, P, Mc): conversion, input plane,
    vector, so that each conversion's values are contiguous. ``y_int`` (M, N) is the exact
    shift-added output of the analog values (the output a perfect ADC would give).
    """

    def __init__(self, layer, xp: np.ndarray):
        m = xp.shape[0]
        n_out = int(layer.out_col.max()) + 1 if layer.out_col.size else 0
        self.sig = plane_layout(layer.chip, layer.input_signed)[0]
        n_conv = layer.pos.shape[0]
        self.scatter = np.zeros((n_conv, n_out))
        self.scatter[np.arange(n_conv), layer.out_col] = layer.conv_coef
        self.blocks = []
        self.n, self.s, self.s2 = 0, 0.0, 0.0
        self.y_int = np.zeros((m, n_out))
        for m0, g, a in analog_blocks(layer, xp):
            a = np.ascontiguousarray(np.moveaxis(a, 2, 0))
            self.blocks.append((m0, g, a))
            self.n += a.size
            self.s += float(a.sum())
            self.s2 += float(np.dot(a.ravel(), a.ravel()))
            self.y_int[m0:m0 + a.shape[2]] += self.shift_add(a)
        if np.any(layer.x_sum_coef != 0):
            self.y_int += xp.sum(axis=1, dtype=np.float64)[:, None] * layer.x_sum_coef[None, :]

    def shift_add(self, a: np.ndarray) -> np.ndarray:
        """(C, P, Mc) conversion values -> (Mc, N) outputs: Σ plane sig × slice coef."""
        return np.tensordot(a, self.sig, axes=(1, 0)).T @ self.scatter


def core_analog(core, x_float: np.ndarray) -> list[PartAnalog]:
    """The :class:`PartAnalog` of every part of a MatmulCore for float inputs (M, K)."""
    x_int = quantize_acts(x_float, core.s_x, core.chip.input_bits, core.signed)
    return [PartAnalog(layer, x_int[:, k0:k1]) for k0, k1, layer in core.parts]


def core_errors(core, analog: list[PartAnalog], acc: LayerError) -> None:
    """Add the ADC errors of one MatmulCore, given its analog values (:func:`core_analog`).

    The ADC of conversion c in row group g is ``Levels(adc.thr[g, c], adc.lvl[g, c])``: code =
    number of thresholds <= a, output ``levels[code]``.
    """
    y = e = 0.0
    for t, ((_k0, _k1, layer), pa) in enumerate(zip(core.parts, analog, strict=True)):
        units = [[Levels(layer.adc.thr[g, c], layer.adc.lvl[g, c])
                  for c in range(layer.n_conversions)] for g in range(layer.n_groups)]
        e_int = np.zeros_like(pa.y_int)
        e2 = 0.0
        for m0, g, a in pa.blocks:
            err = np.empty_like(a)
            for c, lv in enumerate(units[g]):
                np.subtract(lv.quantize(a[c]), a[c], out=err[c])
            e2 += float(np.dot(err.ravel(), err.ravel()))
            e_int[m0:m0 + a.shape[2]] += pa.shift_add(err)
        acc.add_conv(pa.n, pa.s, pa.s2, e2)
        scale = core.s_x * core.s_w[t if core.s_w.shape[0] > 1 else 0]
        y = y + pa.y_int * scale
        e = e + e_int * scale
    acc.add_out(y, e)


# ---------------------------------------------------------------------------------------------
# boundary point masses of the calibration samples (what bs_kmq looks at)
# ---------------------------------------------------------------------------------------------
def fit_units(layer, x_cal, granularity: str) -> list[np.ndarray]:
    """The sample sets the ADC fit sees, pooled as ``levels_from_samples`` pools them."""
    per_g = [[] for _ in range(layer.n_groups)]
    for _m0, g, a in analog_blocks(layer, x_cal):
        per_g[g].append(a.reshape(-1, a.shape[-1]))
    per_g = [np.concatenate(s, axis=0) for s in per_g]
    units = calibration_units(layer, CalibrationGranularity(granularity))
    return [_thin(np.concatenate([_thin(per_g[g][:, cols].ravel()) for g in rows]))
            for rows, cols in units]


def mass_stats(units: list[np.ndarray]) -> dict:
    m_lo = np.array([np.mean(u <= u.min()) for u in units])
    m_hi = np.array([np.mean(u >= u.max()) for u in units])
    zero = float(np.mean(np.concatenate([u == 0 for u in units])))
    degenerate = int(sum(u.min() == u.max() for u in units))
    lo_is_zero = int(sum(u.min() == 0 for u in units))
    live = m_lo < 1.0
    return dict(units=len(units), degenerate=degenerate,
                pin_lo=int(np.sum((m_lo >= MIN_MASS) & live)),
                pin_hi=int(np.sum((m_hi >= MIN_MASS) & live)),
                med_lo=float(np.median(m_lo[live])) if live.any() else float("nan"),
                med_hi=float(np.median(m_hi[live])) if live.any() else float("nan"),
                max_lo=float(m_lo[live].max()) if live.any() else float("nan"),
                max_hi=float(m_hi[live].max()) if live.any() else float("nan"),
                zero=zero, lo_is_zero=lo_is_zero)


# ---------------------------------------------------------------------------------------------
# one (bits, method) point
# ---------------------------------------------------------------------------------------------
class Recorder:
    """Wraps ``cimsim.engine.calibrate`` to keep each programmed layer's calibration inputs."""

    def __init__(self):
        self.inputs: dict[str, np.ndarray] = {}
        self._orig = engine.calibrate

    def __enter__(self):
        def calibrate(layer, x_cal, **kw):
            self.inputs[layer.name] = np.array(x_cal, copy=True)
            return self._orig(layer, x_cal, **kw)

        engine.calibrate = calibrate
        return self

    def __exit__(self, *exc):
        engine.calibrate = self._orig


def accuracy(sim, x, y, repeats: int) -> list[float]:
    """``repeats`` accuracy passes, each one forward of all of ``x`` (fresh conversion noise)."""
    return [accuracy_of(sim, x, y, batch_size=None) for _ in range(repeats)]


def cores(sim):
    """((layer name, core index), core) of every MatmulCore of a deployed model."""
    return [((name, i), core) for name, layer in sim.sim_layers.items()
            for i, core in enumerate(layer.cores)]


def run_captured(sim, x, float_path: bool) -> tuple[torch.Tensor, dict]:
    """One forward of ``sim`` on ``x`` recording every core's float inputs (M, K).

    ``float_path``: every core computes in float (``float_run``), so the inputs are the float
    model's activations; otherwise the simulated forward runs and each core records what it
    receives there.
    """
    got: dict = defaultdict(list)
    for key, core in cores(sim):
        def wrapped(xc, _key=key, _core=core, _run=core.run):
            got[_key].append(np.array(xc, copy=True))
            return _core.float_run(xc) if float_path else _run(xc)
        core.run = wrapped
    try:
        with torch.no_grad():
            out = sim(x)
    finally:
        for _key, core in cores(sim):
            del core.run  # back to the class method
    return out, {k: np.concatenate(v) for k, v in got.items()}


def fingerprint(sim) -> dict:
    """What must not depend on the ADC settings: activation scales and programmed matrices."""
    return {key: (core.s_x, core.signed,
                  tuple(hash(np.ascontiguousarray(p.gemm_matrix).tobytes()) for _a, _b, p in
                        core.parts)) for key, core in cores(sim)}


def run_point(model, chip, x_cal, x_test, y_test, repeats, seed, cache):
    """Deploy one (bits, method) chip; accuracy, per-layer errors, fitted levels.

    ``cache`` holds what is the same for every ADC setting (checked by :func:`fingerprint`): the
    float-path analog values of the test inputs, the calibration inputs of every part.
    """
    t0 = time.perf_counter()
    rec = Recorder()
    with rec:
        sim = cimsim.deploy(model, chip, calibration=x_cal, seed=seed)
    t_deploy = time.perf_counter() - t0
    fp = fingerprint(sim)
    if "fingerprint" not in cache:
        cache["fingerprint"] = fp
        cache["cal"] = {name: [(part, rec.inputs[part.name]) for core in layer.cores
                               for _a, _b, part in core.parts]
                        for name, layer in sim.sim_layers.items()}
        _, xf = run_captured(sim, x_test, float_path=True)
        cache["float_inputs"] = xf
        cache["float_analog"] = {key: core_analog(core, xf[key]) for key, core in cores(sim)}
    elif fp != cache["fingerprint"]:
        raise AssertionError("activation scales or programmed weights changed with the ADC")
    t0 = time.perf_counter()
    logits, xs = run_captured(sim, x_test, float_path=False)
    accs = [float((logits.argmax(1) == y_test).float().mean())]
    accs += accuracy(sim, x_test, y_test, repeats - 1)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    errors, errors_sim, levels = {}, {}, {}
    for name, layer in sim.sim_layers.items():
        acc, acc_sim = LayerError(), LayerError()
        for i, core in enumerate(layer.cores):
            core_errors(core, cache["float_analog"][(name, i)], acc)
            same = np.array_equal(xs[(name, i)], cache["float_inputs"][(name, i)])
            core_errors(core, cache["float_analog"][(name, i)] if same
                        else core_analog(core, xs[(name, i)]), acc_sim)
            for _k0, _k1, part in core.parts:
                levels[part.name] = part.adc.lvl.copy()
        errors[name] = acc.result()
        errors_sim[name] = acc_sim.result()
    t_mse = time.perf_counter() - t0
    return dict(acc=accs, errors=errors, errors_sim=errors_sim, levels=levels,
                t_deploy=t_deploy, t_eval=t_eval, t_mse=t_mse)


# ---------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------
def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_e(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.3g}" if 1e-2 <= abs(v) < 1e3 else f"{v:.2e}"


def pct(v: float) -> str:
    return f"{100 * v:.2f}"


def error_tables(res, layers, methods, bits_list, key, title, src="errors", to_one=False):
    """One markdown block per bits: layers x methods, best per row in bold (the lowest, or the
    closest to 1 with ``to_one``)."""
    def best(vals):
        v = np.abs(np.log(vals)) if to_one else np.asarray(vals)
        return int(np.nanargmin(v))

    def fmt(v):
        return f"{v:.3f}" if to_one else fmt_e(v)

    out = []
    for bits in bits_list:
        rows = []
        for name in layers:
            vals = [res[(bits, m)][src][name][key] for m in methods]
            b = best(vals)
            rows.append([name] + [("**" + fmt(v) + "**") if i == b else fmt(v)
                                  for i, v in enumerate(vals)])
        geo = [geo_mean(res, bits, m, layers, key, src) for m in methods]
        b = best(geo)
        rows.append(["geo. mean"] + [("**" + fmt(v) + "**") if i == b else fmt(v)
                                     for i, v in enumerate(geo)])
        what = "closest to 1" if to_one else "lowest"
        out.append(f"**{title}, {bits}-bit NL-ADC** ({what} per row in bold)\n\n"
                   + md_table(["layer"] + list(methods), rows))
    return "\n\n".join(out)


def geo_mean(res, bits, m, layers, key, src="errors"):
    return float(np.exp(np.mean(np.log([res[(bits, m)][src][n][key] for n in layers]))))


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 64 test images, 1 accuracy pass, no doc unless --doc")
    ap.add_argument("--ideal-devices", action="store_true",
                    help="no programming variation, stuck cells, thermal/read noise")
    ap.add_argument("--granularity", default="column", choices=["layer", "array", "column"],
                    help="adc.calibration_granularity (default: column, the preset's)")
    ap.add_argument("--bits", default=",".join(map(str, BITS)),
                    help="comma-separated ADC resolutions (default 2,3,4)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated level_fit")
    ap.add_argument("--n-test", type=int, default=None, help="test images (default all 449)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="accuracy passes with fresh conversion noise (default 3; 1 with "
                         "--ideal-devices or --quick)")
    ap.add_argument("--seed", type=int, default=0, help="deploy seed (variation, noise)")
    ap.add_argument("--doc", default=None,
                    help="markdown output (default docs/levels-study.md; none with --quick)")
    args = ap.parse_args(argv)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    bits_list = [int(b) for b in args.bits.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    n_test = args.n_test if args.n_test is not None else (64 if args.quick else None)
    repeats = args.repeats if args.repeats is not None else (
        1 if (args.quick or args.ideal_devices) else 3)
    doc = args.doc if args.doc is not None else (None if args.quick else
                                                 str(ROOT / "docs" / "levels-study.md"))

    model = load_digits_cnn()
    x_train, _y_train, x_test, y_test = load_digits_split()
    if n_test is not None:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    x_cal = x_train[:N_CAL]
    print(f"study_levels: {PRESET}, ramp NL-ADC, granularity={args.granularity}, "
          f"devices={'ideal' if args.ideal_devices else 'as preset'}, "
          f"{len(y_test)} test images, {repeats} accuracy pass(es)", flush=True)

    refs = {"float model": [evaluate(model, x_test, y_test)]}
    ideal = cimsim.deploy(model, cimsim.load_chip("ideal"), calibration=x_cal, seed=args.seed)
    refs["lossless `ideal` chip"] = accuracy(ideal, x_test, y_test, 1)
    preset = cimsim.load_chip(PRESET)
    if args.ideal_devices:
        preset = strip_devices(preset)
    shipped = cimsim.deploy(model, preset, calibration=x_cal, seed=args.seed)
    refs[f"`{PRESET}` as shipped ({preset.adc.bits}-bit linear {preset.adc.kind}, "
         f"{preset.adc.calibration_stat.value} {preset.adc.percentile})"] = accuracy(
        shipped, x_test, y_test, repeats)
    for k, v in refs.items():
        print(f"  reference {k}: {pct(np.mean(v))} %", flush=True)

    res = {}
    cache: dict = {}
    for bits in bits_list:
        for m in methods:
            chip = study_chip(bits, m, args.granularity, args.ideal_devices)
            r = run_point(model, chip, x_cal, x_test, y_test, repeats, args.seed, cache)
            res[(bits, m)] = r
            errs = r["errors"]
            print(f"  {bits}b {m:15s} acc {pct(np.mean(r['acc']))} %  NMSE "
                  + " ".join(f"{e['nmse']:.3g}" for e in errs.values())
                  + f"  (deploy {r['t_deploy']:.1f}s, eval {r['t_eval']:.1f}s, "
                    f"mse {r['t_mse']:.1f}s)", flush=True)
    layers = list(next(iter(res.values()))["errors"])
    units_by_part = {part.name: fit_units(part, xc, args.granularity)
                     for parts in cache["cal"].values() for part, xc in parts}
    masses = {name: mass_stats([u for part, _ in parts for u in units_by_part[part.name]])
              for name, parts in cache["cal"].items()}
    # which (row group, column) units bs_kmq pins (column granularity: one unit per level set)
    pins = None
    if args.granularity == "column":
        pins = {pn: np.array([max(np.mean(u <= u.min()), np.mean(u >= u.max())) >= MIN_MASS
                              and u.min() < u.max() for u in us])
                for pn, us in units_by_part.items()}
    part_layer = {part.name: name for name, parts in cache["cal"].items() for part, _ in parts}
    del cache
    runtime = (time.perf_counter() - t_start, time.process_time() - cpu_start)

    # bs_kmq vs kmeans_optimal (the same method where nothing is pinned): identical levels?
    same = {}
    if "bs_kmq" in methods and "kmeans_optimal" in methods and "kmeans" in methods:
        for bits in bits_list:
            lk, lb = res[(bits, "kmeans_optimal")]["levels"], res[(bits, "bs_kmq")]["levels"]
            st = dict(eq=0, tot=0, pinned=0, free=0, layers=set())
            for part in lk:
                a = lk[part].reshape(-1, lk[part].shape[-1])
                b = lb[part].reshape(-1, lb[part].shape[-1])
                diff = ~np.all(a == b, axis=1)
                st["tot"] += a.shape[0]
                st["eq"] += int(np.sum(~diff))
                if diff.any():
                    st["layers"].add(part_layer[part])
                if pins is not None:
                    pin = pins[part]
                    st["pinned"] += int(np.sum(diff & pin))
                    st["free"] += int(np.sum(diff & ~pin))
            same[bits] = st

    # ---------------- tables ----------------
    t1 = error_tables(res, layers, methods, bits_list, "nmse", "NMSE")
    t1b = error_tables(res, layers, methods, bits_list, "mse", "MSE (cell-LSB²)")
    t1c = error_tables(res, layers, methods, bits_list, "out_nmse", "Output-referred NMSE")
    t1e = error_tables(res, layers, methods, bits_list, "out_gain", "Output gain",
                       to_one=True)
    t1d = error_tables(res, layers, methods, bits_list, "nmse", "NMSE, simulated-path inputs",
                       src="errors_sim")
    rows = []
    for m in methods:
        row = [m]
        for b in bits_list:
            a = res[(b, m)]["acc"]
            best = max(np.mean(res[(b, mm)]["acc"]) for mm in methods)
            s = pct(np.mean(a))
            if len(a) > 1:
                s += f" ({pct(min(a))}–{pct(max(a))})"
            row.append(f"**{s}**" if np.mean(a) == best else s)
        rows.append(row)
    t2 = md_table(["level_fit"] + [f"{b} bit" for b in bits_list], rows)
    t2r = md_table(["reference", "accuracy %"], [[k, pct(np.mean(v))] for k, v in refs.items()])
    mrows = []
    for name in layers:
        s = masses[name]
        mrows.append([name, str(s["units"]), str(s["degenerate"]), pct(s["zero"]),
                      str(s["lo_is_zero"]),
                      f"{pct(s['med_lo'])} / {pct(s['max_lo'])}",
                      f"{pct(s['med_hi'])} / {pct(s['max_hi'])}",
                      f"{s['pin_lo']} / {s['pin_hi']}"])
    t3 = md_table(["layer", "fit units", "constant units", "exact zeros %",
                   "units with min = 0", "mass at min %: median / max",
                   "mass at max %: median / max", f"units pinned (≥{pct(MIN_MASS)} %) lo / hi"],
                  mrows)
    print("\n## Table 1: NMSE per layer (test set)\n\n" + t1)
    print("\n## Table 1b: raw MSE\n\n" + t1b)
    print("\n## Table 1c: output-referred NMSE\n\n" + t1c)
    print("\n## Table 1e: output gain\n\n" + t1e)
    print("\n## Table 1d: NMSE on the inputs of the simulated run\n\n" + t1d)
    print("\n## Table 2: accuracy %\n\n" + t2 + "\n\n" + t2r)
    print("\n## Table 3: calibration-sample point masses\n\n" + t3)
    if same:
        print("\nbs_kmq levels identical to kmeans_optimal: "
              + ", ".join(f"{b} bit {st['eq']}/{st['tot']} units" for b, st in same.items()))
    print(f"\nruntime {runtime[0]:.0f} s wall, {runtime[1]:.0f} s CPU (all threads)")

    if doc:
        text = render_doc(args, argv, bits_list, methods, layers, res, refs, masses, same,
                          t1, t1b, t1c, t1d, t1e, t2, t2r, t3, repeats, len(y_test), runtime)
        Path(doc).parent.mkdir(parents=True, exist_ok=True)
        write_text(doc, text)  # UTF-8, whole or not at all
        print(f"wrote {doc}")
    return 0


# ---------------------------------------------------------------------------------------------
# the doc
# ---------------------------------------------------------------------------------------------
def _rank(d: dict) -> list[str]:
    return sorted(d, key=d.get)


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _ticks(names) -> str:
    return ", ".join(f"`{n}`" for n in names)


def discussion(bits_list, methods, layers, res, refs, masses, same, n_test) -> str:
    p = []
    acc = {(b, m): float(np.mean(res[(b, m)]["acc"])) for b in bits_list for m in methods}
    nmse = {(b, m): geo_mean(res, b, m, layers, "nmse") for b in bits_list for m in methods}
    onmse = {(b, m): geo_mean(res, b, m, layers, "out_nmse") for b in bits_list for m in methods}
    gain = {(b, m): geo_mean(res, b, m, layers, "out_gain") for b in bits_list for m in methods}

    # (1) conversion-level NMSE
    lines = []
    for b in bits_list:
        g = {m: nmse[(b, m)] for m in methods}
        r = _rank(g)
        wins = defaultdict(int)
        for n in layers:
            wins[min(methods, key=lambda m: res[(b, m)]["errors"][n]["nmse"])] += 1
        lines.append(
            f"  - {b} bit: geometric-mean NMSE over the layers, lowest first: "
            + ", ".join(f"`{m}` {fmt_e(g[m])}" for m in r) + ". Lowest per layer: "
            + ", ".join(f"`{m}` in {k}/{len(layers)}" for m, k in
                        sorted(wins.items(), key=lambda kv: -kv[1])) + ".")
    rel = max(abs(res[(b, m)]["errors_sim"][n]["nmse"] / res[(b, m)]["errors"][n]["nmse"] - 1)
              for b in bits_list for m in methods for n in layers)
    lines.append(f"  - On the inputs of the simulated run (Table 1d) the NMSEs differ from "
                 f"Table 1 by at most {100 * rel:.1f} % (relative).")
    p.append("- **Quantization error of the partial sums (Table 1).**\n" + "\n".join(lines))
    if len(methods) > 1 and len(bits_list) > 0:
        extra = []
        if "uniform" in methods:
            ratios = [nmse[(b, "uniform")] / min(nmse[(b, m)] for m in methods) for b in bits_list]
            extra.append("`uniform` has "
                         + ", ".join(f"{x:.1f}×" for x in ratios)
                         + f" the lowest geometric-mean NMSE at {', '.join(map(str, bits_list))} "
                         "bit")
        if "kmeans_optimal" in methods:
            cells = [(b, n) for b in bits_list for n in layers]
            k = sum(min(methods, key=lambda m: res[(b, m)]["errors"][n]["nmse"])
                    == "kmeans_optimal" for b, n in cells)
            extra.append(f"`kmeans_optimal`, which is MSE-optimal on each unit's calibration "
                         f"samples, has the lowest test NMSE in {k} of the {len(cells)} "
                         "(bits, layer) cells")
        if extra:
            p[-1] += "\n  " + "; ".join(extra) + "."

    # (2) accuracy
    lines = []
    ideal = float(np.mean(refs["lossless `ideal` chip"]))
    shipped = [float(np.mean(v)) for k, v in refs.items() if "as shipped" in k][0]
    for b in bits_list:
        a = {m: acc[(b, m)] for m in methods}
        order = sorted(methods, key=lambda m: -a[m])
        line = f"  - {b} bit, best first: " + ", ".join(f"`{m}` {pct(a[m])}" for m in order)
        runs = {m: res[(b, m)]["acc"] for m in methods}
        if len(runs[order[0]]) > 1:
            lo_best = min(runs[order[0]])
            tied = [m for m in order[1:] if max(runs[m]) >= lo_best]
            line += ("; the pass ranges of " + _ticks(tied) + " overlap the best's"
                     if tied else "; no other method's pass range reaches the best's")
        lines.append(line + ".")
    p.append(f"- **Accuracy (Table 2)** on {n_test} test images (one image = "
             f"{100 / n_test:.2f} points; float model {pct(refs['float model'][0])} %, lossless "
             f"chip {pct(ideal)} %, the preset's 6-bit linear SAR {pct(shipped)} %):\n"
             + "\n".join(lines))

    # (3) error vs accuracy, and the output gain
    if len(methods) > 2:
        lines = []
        gain_better = []
        for b in bits_list:
            av = [acc[(b, m)] for m in methods]
            r1 = _spearman(av, [-nmse[(b, m)] for m in methods])
            r2 = _spearman(av, [-onmse[(b, m)] for m in methods])
            r3 = _spearman(av, [-abs(np.log(gain[(b, m)])) for m in methods])
            if r3 > max(r1, r2):
                gain_better.append(b)
            lines.append(f"  - {b} bit: Spearman ρ between accuracy and −NMSE {r1:+.2f}, "
                         f"−output NMSE {r2:+.2f}, −|log output gain| {r3:+.2f}; geometric-mean "
                         "output gain " + ", ".join(f"`{m}` {gain[(b, m)]:.3f}"
                                                    for m in methods) + ".")
        if gain_better:
            verdict = (f"At {', '.join(map(str, gain_better))} bit the accuracies follow the "
                       "output gain more closely than either NMSE; the numbers are consistent "
                       "with that shrinkage costing accuracy there, but this study does not "
                       "isolate it (no gain-corrected variant was run).")
        else:
            verdict = ("At no bit width do the accuracies follow the output gain more closely "
                       "than the NMSE.")
        p.append(
            "- **Partial-sum error, output gain and accuracy.** Rank correlations "
            f"over the {len(methods)} methods (a small sample; the accuracies carry the "
            "conversion noise of the listed passes):\n" + "\n".join(lines) + "\n  "
            "The output gain (Table 1e) is the slope of the ADC'd layer output on the exact "
            "one. A quantizer whose levels are the means of their cells (`lloyd_max`, "
            "`kmeans`, `kmeans_optimal`, `cdf`, and `bs_kmq` apart from its pinned levels) has "
            "E[a | code] = level on its fitting data, so its output varies less than its input "
            "(Var(q) = Var(a) − MSE): it shrinks partial sums towards their mean. `uniform` "
            "(levels at the ends of the calibration range, equal steps) has no such property. "
            "The gains above show how much of this reaches the layer outputs; the digital bias "
            "added after dequantization is not shrunk. " + verdict)

    # (4) bs_kmq
    units = sum(s["units"] for s in masses.values())
    const = sum(s["degenerate"] for s in masses.values())
    pin_lo = sum(s["pin_lo"] for s in masses.values())
    pin_hi = sum(s["pin_hi"] for s in masses.values())
    lo0 = sum(s["lo_is_zero"] for s in masses.values())
    pinned_layers = [n for n, s in masses.items() if s["pin_lo"] or s["pin_hi"]]
    zeros = ", ".join(f"{n} {pct(s['zero'])} %" for n, s in masses.items())
    txt = (f"- **BS-KMQ here.** Of the {units} fitting units ({const} constant), "
           f"{pin_lo} have ≥ {pct(MIN_MASS)} % of their calibration samples exactly at the "
           f"lower end and {pin_hi} at the upper end (Table 3); "
           + (f"all of them are in {_ticks(pinned_layers)}. " if pinned_layers else "")
           + "The digitised values are differential partial sums (positive minus negative "
           "column) of one input plane, so exact zeros (e.g. a plane with no active input in the "
           f"row group; share of samples: {zeros}) lie inside the range: the minimum is 0 in "
           f"{lo0} units. The range is the calibration min … max, so there is no clamp that "
           "piles values on its ends.")
    if same:
        txt += (" With nothing pinned `bs_kmq` is `kmeans_optimal` (`docs/levels.md`); their "
                "levels are equal in "
                + ", ".join(f"{st['eq']}/{st['tot']} units at {b} bit" for b, st in same.items())
                + "; the units that differ are all in "
                + _ticks(sorted(set().union(*(st["layers"] for st in same.values())))) + ".")
        if any(st["free"] for st in same.values()):
            txt += (" Of the differing units, "
                    + ", ".join(f"{st['pinned']} pinned and {st['free']} not pinned at {b} bit"
                                for b, st in same.items())
                    + " (a not-pinned unit that differs would contradict that definition).")
        parts = []
        for b in bits_list:
            r = [res[(b, "bs_kmq")]["errors"][n]["nmse"] / res[(b, "kmeans")]["errors"][n]["nmse"]
                 for n in layers]
            d = 100 * (acc[(b, "bs_kmq")] - acc[(b, "kmeans")])
            d = 0.0 if abs(d) < 0.005 else d
            d_img = round(d / 100 * n_test)
            parts.append(f"{b} bit: NMSE ratio bs_kmq/kmeans per layer "
                         + ", ".join(f"{x:.3f}" for x in r)
                         + f"; accuracy {d:+.2f} points ({d_img:+d} images per pass on "
                           "average)")
        txt += " " + "; ".join(parts) + "."
        most = max(st["tot"] - st["eq"] for st in same.values())
        txt += (f" So on this model `bs_kmq` changes at most {most} of "
                f"{max(st['tot'] for st in same.values())} level sets relative to "
                "`kmeans_optimal`, and its gain over `kmeans` is mostly the exact K-means; "
                "the paper's premise (activations piled on the range ends by ReLU and a clamp) "
                "describes post-activation values, and the bit-serial partial sums digitised "
                "here have boundary masses ≥ 1 % in only the units counted above.")
    p.append(txt)
    p.append("- **Caveats.** One deployment seed (programming variation) per point; accuracy is "
             "the mean over the listed conversion-noise passes. The BS-KMQ paper body was not "
             "available: only its abstract was read, and our `bs_kmq` steps (pinning rule "
             "`min_mass` = 1 %, ε = 0, exact K-means on the interior with 2^b minus the pinned "
             "levels, then Lloyd steps with the pinned levels held) are inferred "
             "(Dong et al., arXiv 2603.10540, abstract only; `docs/levels.md`). "
             "The paper quantizes activations "
             "(one conversion per whole dot product); here every method digitises bit-serial "
             "partial sums, the demo chip's case. The paper's own setting, a layer-output ADC "
             "that is the ReLU's quantizer, is `docs/activation-adc-study.md`.")
    return "\n\n".join(p)


def render_doc(args, argv, bits_list, methods, layers, res, refs, masses, same,
               t1, t1b, t1c, t1d, t1e, t2, t2r, t3, repeats, n_test, runtime) -> str:
    chip = study_chip(bits_list[0], methods[0], args.granularity, args.ideal_devices)
    cmd = "python benchmarks/study_levels.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    adc = chip.adc
    dev = chip.device
    gran = adc.calibration_granularity.value
    unit = {"column": "one level set per row group × ADC'd column",
            "array": "one level set per array (row tile × column tile)",
            "layer": "one level set per programmed layer"}[gran]
    if gran != "column":
        unit += "; changed from the preset's `column` by `--granularity`"
    if args.ideal_devices:
        devices = ("**ideal** (`--ideal-devices`: no variation, no stuck cells, no thermal/read "
                   "noise)")
    else:
        devices = (f"as in the preset: `{dev.variation.value}` programming variation "
                   f"σ = {dev.variation_sigma}, thermal noise σ = "
                   f"{chip.noise.thermal_sigma_lsb} cell-LSB per conversion, on/off ratio "
                   f"{dev.on_off_ratio} with `{dev.off_current_compensation.value}` off-current "
                   "compensation")
    setup = f"""## Setup

- **Model:** the bundled digits CNN (`cimsim.models.load_digits_cnn`: 3 conv + 2 linear
  layers, all mapped, ReLU), `load_digits_split()` default split. Calibration (activation
  scales and ADC levels): `x_train[:{N_CAL}]`; evaluation: the first {n_test} test images.
  Deploy seed {args.seed}.
- **Chip:** preset `{PRESET}` with the ADC replaced by the ramp NL-ADC:
  `adc.kind = "ramp"`, `adc.bits ∈ {{{", ".join(map(str, bits_list))}}}`,
  `adc.level_fit ∈ {{{", ".join(methods)}}}`, `adc.range_policy = "calibrated"`,
  **`adc.calibration_granularity = "{gran}"`** ({unit}).
  Devices: {devices}.
  {chip.input_bits}-bit inputs applied bit-serially ({chip.dac_bits}-bit DAC, {chip.n_planes}
  planes), {chip.weight_bits}-bit `{chip.weight_encoding.value}` weights
  (`{chip.differential_readout.value}` readout), {dev.bits_per_cell} bits per cell,
  {chip.array.n_rows}×{chip.array.n_cols} arrays.
  The ramp ADC's levels are fitted on each unit's calibration samples between their min and
  max (`calibration_stat`/`percentile` below are the preset's and are not used by it).
  Exact config of the {bits_list[0]}-bit `{methods[0]}` point (only `adc.bits` and
  `adc.level_fit` vary):

```toml
{chip.to_toml().rstrip()}
```

- **Measurement (Table 1).** The test images are run through the deployed model with every
  mapped layer computing in float (`MatmulCore.float_run`), and the float inputs of each layer
  are recorded and quantized with that layer's input scale `s_x`, exactly as
  `engine.calibrate` receives the calibration inputs. So every method is measured on the same
  test inputs (Table 1d repeats the NMSE on the inputs of the simulated run). These integer
  inputs are pushed through the engine's own plane/GEMM path by `engine.analog_values`, as
  `engine.calibrate` does, giving the noise-free analog value `a` of
  every conversion (every input plane × row group × ADC'd column × vector). The ADC output is
  `levels[code(a)]`, computed with `cimsim.adc.Levels(adc.thr[g, c], adc.lvl[g, c])`
  of that (row group g, conversion c); with ideal devices this reproduces `engine.run`'s
  output to rounding.
  MSE = mean((ADC(a) − a)²) in cell-LSB²; NMSE = MSE / Var(a), both pooled over all
  conversions of the layer. Output-referred NMSE (Table 1c): the errors are shift-added
  (× plane significance × slice coefficient, summed per output and dequantized), and their mean
  square is divided by the variance of the equally shift-added noise-free outputs. Noise is
  excluded from all of these (it is in the accuracies).
- **Accuracy (Table 2):** `argmax` of the simulated model (conversion noise on), mean of
  {repeats} pass(es) over the test set with fresh conversion noise each
  {"(min–max in brackets)" if repeats > 1 else ""}.
- **Reproduce:** `{cmd.strip()}` (from the repository root; runtime of this run:
  {runtime[0]:.0f} s wall clock, {runtime[1]:.0f} s CPU time summed over threads, on
  {os.cpu_count()} CPU cores; Python {platform.python_version()},
  torch {torch.__version__}, NumPy {np.__version__}).
"""
    return f"""# Nonlinear-ADC level fitting on the demo model

Generated by `benchmarks/study_levels.py`; every number below comes from that script's run.
Methods are defined in `docs/levels.md`.

{setup}
## Table 1: quantization error of the partial sums, per layer (test images)

{t1}

### Table 1b: raw MSE

{t1b}

### Table 1c: output-referred NMSE

{t1c}

### Table 1e: output gain

Least-squares slope of the ADC'd output (noise-free analog values through the NL-ADC, then
shift-added and dequantized) on the exact output: 1 + Cov(y, e) / Var(y), y the exact output
and e its error, pooled over the layer's outputs and test vectors. Below 1: the ADC shrinks the
layer's matrix product towards its mean.

{t1e}

### Table 1d: NMSE on the inputs each layer receives in the simulated run

Same as Table 1 but with the integer inputs each layer receives during the simulated test
forward (the first accuracy pass), so from layer 2 on they carry the errors of the simulated
earlier layers and differ between methods; these are the values the ADC actually digitised.

{t1d}

## Table 2: test accuracy (%)

{t2}

References:

{t2r}

## Table 3: point masses at the ends of the calibration samples

Per layer, over the fitting units (the sample set of one level fit; here
{"one per (row group, column)" if args.granularity == "column" else args.granularity}):
share of exact zeros among all samples; units whose minimum is exactly 0; median and maximum over
units of the share of samples exactly at the unit's minimum / maximum (what `bs_kmq` with ε = 0
measures); and how many units `bs_kmq` pins at the lower / upper end (mass ≥ `min_mass` =
{pct(MIN_MASS)} %).

{t3}

## Discussion

{discussion(bits_list, methods, layers, res, refs, masses, same, n_test)}
"""


if __name__ == "__main__":
    raise SystemExit(main())
