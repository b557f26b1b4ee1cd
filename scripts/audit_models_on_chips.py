"""Deploy every model of the test zoos on every chip; write a CSV and docs/model-chip-matrix.md.

The zoos (``tests/mapping/test_new_models.py``, ``test_zoo2.py`` ... ``test_zoo7.py``) hold
small models of every layer kind with example inputs; the chips are every preset
(``cimsim/presets/*.toml``, ``published/*``) and every hypothetical macro of
``tests/data/chips/`` that loads (the others are the schema's error fixtures). For each
(model, chip) pair this deploys the model with noise on (seed 0), calibrated on the example
inputs, runs one forward and records:

* ``status``: ``ok``, ``refused`` (a ``CimsimError`` naming why the chip cannot host the model)
  or ``error`` (any other exception: a bug), with the exception's type, first line and the
  innermost ``cimsim`` frame;
* the warnings raised (their first lines), the number of non-finite outputs, the relative error
  ``|y - y_float| / |y_float|`` against the float model, and, where that error exceeds
  ``--noise-off-above``, the same on the chip with every noise source off;
* mapped layers and layers listed digital, 2-D parameters neither mapped nor listed;
* the report's energy per inference and whether its per-component and per-layer energies sum
  to that total.

A chip with too few arrays for a model (``CapacityError``) is retried with
``array.allow_time_multiplexing`` on (column ``time_multiplexed``); a pair is ``refused`` only
when the chip cannot host it at all.

Run ``python scripts/audit_models_on_chips.py`` (all pairs; hours on 2 cores) or with
``--models``/``--chips`` globs for a subset; ``--help`` for the options.
``tests/test_model_chip_matrix.py`` imports :func:`model_cases`, :func:`chip_configs` and
:func:`audit_pair`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fnmatch
import importlib
import math
import os
import re
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the zoos live in tests/, imported as a package
    sys.path.insert(0, str(ROOT))

CHIP_DIR = ROOT / "tests" / "data" / "chips"
DEFAULT_CSV = ROOT / "docs" / "model-chip-matrix.csv"
DEFAULT_MD = ROOT / "docs" / "model-chip-matrix.md"

# (module, registry, what its tuples hold); the models of tests/test_models*.py are added below
_ZOOS = [
    ("tests.mapping.test_new_models", "ZOO"),
    ("tests.mapping.test_zoo2", "ZOO2"),
    ("tests.mapping.test_zoo3", "ZOO3"),
    ("tests.mapping.test_zoo4", "ZOO4"),
    ("tests.mapping.test_zoo5", "ZOO5"),
    ("tests.mapping.test_zoo6", "ZOO6"),
    ("tests.mapping.test_zoo7", "ZOO7"),
]

# 2-D parameters added to activations, in no product (the zoos' own tests name them inline)
_TOKENS = {"gpt-tied-head": ("pos",), "vit": ("cls", "pos")}

COLUMNS = ["model", "zoo", "chip", "status", "exc_type", "exc_message", "exc_where",
           "refusal", "workaround", "time_multiplexed", "n_mapped", "n_digital", "unaccounted",
           "n_nonfinite", "rel_err",
           "rel_err_noise_off", "energy_pj_per_inference", "component_sum_ok", "layer_sum_ok",
           "warnings", "seconds"]


@dataclass(frozen=True)
class ModelCase:
    """One zoo model: ``build()`` -> (model in eval mode, example inputs, batch_dim)."""

    name: str
    zoo: str
    build: Callable[[], tuple[Any, tuple, int]]
    exclude: tuple[str, ...] = ()
    not_matrices: tuple[str, ...] = ()


def _zoo_case(module: Any, zoo: str, name: str) -> ModelCase:
    def build() -> tuple[Any, tuple, int]:
        import torch

        torch.manual_seed(1234)  # the zoos' own conftest seed (zoo3+ seed inside _build)
        built = module._build(name)
        model, args = built[0], built[1]
        batch_dim = built[2] if len(built) > 2 else 0
        return model, tuple(args), batch_dim

    exclude = tuple(getattr(module, "_EXCLUDE", {}).get(name, ()))
    not_matrices = tuple(getattr(module, "_NOT_MATRICES", ())) + _TOKENS.get(name, ())
    return ModelCase(name, zoo, build, exclude, not_matrices)


def _builtin_cases() -> list[ModelCase]:
    import torch

    def resnet() -> tuple[Any, tuple, int]:
        from cimsim.data import load_digits_split
        from cimsim.models import load_resnet_digits

        x = load_digits_split()[2][:3]  # the test images: (N, 1, 8, 8)
        return load_resnet_digits().eval(), (torch.as_tensor(x),), 0

    def vit() -> tuple[Any, tuple, int]:
        from cimsim.models.imagenet import vit_tiny

        torch.manual_seed(1234)
        return vit_tiny(num_classes=10, image=32, depth=1, dim=48).eval(), (
            torch.rand(2, 3, 32, 32),), 0

    return [ModelCase("resnet-digits", "models", resnet),
            ModelCase("vit-tiny-small", "models", vit)]


def model_cases() -> dict[str, ModelCase]:
    """Every registry entry of the zoos, plus the bundled digits ResNet and a small ViT."""
    cases: dict[str, ModelCase] = {}
    for mod_name, registry in _ZOOS:
        module = importlib.import_module(mod_name)
        zoo = mod_name.rsplit(".", 1)[1].removeprefix("test_")
        for name in getattr(module, registry):
            cases[name] = _zoo_case(module, zoo, name)
    for case in _builtin_cases():
        cases[case.name] = case
    return cases


def chip_configs() -> dict[str, Any]:
    """Every preset, published macro and loadable hypothetical chip of tests/data/chips."""
    import cimsim

    chips = {n: cimsim.load_chip(n) for n in cimsim.list_presets()}
    chips.update({n: cimsim.load_chip(n) for n in cimsim.list_presets(published=True)})
    for path in sorted(CHIP_DIR.glob("*.toml")):
        try:
            chips[f"hypothetical/{path.stem}"] = cimsim.load_chip(path)
        except cimsim.ConfigError:
            continue  # typo-field, wrong-unit*, inherits-preset: schema error fixtures
    return chips


def noise_free(chip: Any) -> Any:
    """``chip`` with every random non-ideality off (variation, faults, conversion noise, ADC
    comparator noise, drift spread): what its bits and ADC alone lose."""
    return chip.replace(
        device=chip.device.replace(variation_sigma=0.0, p_stuck_on=0.0, p_stuck_off=0.0,
                                   read_noise_q_s=(), retention_sigma_lsb=0.0,
                                   drift_nu_sigma=tuple(0.0 for _ in chip.device.drift_nu_sigma)),
        noise=chip.noise.replace(thermal_sigma_lsb=0.0, read_noise_rel=0.0),
        adc=chip.adc.replace(comparator_noise_lsb=0.0))


def _flat(out: Any) -> Any:
    import torch

    if isinstance(out, dict):
        return torch.cat([_flat(v) for v in out.values()])
    if isinstance(out, (list, tuple)):
        return torch.cat([_flat(t) for t in out])
    return out.detach().flatten().to(torch.float64)


def _where(exc: BaseException) -> str:
    """The innermost frame of the traceback inside cimsim (else the innermost)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}cimsim{os.sep}" in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return ""
    path = Path(f.filename)
    return f"{path.relative_to(ROOT) if ROOT in path.parents else path}:{f.lineno}"


