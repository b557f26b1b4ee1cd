"""Fit the converter cost lines of ``cimsim.cost.adc_survey`` to the ADC survey; draw the figure.

Data: B. Murmann, "ADC Performance Survey 1997-2025", [Online], github bmurmann/ADC-survey
(export its sheet to CSV; the data carry no licence, so the repository ships only the fitted
constants and this script). Usage::

    python scripts/fit_adc_survey.py --survey ADCsurvey.csv [--figure docs/adc-survey-fit.png]
                                     [--speed]

prints the fitted ``FAMILIES`` (compare with ``cimsim/cost/adc_survey.py``) and draws the
energy per conversion vs bits of every converter kind at 22 nm and 65 nm as the physical model
prices it (``cimsim.cost.models.ADCModel``: the survey lines, the counters, the single-slope
ramp generator's share, and 1-b SAR/flash/single-slope conversions as one sense-amp decision),
with the survey's points (energy per Nyquist sample vs ENOB, normalised to 0.8 V) behind them,
and the SAR line paced at 1 GS/s (the survey's speed envelope,
``cimsim.cost.adc_survey.rate_factor``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import cimsim
from cimsim.config import ADCKind, TDCArchitecture
from cimsim.cost.adc_survey import FAMILIES, family_of, fom_w_fj, rate_factor, steps
from cimsim.cost.models import ADCModel
from cimsim.cost.tables import CONVERTER_KINDS, one_comparator
from cimsim.events import Action

ROOT = Path(__file__).resolve().parents[1]
FAMILY_ARCH = {"sar": lambda a: a == "SAR", "flash": lambda a: a == "Flash",
               "time": lambda a: ("VCO" in a) or ("Time-based" in a)}
ENERGY_QUANTILE = 25
AREA_QUANTILE = 10


def load(path: Path) -> pd.DataFrame:
    d = pd.read_csv(path)
    d["node_nm"] = pd.to_numeric(d["TECHNOLOGY"], errors="coerce") * 1000
    d["enob"] = (pd.to_numeric(d["SNDR_hf [dB]"], errors="coerce") - 1.76) / 6.02
    d["fomw_fj"] = pd.to_numeric(d["FOMW_hf [fJ/conv-step]"], errors="coerce")
    d["area_mm2"] = pd.to_numeric(d["AREA [mm^2]"], errors="coerce")
    d["vdd_v"] = pd.to_numeric(d["VSUP1 [V]"], errors="coerce")
    d["arch"] = d["ARCHITECTURE"].astype(str)
    keep = (d.node_nm.between(5, 180) & d.fomw_fj.notna() & d.vdd_v.notna() & (d.enob < 10.5)
            & ~d.arch.str.contains("TI"))
    d = d[keep].copy()
    d["fom_08v_fj"] = d.fomw_fj * (0.8 / d.vdd_v) ** 2
    d["energy_08v_pj"] = d.fom_08v_fj * 2 ** d.enob * 1e-3
    return d


def fit(d: pd.DataFrame) -> dict[str, dict]:
    out = {}
    for fam, pick in FAMILY_ARCH.items():
        s = d[d.arch.map(pick)]
        x, y = np.log(s.node_nm / 45.0), np.log(s.fom_08v_fj)
        slope, icpt = np.polyfit(x, y, 1)
        resid = y - (slope * x + icpt)
        a = s[s.area_mm2.notna()]
        area_norm = a.area_mm2 * 1e6 / 2 ** a.enob / (a.node_nm * 1e-3) ** 2
        out[fam] = dict(n_points=len(s), fom_45nm_fj=float(np.exp(icpt + np.percentile(
            resid, ENERGY_QUANTILE))), slope=float(slope), scatter=float(resid.std()),
            area_step_f2=float(np.percentile(area_norm, AREA_QUANTILE)))
    return out


def speed_table(d: pd.DataFrame) -> pd.DataFrame:
    """Each family's survey points against the shipped line (0 = the model), by decade of
    Nyquist rate: count, lower quartile and median of ln(FOM / FOM_model). The shipped lines
    carry no rate term; this table is why (docs/technology.md §7)."""
    rows = []
    for fam, pick in FAMILY_ARCH.items():
        s = d[d.arch.map(pick)]
        fit_ = FAMILIES[fam]
        model = fit_.fom_45nm_fj * (s.node_nm / 45.0) ** fit_.slope
        r = np.log(s.fom_08v_fj / model)
        dec = np.floor(np.log10(pd.to_numeric(s["fsnyq [Hz]"], errors="coerce")))
        for k, v in r.groupby(dec):
            rows.append(dict(family=fam, decade_hz=f"1e{int(k)}", n=len(v),
                             lower_quartile=round(float(np.percentile(v, 25)), 2),
                             median=round(float(v.median()), 2)))
    return pd.DataFrame(rows)


def hinge_fit(d: pd.DataFrame) -> tuple[float, float]:
    """The three families' points pooled, ln(FOM / family line) fitted by least squares as
    ``c + s * max(0, ln(f / f_c))`` over corners f_c of 1e5..1e10 Hz: ``(f_c, s)``. A slope near
    0 means these points resolve no rate corner (docs/technology.md §7)."""
    r, f = [], []
    for fam, pick in FAMILY_ARCH.items():
        s = d[d.arch.map(pick)]
        fit_ = FAMILIES[fam]
        r += list(np.log(s.fom_08v_fj / (fit_.fom_45nm_fj * (s.node_nm / 45.0) ** fit_.slope)))
        f += list(pd.to_numeric(s["fsnyq [Hz]"], errors="coerce"))
    ra, fa = np.asarray(r, float), np.asarray(f, float)
    ok = np.isfinite(ra) & np.isfinite(fa)
    ra, fa = ra[ok], fa[ok]
    best = (np.inf, 0.0, 0.0)
    for lfc in np.arange(5.0, 10.001, 0.1):
        a = np.c_[np.ones_like(fa), np.maximum(0.0, np.log(fa / 10**lfc))]
        coef = np.linalg.lstsq(a, ra, rcond=None)[0]
        sse = float(((a @ coef - ra) ** 2).sum())
        if sse < best[0]:
            best = (sse, 10**lfc, float(coef[1]))
    return best[1], best[2]


# line style and colour of each kind in the figure (the survey points take their family's)
KIND_STYLE = {ADCKind.SAR: ("-", "tab:blue"), ADCKind.FLASH: ("--", "tab:red"),
              ADCKind.RAMP: (":", "tab:orange"),
              ADCKind.SINGLE_SLOPE: ((0, (6, 2, 1, 2)), "tab:purple"),
              ADCKind.CCO: ("-.", "tab:green"),
              ADCKind.INTEGRATE_FIRE: ((0, (1, 2)), "tab:olive"),
              ADCKind.TDC: ((0, (3, 1, 1, 1, 1, 1)), "tab:brown")}
# the time-to-digital converter's architectures (a circuit model, not a survey line), and the
# marker that tells them apart
TDC_MARKERS = {TDCArchitecture.COUNTER: "^", TDCArchitecture.SUCCESSIVE: "s"}


def model_energy_pj(kind: ADCKind, bits: int, node_nm: float,
                    tdc_architecture: TDCArchitecture = TDCArchitecture.COUNTER) -> float:
    """One conversion as the physical model prices it, pJ: a 256 x 256 array with one
    converter per column (the single-slope ramp generator shared by 256), 0.8 V, a 1-GHz
    clock (every converter below its corner rate); ``tdc_architecture`` for ``tdc``."""
    base = cimsim.load_chip("rram-22nm")
    chip = base.replace(
        array=base.array.replace(n_rows=256, n_cols=256, cols_per_adc=1),
        tech=base.tech.replace(node_nm=node_nm, vdd_v=0.8, clock_mhz=1000.0,
                               cost_model="physical"),
        adc=base.adc.replace(kind=kind, bits=bits, tdc_architecture=tdc_architecture,
                             range_policy=("calibrated" if kind is ADCKind.RAMP
                                           else "full_scale")))
    return ADCModel(chip).energy_pj(Action.CONVERT, bits)


def figure(d: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), sharey=True)
    colors = {"sar": "tab:blue", "flash": "tab:red", "time": "tab:green"}
    bits = np.arange(1, 11)
    for ax, node in zip(axes, (22.0, 65.0), strict=True):
        for fam, pick in FAMILY_ARCH.items():
            s = d[d.arch.map(pick)]
            ax.scatter(s.enob, s.energy_08v_pj, s=12, alpha=0.35, color=colors[fam],
                       label=f"survey {fam} (all nodes)")
        for kind in CONVERTER_KINDS:
            if kind is ADCKind.TDC:
                style, color = KIND_STYLE[kind]
                for arch, marker in TDC_MARKERS.items():
                    e = [model_energy_pj(kind, int(b), node, arch) for b in bits]
                    ax.plot(bits, e, linestyle=style, color=color, lw=2, marker=marker, ms=4,
                            label=f"model tdc {arch.value} (circuit model)")
                continue
            e = [model_energy_pj(kind, int(b), node) for b in bits]
            style, color = KIND_STYLE[kind]
            ax.plot(bits, e, linestyle=style, color=color, lw=2,
                    label=f"model {kind.value} ({family_of(kind).family} line)")
            if one_comparator(kind, 1):  # the 1-b point: one sense-amp decision
                ax.plot([1], e[:1], "o", mfc="white", mec=color, ms=7)
        ax.plot([], [], "o", mfc="white", mec="k", ms=7,
                label="1 b (sar, flash, single_slope): one sense amp")
        # the survey's speed envelope (Andrulis et al.): the SAR line paced at 1 GS/s
        fast = [fom_w_fj(ADCKind.SAR, node) * steps(ADCKind.SAR, int(b)) * 1e-3
                * rate_factor(int(b), 1e9) for b in bits]
        ax.plot(bits, fast, color=colors["sar"], lw=1, alpha=0.7, label="model sar at 1 GS/s")
        ax.set_yscale("log")
        ax.set_xlabel("bits (survey: ENOB)")
        ax.set_title(f"energy per conversion at {node:g} nm, 0.8 V")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("pJ per conversion")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=4, frameon=False)
    fig.suptitle("Converter models of cimsim.cost.adc_survey and the ADC survey "
                 "(Murmann, ADC Performance Survey 1997-2025)", fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--survey", type=Path, required=True, help="the survey sheet as CSV")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "adc-survey-fit.png")
    ap.add_argument("--speed", action="store_true",
                    help="also print the residuals against the lines by decade of sample rate")
    args = ap.parse_args(argv)
    d = load(args.survey)
    if args.speed:
        print(speed_table(d).to_string(index=False))
        corner, slope = hinge_fit(d)
        print(f"pooled hinge fit: corner {corner:.3g} Hz, slope {slope:.2f} per e-fold of rate")
    fitted = fit(d)
    worst = 0.0
    for fam, f in fitted.items():
        shipped = FAMILIES[fam]
        print(f"{fam:<6} n={f['n_points']:<3} FOM_45 {f['fom_45nm_fj']:.2f} fJ/step "
              f"(shipped {shipped.fom_45nm_fj}), slope {f['slope']:.2f} ({shipped.slope}), "
              f"scatter {f['scatter']:.2f} ({shipped.scatter}), area {f['area_step_f2']:.0f} "
              f"F^2/step ({shipped.area_step_f2:.0f})")
        worst = max(worst, abs(f["fom_45nm_fj"] / shipped.fom_45nm_fj - 1))
    figure(d, args.figure)
    print(f"wrote {args.figure}")
    return 0 if worst < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