class PairTimeout(Exception):
    """One pair ran past ``--pair-timeout``."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _raise(signum, frame):
        raise PairTimeout(f"ran past {seconds:g} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _deploy_run(case: ModelCase, chip: Any, model: Any, args: tuple, batch_dim: int,
                seed: int, exclude: list[str] | None = None) -> tuple[Any, Any]:
    import torch

    import cimsim

    sim = cimsim.deploy(model, chip, args, seed=seed, batch_dim=batch_dim,
                        exclude=case.exclude if exclude is None else exclude)
    torch.manual_seed(seed)  # a sampling forward (the VAE) draws what the float one drew
    with torch.no_grad():
        got = _flat(sim(*args))
    return sim, got


def deploy_as_advised(case: ModelCase, chip: Any, model: Any, args: tuple, batch_dim: int,
                      seed: int = 0) -> tuple[Any, Any, Any, list[str], str]:
    """Deploy and run as a user following cimsim's errors would: a ``CapacityError`` -> again
    with ``array.allow_time_multiplexing``; a 1-b input refusing a signed activation -> again
    with the layer it names excluded, until the rest maps.

    Returns (sim, flat outputs, the chip used, the exclude list used, the first refusal)."""
    import cimsim

    exclude, refusal = list(case.exclude), ""
    while True:
        try:
            sim, got = _deploy_run(case, chip, model, args, batch_dim, seed, exclude)
            return sim, got, chip, exclude, refusal
        except cimsim.CapacityError:
            if chip.array.allow_time_multiplexing:
                raise
            chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True))
        except cimsim.ConfigError as exc:
            hint = re.search(r"cannot hold signed.*exclude=\['([^']+)'\]", str(exc))
            if hint is None or hint.group(1) in exclude:
                raise
            refusal = refusal or str(exc).splitlines()[0][:300]
            exclude.append(hint.group(1))


def _rel(got: Any, want: Any) -> float:
    if got.shape != want.shape:
        return math.nan
    denom = float(want.norm())
    return float((got - want).norm()) / denom if denom else float((got - want).norm())


def unaccounted(model: Any, sim: Any, not_matrices: tuple[str, ...] = ()) -> list[str]:
    """2-D (and larger) parameters neither under a mapped layer nor under a listed digital
    name (``tests/mapping/conftest.py::check_every_matrix`` with the listed names)."""
    mapped = tuple(n + "." for n in sim.sim_layers)
    digital = [d[0] for d in sim.digital]
    return [p for p, t in model.named_parameters() if t.dim() >= 2 and p not in not_matrices
            and not p.startswith(mapped)
            and not any(p == d or p.startswith(d + ".") for d in digital)]


def report_sums(report: Any) -> tuple[float, bool, bool]:
    """(energy per inference, components sum to it, layers (+ reprogramming) sum to it)."""
    total = float(report.totals["energy_pj_per_inference"])
    comps = float(report.components["energy_pj_per_inference"].sum()) if len(
        report.components) else 0.0
    layer_sum = float(report.layers["energy_pj_per_inference"].sum()) if len(
        report.layers) else 0.0
    if len(report.components):  # events tied to no layer (time-multiplexing)
        extra = report.components[~report.components["layer"].isin(report.layers["layer"])]
        layer_sum += float(extra["energy_pj_per_inference"].sum())
    tol = 1e-9 * max(abs(total), 1.0)
    return total, abs(comps - total) <= tol, abs(layer_sum - total) <= tol


def audit_pair(case: ModelCase, chip_name: str, chip: Any, *, seed: int = 0,
               noise_off_above: float = 0.3, pair_timeout_s: float = 0.0) -> dict[str, Any]:
    """Deploy ``case`` on ``chip`` and return one CSV row (see the module docstring)."""
    import torch

    import cimsim

    row: dict[str, Any] = {c: "" for c in COLUMNS}
    row.update(model=case.name, zoo=case.zoo, chip=chip_name)
    t0 = time.perf_counter()
    model, args, batch_dim = case.build()
    torch.manual_seed(seed)
    with torch.no_grad():
        want = _flat(model(*args))
    messages: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught, _deadline(pair_timeout_s):
            warnings.simplefilter("always")
            sim, got, chip, exclude, refusal = deploy_as_advised(case, chip, model, args,
                                                                 batch_dim, seed)
            row["refusal"] = refusal
            if len(exclude) > len(case.exclude):
                row["workaround"] = "exclude=" + ",".join(exclude[len(case.exclude):])
            report = sim.report()
            row["time_multiplexed"] = bool(report.totals["time_multiplexed"])
        for w in caught:
            first = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
            text = f"{w.category.__name__}: {first[:160]}"
            if text not in messages:
                messages.append(text)
    except Exception as exc:  # noqa: BLE001 - every failure is a row of the matrix
        row["status"] = "refused" if isinstance(exc, cimsim.CimsimError) else (
            "timeout" if isinstance(exc, PairTimeout) else "error")
        row["exc_type"] = type(exc).__name__
        row["exc_message"] = (str(exc).strip().splitlines() or [""])[0][:300]
        row["exc_where"] = _where(exc)
        row["seconds"] = round(time.perf_counter() - t0, 2)
        return row
    row["status"] = "ok"
    row["n_mapped"] = len(sim.sim_layers)
    row["n_digital"] = len(sim.digital)
    row["unaccounted"] = " ".join(unaccounted(model, sim, case.not_matrices))
    row["n_nonfinite"] = int((~torch.isfinite(got)).sum())
    row["rel_err"] = _rel(got, want)
    energy, comp_ok, layer_ok = report_sums(report)
    row.update(energy_pj_per_inference=energy, component_sum_ok=comp_ok, layer_sum_ok=layer_ok)
    row["warnings"] = " | ".join(messages)
    err = row["rel_err"]
    if noise_off_above >= 0 and not (isinstance(err, float) and err <= noise_off_above):
        try:
            with warnings.catch_warnings(), _deadline(pair_timeout_s):
                warnings.simplefilter("ignore")
                _, got0 = _deploy_run(case, noise_free(chip), model, args, batch_dim, seed,
                                      exclude)
            row["rel_err_noise_off"] = _rel(got0, want)
        except Exception as exc:  # noqa: BLE001 - recorded, the noisy run is the row's verdict
            row["rel_err_noise_off"] = f"{type(exc).__name__}"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


# ---------------------------------------------------------------------------------------------
# The markdown summary
# ---------------------------------------------------------------------------------------------
def _f(v: Any, digits: int = 3) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "nan" if math.isnan(x) else f"{x:.{digits}g}"


def _num(v: Any) -> float | None:
    """A finite number from a CSV cell, else None (empty, nan, an exception's name)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _is_bad(r: dict[str, Any]) -> bool:
    return (r["status"] != "ok" or str(r["n_nonfinite"]) not in ("0", "")
            or str(r["unaccounted"]).strip() != ""
            or str(r["component_sum_ok"]) == "False" or str(r["layer_sum_ok"]) == "False")


def summary_markdown(rows: list[dict[str, Any]], command: str) -> str:
    import numpy as np

    chips = sorted({r["chip"] for r in rows})
    models = sorted({r["model"] for r in rows})
    n_ok = sum(r["status"] == "ok" for r in rows)
    out = [
        "# Every model on every chip",
        "",
        "Each model of the test zoos deployed on each chip with `cimsim.deploy` (noise on, seed",
        "0, calibrated on the zoo's example inputs, 2 to 4 samples), one forward, compared with",
        "the float model. Regenerate with",
        "",
        f"    {command}",
        "",
        f"({len(models)} models x {len(chips)} chips = {len(rows)} pairs; {n_ok} ran; the full",
        "table is `docs/model-chip-matrix.csv`). `rel_err` = |y - y_float| / |y_float| over",
        "all outputs; `noise off` = the same chip with variation, faults and conversion noise",
        "off (measured where `rel_err` > 0.3). A chip with too few arrays runs time-multiplexed",
        "(counted below); the energy check: the report's per-component and per-layer energies",
        "sum to its total.",
        "",
        "## Per chip",
        "",
        "| chip | ran | refused | error | time-mux | median rel_err | 90th pct | max | "
        "median noise off | sums ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for chip in chips:
        rs = [r for r in rows if r["chip"] == chip]
        ok = [r for r in rs if r["status"] == "ok"]
        errs = np.array([float(r["rel_err"]) for r in ok if _f(r["rel_err"]) != "nan"])
        off = [x for x in (_num(r["rel_err_noise_off"]) for r in ok) if x is not None]
        sums = sum(str(r["component_sum_ok"]) == "True" and str(r["layer_sum_ok"]) == "True"
                   for r in ok)
        out.append(
            f"| {chip} | {len(ok)} | {sum(r['status'] == 'refused' for r in rs)} | "
            f"{sum(r['status'] in ('error', 'timeout') for r in rs)} | "
            f"{sum(str(r['time_multiplexed']) == 'True' for r in ok)} | "
            + (" | ".join(_f(q) for q in np.percentile(errs, [50, 90, 100])) if len(errs)
               else "- | - | -")
            + f" | {_f(np.median(off)) if off else '-'} | {sums}/{len(ok)} |")
    bad = [r for r in rows if _is_bad(r)]
    out += ["", "## Failures and refusals", ""]
    if not bad:
        out.append("None: every pair ran, finite, every matrix mapped or listed, reports sum.")
    else:
        out += ["| model | chip | status | cause |", "|---|---|---|---|"]
        for r in sorted(bad, key=lambda r: (r["status"], r["exc_type"], r["model"], r["chip"])):
            if r["status"] != "ok":
                cause = f"{r['exc_type']}: {r['exc_message']} ({r['exc_where']})"
            else:
                cause = "; ".join(x for x in (
                    f"{r['n_nonfinite']} non-finite outputs"
                    if str(r["n_nonfinite"]) not in ("0", "") else "",
                    f"unaccounted matrices: {r['unaccounted']}" if r["unaccounted"] else "",
                    "component energies do not sum" if str(r["component_sum_ok"]) == "False"
                    else "",
                    "layer energies do not sum" if str(r["layer_sum_ok"]) == "False" else "")
                    if x)
            out.append(f"| {r['model']} | {r['chip']} | {r['status']} | "
                       f"{cause.replace('|', '/')} |")
    out += ["", "## Largest errors", "",
            "The 15 ok pairs of largest `rel_err` with the same chip at noise off:", "",
            "| model | chip | rel_err | noise off |", "|---|---|---|---|"]
    ok = sorted((r for r in rows if r["status"] == "ok" and _f(r["rel_err"]) != "nan"),
                key=lambda r: -float(r["rel_err"]))
    for r in ok[:15]:
        out.append(f"| {r['model']} | {r['chip']} | {_f(r['rel_err'])} | "
                   f"{_f(r['rel_err_noise_off']) if r['rel_err_noise_off'] != '' else '-'} |")
    return "\n".join(out) + "\n"


def _select(names: list[str], patterns: list[str] | None) -> list[str]:
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="model name globs (default: every model)")
    parser.add_argument("--chips", nargs="*",
                        help="chip name globs (default: every chip; 'published/*', "
                             "'hypothetical/*')")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="CSV written")
    parser.add_argument("--md", type=Path, default=DEFAULT_MD, help="markdown summary written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-off-above", type=float, default=0.3,
                        help="rerun at noise off where rel_err exceeds this (-1: never)")
    parser.add_argument("--pair-timeout", type=float, default=300.0,
                        help="seconds one pair may run (0: no limit)")
    parser.add_argument("--threads", type=int, default=1, help="torch / Numba threads")
    parser.add_argument("--list", action="store_true", help="list the models and chips, exit")
    args = parser.parse_args(argv)

    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    cases = model_cases()
    chips = chip_configs()
    model_names = _select(list(cases), args.models)
    chip_names = _select(list(chips), args.chips)
    if args.list:
        print("models:", " ".join(model_names))
        print("chips:", " ".join(chip_names))
        return 0
    rows = []
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        pairs = [(m, c) for m in model_names for c in chip_names]
        for m, c in tqdm(pairs, desc="model x chip", unit="pair"):
            row = audit_pair(cases[m], c, chips[c], seed=args.seed,
                             noise_off_above=args.noise_off_above,
                             pair_timeout_s=args.pair_timeout)
            rows.append(row)
            writer.writerow(row)
            fh.flush()  # a long run's table can be read while it goes
    command = "python scripts/audit_models_on_chips.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    args.md.write_text(summary_markdown(rows, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
