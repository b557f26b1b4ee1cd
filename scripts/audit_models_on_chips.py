"""Deploy every model of the test zoos on every chip; write CSVs and docs/model-chip-matrix.md.

The zoos (``tests/mapping/test_new_models.py``, ``test_zoo2.py`` ... ``test_zoo22.py``) hold
small models of every layer kind with example inputs (a dict: keyword inputs); the chips are
every preset (``cimsim/presets/*.toml``, ``published/*``) and every hypothetical macro of
``tests/data/chips/`` that loads (the others are the schema's error fixtures). For each
(model, chip) pair this deploys the model with noise on (seed 0), calibrated on the example
inputs, runs one forward and records:

* ``status``: ``ok``, ``refused`` (a ``CimsimError`` naming why the chip cannot host the model)
  or ``error`` (any other exception: a bug), with the exception's type, first line and the
  innermost ``cimsim`` frame;
* the warnings raised (the start of their first lines: ``WARNING_CHARS``), the number of
  non-finite outputs, the relative error ``|y - y_float| / |y_float|`` against the float
  model and the same on the chip with every noise source off (where the error exceeds
  ``--noise-off-above``: by default every pair);
* mapped layers and layers listed digital, 2-D parameters neither mapped nor listed, and the
  mapped layers whose ADCs used a single code (``SimModel.trace``);
* the report's energy per inference and whether its per-component and per-layer energies sum
  to that total.

Where deploy refuses, the audit does what the error says (:func:`deploy_as_advised`): a
``CapacityError`` -> again with ``array.allow_time_multiplexing``; a 1-b input refusing a
signed activation -> again with the layers it names excluded, until the rest maps. A pair is
``refused`` only when nothing is left to map.

Run ``python scripts/audit_models_on_chips.py`` (zoos 1-15's 11388 pairs took about 13 minutes on
one core) or with ``--models``/``--chips`` globs or ``--zoo`` names (``--zoo zoo12``) for a
subset, written apart (``--csv DIR --md FILE``: a run replaces the CSVs of its directory and the
page, so a subset into the page's own would drop the other zoos' rows); ``--help`` for the
options. The rows go to ``docs/model-chip-matrix/``, one CSV per zoo
(each file of the repository stays small as zoos are added), or to one file where ``--csv``
names a ``.csv``.
``tests/test_model_chip_matrix.py`` imports :func:`model_cases`, :func:`chip_configs`,
:func:`deploy_as_advised`, :func:`report_sums`, :func:`noise_free` and :func:`audit_pair`.
"""

from __future__ import annotations

import argparse
import ast
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
DEFAULT_CSV = ROOT / "docs" / "model-chip-matrix"
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
    ("tests.mapping.test_zoo8", "ZOO8"),
    ("tests.mapping.test_zoo9", "ZOO9"),
    ("tests.mapping.test_zoo10", "ZOO10"),
    ("tests.mapping.test_zoo11", "ZOO11"),
    ("tests.mapping.test_zoo12", "ZOO12"),
    ("tests.mapping.test_zoo13", "ZOO13"),
    ("tests.mapping.test_zoo14", "ZOO14"),
    ("tests.mapping.test_zoo15", "ZOO15"),
    ("tests.mapping.test_zoo16", "ZOO16"),
    ("tests.mapping.test_zoo17", "ZOO17"),
    ("tests.mapping.test_zoo18", "ZOO18"),
    ("tests.mapping.test_zoo19", "ZOO19"),
    ("tests.mapping.test_zoo20", "ZOO20"),
    ("tests.mapping.test_zoo21", "ZOO21"),
    ("tests.mapping.test_zoo22", "ZOO22"),
    ("tests.mapping.test_zoo23", "ZOO23"),
    ("tests.mapping.test_zoo24", "ZOO24"),
]

# models the zoos' tests build outside their registries, for one test each that needs what a
# deploy-and-forward audit does not do: listed by ``--list`` and on the page, not run
SKIPPED = {
    "zoo8: merged LoRA": "its test checks the refusal naming the idle adapters, then deploys "
                         "with them excluded (a registry 'lora' runs here)",
    "zoo9: llama generate": "a greedy generate loop with the KV cache, not one forward",
    "zoo9: image-list detector": "a list of images per batch (a detection DataLoader's)",
    "zoo10: PINN, HNN": "the forward takes gradients of its input: refused by deploy by design",
    "zoo10: MAML inner step, functional_call": "weights adapted inside the forward: refused",
    "zoo10: sparse COO weight, brevitas-style QuantLinear": "refused by design, named",
    "zoo11: tied autoencoder (decoder = encoder.T)": "refused unless the encoder is excluded",
    "zoo12: complex nn.Linear head": "its test checks the complex layer kept digital, named",
    "zoo12: conv weight read by F.linear via .view": "refused naming the conv, as zoo11's tied "
                                                      "decoder",
    "zoo13: layers called through a plain list / dict, a bound forward, a partial": "refused "
        "naming the layer (the float original, outside the module tree)",
    "zoo14: a mapped layer under torch.func.vmap": "refused naming the layer (the transform's "
        "per-sample tensors)",
    "zoo14: weights through torch.linalg.solve and the like": "named digital, as a product's "
        "weight (its test's models)",
    "zoo14: an ExportedProgram.module()": "mapped as its source (torch refuses .eval() on it: "
        "built outside the zoo's eval-mode builder)",
    "zoo16: FlexAttention with a learned score_mod bias": "its tests deploy and prepare it "
        "(torch's FlexAttention has no backward on CPU: no training step)",
    "zoo16: RepVGG fused in the forward, MLA with absorbed weights": "refused naming the layer "
        "whose .weight the forward reads; its tests deploy them with it excluded",
    "zoo16: layers and weights through a lambda or torch.compile'd method": "refused naming "
        "the layer (the user's float original), or the weight named digital",
    "zoo17: MADE's masks in an nn.Linear subclass": "refused naming the layers and "
        "prune.custom_from_mask, which maps (the registry's 'made')",
    "zoo17: no layer to map (quantize_dynamic, all excluded, F.linear only)": "refused by "
        "deploy and now by prepare, naming what stays digital",
}

# 2-D parameters added to activations, in no product (the zoos' own tests name them inline)
_TOKENS = {"gpt-tied-head": ("pos",), "vit": ("cls", "pos")}

COLUMNS = ["model", "zoo", "chip", "status", "exc_type", "exc_message", "exc_where",
           "refusal", "workaround", "time_multiplexed", "n_mapped", "n_digital", "unaccounted",
           "n_nonfinite", "rel_err", "one_code_layers", "trace_error",
           "rel_err_noise_off", "energy_pj_per_inference", "component_sum_ok", "layer_sum_ok",
           "warnings", "seconds"]


@dataclass(frozen=True)
class ModelCase:
    """One zoo model: ``build()`` -> (model in eval mode, example inputs, batch_dim)."""

    name: str
    zoo: str
    build: Callable[[], tuple[Any, tuple | dict, int]]
    exclude: tuple[str, ...] = ()
    not_matrices: tuple[str, ...] = ()
    # run on the model before each deploy (zoo8's pruned weights recomputed as right after
    # ``prune.*``, as its own tests deploy them)
    before_deploy: Callable[[Any], None] | None = None


def _zoo_case(module: Any, zoo: str, name: str, label: str = "") -> ModelCase:
    def build() -> tuple[Any, tuple | dict, int]:
        import torch

        torch.manual_seed(1234)  # the zoos' own conftest seed (zoo3+ seed inside _build)
        built = module._build(name)
        model, args = built[0], built[1]
        batch_dim = built[2] if len(built) > 2 else 0
        # a dict: keyword inputs (zoo9's tokenizer batches), passed as ``model(**batch)``
        return model, (args if isinstance(args, dict) else tuple(args)), batch_dim

    exclude = tuple(getattr(module, "_EXCLUDE", {}).get(name, ()))
    listed = getattr(module, "_NOT_MATRICES", ())  # zoos 8+: a dict by model name
    listed = listed.get(name, ()) if isinstance(listed, dict) else listed
    not_matrices = tuple(listed) + _TOKENS.get(name, ())
    return ModelCase(label or name, zoo, build, exclude, not_matrices,
                     getattr(module, "prune_again", None))


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
            ModelCase("vit-tiny-small", "models", vit,
                      not_matrices=("cls_token", "pos_embed"))]


def model_cases() -> dict[str, ModelCase]:
    """Every registry entry of the zoos, plus the bundled digits ResNet and a small ViT."""
    cases: dict[str, ModelCase] = {}
    for mod_name, registry in _ZOOS:
        module = importlib.import_module(mod_name)
        zoo = mod_name.rsplit(".", 1)[1].removeprefix("test_")
        for name in getattr(module, registry):
            # a name an earlier zoo took (zoo9's HF-style 'bert', zoo11's 'alibi'): "zoo/name"
            label = f"{zoo}/{name}" if name in cases else name
            cases[label] = _zoo_case(module, zoo, name, label)
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
    """One float64 tensor of a model's outputs: a dict, list, tuple, dataclass (a ModelOutput,
    its None fields left out) or distribution (its parameters), as the zoos' ``flat``."""
    import dataclasses

    import torch

    if isinstance(out, torch.distributions.Categorical):
        return _flat(out.logits)
    if isinstance(out, torch.distributions.Normal):
        return _flat((out.loc, out.scale))
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        out = [v for f in dataclasses.fields(out) if (v := getattr(out, f.name)) is not None]
    if isinstance(out, dict):
        out = [v for v in out.values() if v is not None]
    if isinstance(out, (list, tuple)):
        return torch.cat([_flat(t) for t in out if t is not None])
    return out.detach().flatten().to(torch.float64)


def _call(model: Any, args: tuple | dict) -> Any:
    """``model`` on its example inputs: keyword inputs from a dict (``model(**batch)``)."""
    return model(**args) if isinstance(args, dict) else model(*args)


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


def _deploy_run(case: ModelCase, chip: Any, model: Any, args: tuple | dict, batch_dim: int,
                seed: int, exclude: list[str] | None = None) -> tuple[Any, Any]:
    import torch

    import cimsim

    if case.before_deploy is not None:
        case.before_deploy(model)
    sim = cimsim.deploy(model, chip, args, seed=seed, batch_dim=batch_dim,
                        exclude=case.exclude if exclude is None else exclude)
    torch.manual_seed(seed)  # a sampling forward (the VAE) draws what the float one drew
    with torch.no_grad():
        got = _flat(_call(sim, args))
    return sim, got


WARNING_CHARS = 40
"""Characters kept of a warning's first line in the CSV (what it is about, not the whole
list of layers it names: 9200 rows of whole warnings made the file over 2 MB, and 11388 rows
of 60 characters did again)."""


def warning_text(category: type[Warning], message: str) -> str:
    """A warning as the CSV's ``warnings`` column keeps it: its first line cut to
    :data:`WARNING_CHARS`, its category named unless it is the usual ``UserWarning``."""
    first = message.strip().splitlines()[0][:WARNING_CHARS] if message.strip() else ""
    return first if category is UserWarning else f"{category.__name__}: {first}"


def deploy_as_advised(case: ModelCase, chip: Any, model: Any, args: tuple | dict, batch_dim: int,
                      seed: int = 0) -> tuple[Any, Any, Any, list[str], str]:
    """Deploy and run as a user following cimsim's errors would: a ``CapacityError`` -> again
    with ``array.allow_time_multiplexing``; a 1-b input refusing a signed activation -> again
    with the layers it names excluded, until the rest maps.

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
            # the refusal names every such layer at once: exclude=['a', 'b', ...]
            hint = re.search(r"cannot hold signed.*exclude=(\[[^\]]+\])", str(exc))
            new = [] if hint is None else [n for n in ast.literal_eval(hint.group(1))
                                           if n not in exclude]
            if not new:
                raise
            refusal = refusal or str(exc).splitlines()[0][:200]
            exclude.extend(new)


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
               noise_off_above: float = 0.0, pair_timeout_s: float = 0.0) -> dict[str, Any]:
    """Deploy ``case`` on ``chip`` and return one CSV row (see the module docstring)."""
    import torch

    import cimsim

    row: dict[str, Any] = {c: "" for c in COLUMNS}
    row.update(model=case.name, zoo=case.zoo, chip=chip_name)
    t0 = time.perf_counter()
    model, args, batch_dim = case.build()
    torch.manual_seed(seed)
    with torch.no_grad():
        want = _flat(_call(model, args))
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
            text = warning_text(w.category, str(w.message))
            if text not in messages:
                messages.append(text)
    except Exception as exc:  # noqa: BLE001 - every failure is a row of the matrix
        row["status"] = "refused" if isinstance(exc, cimsim.CimsimError) else (
            "timeout" if isinstance(exc, PairTimeout) else "error")
        row["exc_type"] = type(exc).__name__
        row["exc_message"] = (str(exc).strip().splitlines() or [""])[0][:200]
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
    # per layer (SimModel.trace): a layer whose every ADC setting used one code on the trace's
    # noise-free conversions outputs a constant (its bias): the step exceeds its partial sums
    try:
        with warnings.catch_warnings(), _deadline(pair_timeout_s):
            warnings.simplefilter("ignore")
            trace = sim.trace(args)
        one_code = 100.0 / 2 ** chip.adc.bits + 1e-9
        row["one_code_layers"] = int((trace["adc_code_use_pct"] <= one_code).sum())
    except Exception as exc:  # noqa: BLE001 - a trace that fails is a finding of its own
        row["trace_error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
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
    return (r["status"] != "ok" or bool(r["trace_error"]) or str(r["n_nonfinite"]) not in ("0", "")
            or str(r["unaccounted"]).strip() != ""
            or str(r["component_sum_ok"]) == "False" or str(r["layer_sum_ok"]) == "False")


def _chip_bits(chip: Any) -> str:
    """weight / input / ADC bits and the ADC's kind and range, for the per-chip table."""
    return (f"{chip.weight_bits}/{chip.input_bits}/{chip.adc.bits} "
            f"{chip.adc.kind.value}, {chip.adc.range_policy.value}")


def _not_measured(names: list[str], models: list[str],
                  chips: dict[str, Any] | None) -> list[str]:
    """A paragraph naming the chips and models the code has now that the CSV lacks, so that a
    table rewritten with ``--summarize-only`` after chips were added says what it leaves out."""
    new_chips = sorted(set(chips or {}) - set(names))
    new_models = sorted(set(model_cases()) - set(models)) if chips else []
    if not new_chips and not new_models:
        return []
    missing = "; ".join(f"{what} {', '.join(them)}" for what, them in
                        (("chips", new_chips), ("models", new_models)) if them)
    return ["", f"Not in this table, though the code has them (added after the CSV was "
                f"measured, or left out by `--chips` / `--models`): {missing}."]


def summary_markdown(rows: list[dict[str, Any]], command: str,
                     chips: dict[str, Any] | None = None, measured_at: str = "") -> str:
    import numpy as np

    names = sorted({r["chip"] for r in rows})
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
        *([f"Measured at commit {measured_at} (this script and cimsim as of that commit).", ""]
          if measured_at else []),
        f"({len(models)} models x {len(names)} chips = {len(rows)} pairs; {n_ok} ran; the full",
        "table is `docs/model-chip-matrix/`, one CSV per zoo and a row per pair). `rel_err` =",
        "|y - y_float| / |y_float| over all outputs; `noise off` = the same chip with",
        "variation, faults and conversion noise off. Where deploy refuses, the audit does what",
        "the error says, as a user would: a `CapacityError` ->",
        "`array.allow_time_multiplexing` (column `time-mux`);",
        "a 1-b input refusing a signed activation -> that layer excluded, until the rest maps",
        "(column `excluded`: pairs that needed it). `one-code layers`: mapped layers (of all",
        "the chip ran) whose ADCs used one code on the noise-free conversions of",
        "`SimModel.trace` (every conversion reads the same value: the layer outputs its bias).",
        "`sums ok`: the report's per-component and per-layer energies sum to its total.",
        *_not_measured(names, models, chips),
        "",
        "Not run (built by one zoo test each, outside the zoos' registries, for what one",
        "deploy and forward does not do):",
        "",
        *(f"* {what}: {why}." for what, why in SKIPPED.items()),
        "",
        "## Per chip",
        "",
        "| chip | bits w/x/ADC | ran | refused | error | time-mux | excluded | median rel_err "
        "| 90th pct | max | median noise off | one-code layers | sums ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for chip in names:
        rs = [r for r in rows if r["chip"] == chip]
        ok = [r for r in rs if r["status"] == "ok"]
        errs = np.array([x for x in (_num(r["rel_err"]) for r in ok) if x is not None])
        off = [x for x in (_num(r["rel_err_noise_off"]) for r in ok) if x is not None]
        sums = sum(str(r["component_sum_ok"]) == "True" and str(r["layer_sum_ok"]) == "True"
                   for r in ok)
        bits = _chip_bits(chips[chip]) if chips and chip in chips else "-"
        one_code = sum(int(r["one_code_layers"] or 0) for r in ok)
        n_layers = sum(int(r["n_mapped"] or 0) for r in ok)
        out.append(
            f"| {chip} | {bits} | {len(ok)} | {sum(r['status'] == 'refused' for r in rs)} | "
            f"{sum(r['status'] in ('error', 'timeout') for r in rs)} | "
            f"{sum(str(r['time_multiplexed']) == 'True' for r in ok)} | "
            f"{sum(bool(r['workaround']) for r in ok)} | "
            + (" | ".join(_f(q) for q in np.percentile(errs, [50, 90, 100])) if len(errs)
               else "- | - | -")
            + f" | {_f(np.median(off)) if off else '-'} | {one_code}/{n_layers} | "
            f"{sums}/{len(ok)} |")
    bad = [r for r in rows if _is_bad(r)]
    out += ["", "## Failures and refusals", ""]
    if not bad:
        out.append("None: every pair ran, finite, every matrix mapped or listed, reports sum.")
    else:
        # one row per (model, status, cause): a refusal repeats on every chip of one kind
        groups: dict[tuple[str, str, str], list[str]] = {}
        for r in sorted(bad, key=lambda r: (r["status"], r["exc_type"], r["model"], r["chip"])):
            if r["status"] != "ok":
                msg = r["exc_message"]
                cause = (f"{r['exc_type']}: {msg[:160]}{'...' if len(msg) > 160 else ''} "
                         f"({r['exc_where']})")
            else:
                cause = "; ".join(x for x in (
                    f"{r['n_nonfinite']} non-finite outputs"
                    if str(r["n_nonfinite"]) not in ("0", "") else "",
                    f"unaccounted matrices: {r['unaccounted']}" if r["unaccounted"] else "",
                    "component energies do not sum" if str(r["component_sum_ok"]) == "False"
                    else "",
                    "layer energies do not sum" if str(r["layer_sum_ok"]) == "False" else "",
                    f"trace: {r['trace_error']}" if r["trace_error"] else "")
                    if x)
            groups.setdefault((r["model"], r["status"], cause), []).append(r["chip"])
        out += ["| model | chips | status | cause |", "|---|---|---|---|"]
        for (model, status, cause), where in groups.items():
            out.append(f"| {model} | {', '.join(where)} | {status} | "
                       f"{cause.replace('|', '/')} |")
    out += ["", "## Each chip's worst model", "",
            "| chip | model | rel_err | noise off |", "|---|---|---|---|"]
    for chip in names:
        ok = [r for r in rows if r["chip"] == chip and _num(r["rel_err"]) is not None]
        if ok:
            r = max(ok, key=lambda r: float(r["rel_err"]))
            out.append(f"| {chip} | {r['model']} | {_f(r['rel_err'])} | "
                       f"{_f(r['rel_err_noise_off']) if r['rel_err_noise_off'] != '' else '-'} |")
    return "\n".join(out) + "\n" + FINDINGS


FINDINGS = """
## What the matrix found

Fixed (each with a test in `tests/test_model_chip_matrix.py` that failed before):

* A 1-b input chip (`input_bits = 1`: bscha-arxiv26, colonnade-jssc21, deaville-vlsi22,
  jia-jssc20, wan-nature22, yu-cicc20, yu-tcasi24) refuses a layer whose inputs are signed (a
  1-b symmetric code is {0}). The refusal named no layer; it now names the layer, its input
  range and what works: `input_bits >= 2`, a non-negative input, or `exclude=[NAME]`.
* That `NAME` was the matrix (`dw[g0]` of a grouped conv, `lstm.weight_ih_l0` of an LSTM),
  which `exclude` does not take: following the advice refused the same matrix again. It is
  now the module (`dw`, `lstm`).
* Excluding a head tied to the embedding listed and warned the embedding's table as a weight
  used "outside a mappable module" (it is in one, the excluded head, already listed).

Zoos 8-11 (70 models: LoRA, pruning, MoE, RWKV, RetNet, FNO, HF-style BERT / Llama / Whisper
called with keyword batches, DETR, timm, RL policies returning distributions, set transformers,
Hopfield, VQ-VAE, packed LSTMs, ...) and the chips c3sram-jssc20, khwa-isscc18,
xnorsram-jssc20, li-esscirc22, su-jssc22 and legallo-natelec23 found no bug: no error or
timeout, every output finite, every matrix mapped or listed, every report sums, every trace
runs. The refusals are all on the eleven 1-b input chips, for models with no layer fed a
non-negative input (below). legallo-natelec23 (Le Gallo et al., Nature Electronics 6, 2023)
is 64 cores of HERMES (Khaddam-Aljameh et al., IEEE JSSC 57(4), 2022; hermes-jssc22), taken
as its preset says: its `rel_err` equals hermes-jssc22's on every model, and with 64 cores it
time-multiplexes 1 model where hermes-jssc22 time-multiplexes 137.

Not bugs (measured above, explained by the chip):

* Every chip made lossless (noise, variation, faults, non-linearity, off-current and ADC loss
  off, its own encoding, slicing, input drive and tiling kept) is bit-equal to the integer
  model (`test_every_chip_made_lossless_equals_the_integer_model`): the losses in the table
  are the chips' converters, bits and noise, not a wrong encoding.
* bscha-arxiv26 converts with a 1-b SAR on the full-scale range: two codes cannot straddle 0
  (`cimsim.adc.linear.grid`), so every conversion returns the range's end, +-(rows), and the
  outputs are orders of magnitude off. That is its preset's 1-b operating point (a binarizing
  sense amplifier), meaningful for binary networks only.
* Chips whose noise-off error equals their noisy one are limited by their bits: a full-scale
  ADC range over many rows leaves a step of several cell currents (sram-65nm: 768 rows at
  8 b; charge-flash-shared: 64 rows at 4 b), or binary weights (huge-1024, lee-vlsi21:
  sign(w) times mean|w|). Models that amplify errors (a Mamba scan, capsule routing, a DCN
  cross product, a neural ODE) lose the most. The noisy presets (rram, pcm, mram, fefet,
  jia-jssc20) lose mainly to conversion noise: compare their two medians.
* sinangil-jssc21 (4-b inputs in one shot, 3-b cells, a 4-b flash on the full-scale range)
  and pcm-2dev-pwm (6-b pulse widths, 3-b cells, a 6-b CCO on the full-scale range) convert
  the small partial sums of these tiny models to one code, 0, in nearly every layer (column
  `one-code layers`): the outputs are the biases, and the two chips give the same `rel_err`
  on every model (the CSV). wan-nature22, yu-cicc20, yu-tcasi24, published/jia-jssc20,
  c3sram-jssc20, khwa-isscc18, xnorsram-jssc20, huge-1024 and lee-vlsi21 do the same in
  most layers (khwa-isscc18 and yu-cicc20, both 1-b weights, inputs and ADC, give the same
  `rel_err` on every model). A calibrated range
  (`adc.range_policy = "calibrated"`) or a narrower full scale (`adc.full_scale_factor`) is
  what such a chip needs for layers this small; deploy warns about it, naming the matrices
  (`MatmulCore.one_code`, checked on 32 calibration rows spread over the sample, under a
  range policy that is not calibrated; `SimModel.trace` shows the code use:
  `adc_code_use_pct`). A layer fed only zeros (TabNet's first attentive step) counts as
  one-code on every chip.
* A 1-b input chip leaves digital every layer fed a signed activation (LayerNorm, GELU, a
  residual sum, an LSTM's state): models with no layer fed a non-negative input (a ReLU's
  output, image pixels) are refused with "no layer can be mapped".
* The VAE samples in its forward: calibrated on its 3 example inputs its decoder clips later
  draws (`tests/mapping/test_zoo7.py`), about a third off float even on `ideal`.
"""


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """Floats to 4 significant digits for the CSV (the table stays readable and small)."""
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}


def _command(argv: list[str] | None) -> str:
    """The command line that regenerates the table (without the options of summarizing)."""
    given, skip = [], False
    for a in (argv if argv is not None else sys.argv[1:]):
        if skip or a == "--summarize-only" or a.startswith("--measured-at"):
            skip = a == "--measured-at"  # its value follows
            continue
        given.append(a)
    return " ".join(["python scripts/audit_models_on_chips.py", *given])


MEASURED_AT = re.compile(r"^Measured at commit (.+) \(this script", re.MULTILINE)


def _head_commit() -> str:
    """The worktree's commit (short hash), with a note where tracked files differ from it."""
    import subprocess

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{head}{' + uncommitted edits' if dirty else ''}" if head else ""


def _select(names: list[str], patterns: list[str] | None) -> list[str]:
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def _set_threads(n: int) -> None:
    """Run the kernels and torch on ``n`` threads. Numba is imported by now (the zoos import
    cimsim's kernels), so its pool size is fixed: ``numba.set_num_threads`` lowers the threads
    used, where setting ``NUMBA_NUM_THREADS`` now made a later compile (a cold cache) fail
    with "Cannot set NUMBA_NUM_THREADS to a different value once the threads have been
    launched" (60 pairs of a zoo audit on a fresh checkout)."""
    import numba
    import torch

    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    torch.set_num_threads(n)


def _zoo_order() -> list[str]:
    """The zoos in the order the cases list them (a run's row order)."""
    return list(dict.fromkeys(case.zoo for case in model_cases().values()))


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a run: one CSV, or a directory of them (one per zoo), read in the order a
    run writes them (the zoos' order, then any other file by name)."""
    if path.suffix == ".csv":
        files = [path]
    else:
        order = {zoo: i for i, zoo in enumerate(_zoo_order())}
        files = sorted(path.glob("*.csv"), key=lambda f: (order.get(f.stem, len(order)), f.stem))
    rows: list[dict[str, str]] = []
    for f in files:
        with open(f, newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


class _RowWriter:
    """Rows to one CSV, or to ``<zoo>.csv`` files in a directory (a run replaces every CSV of
    the directory: its table is the run's, as one file's was). Rows end in "\n", not the csv
    module's "\r\n": a byte a row."""

    def __init__(self, path: Path) -> None:
        self.path, self.files, self.writers = path, {}, {}
        if path.suffix == ".csv":
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            path.mkdir(parents=True, exist_ok=True)
            for old in path.glob("*.csv"):
                old.unlink()

    def write(self, row: dict[str, Any]) -> None:
        key = "" if self.path.suffix == ".csv" else str(row["zoo"])
        if key not in self.writers:
            self.files[key] = open(self.path if not key else self.path / f"{key}.csv", "w",
                                   newline="", encoding="utf-8")
            self.writers[key] = csv.DictWriter(self.files[key], fieldnames=COLUMNS,
                                               lineterminator="\n")
            self.writers[key].writeheader()
        self.writers[key].writerow(row)
        self.files[key].flush()  # a long run's table can be read while it goes

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="model name globs (default: every model)")
    parser.add_argument("--zoo", nargs="*",
                        help="only the models of these zoos ('zoo12', 'new_models', 'models': "
                             "the bundled ones), with --models also matching")
    parser.add_argument("--chips", nargs="*",
                        help="chip name globs (default: every chip; 'published/*', "
                             "'hypothetical/*')")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV,
                        help="a directory: one CSV per zoo (default docs/model-chip-matrix/); "
                             "a path ending .csv: one file")
    parser.add_argument("--md", type=Path, default=DEFAULT_MD, help="markdown summary written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-off-above", type=float, default=0.0,
                        help="rerun at noise off where rel_err exceeds this (default: every "
                             "pair; -1: never)")
    parser.add_argument("--pair-timeout", type=float, default=300.0,
                        help="seconds one pair may run (0: no limit)")
    parser.add_argument("--threads", type=int, default=1, help="torch / Numba threads")
    parser.add_argument("--list", action="store_true", help="list the models and chips, exit")
    parser.add_argument("--summarize-only", action="store_true",
                        help="rewrite the markdown from the CSV of an earlier run, run nothing")
    parser.add_argument("--measured-at", default=None,
                        help="with --summarize-only: the commit the CSV was measured at "
                             "(default: the one the page names)")
    args = parser.parse_args(argv)
    subset = bool(args.zoo or args.models or args.chips)
    if (subset and not (args.list or args.summarize_only)
            and (args.csv == DEFAULT_CSV or args.md == DEFAULT_MD)):
        # a run replaces every CSV of its directory and the page (the page is one run's
        # table): a subset written there would drop every other zoo's measured rows
        parser.error("--zoo, --models and --chips run a subset; its rows would replace the "
                     f"whole table of {DEFAULT_CSV.relative_to(ROOT)}/ and "
                     f"{DEFAULT_MD.relative_to(ROOT)}: give both --csv DIR (or FILE.csv) and "
                     "--md FILE to write the subset apart")

    from tqdm import tqdm

    cases = model_cases()
    chips = chip_configs()
    model_names = [n for n in _select(list(cases), args.models)
                   if not args.zoo or cases[n].zoo in args.zoo]
    chip_names = _select(list(chips), args.chips)
    if args.list:
        print("models:", " ".join(model_names))
        print("chips:", " ".join(chip_names))
        for what, why in SKIPPED.items():
            print(f"skipped: {what}: {why}")
        return 0
    if args.summarize_only:
        measured = args.measured_at
        if measured is None and args.md.exists():
            found = MEASURED_AT.search(args.md.read_text())
            measured = found.group(1) if found else ""
    else:
        # the threads only for a run (--list and --summarize-only leave the calling process's,
        # a test's, as they were: Numba refuses another count once its threads are launched)
        _set_threads(args.threads)
        measured = _head_commit()
        out = _RowWriter(args.csv)
        try:
            pairs = [(m, c) for m in model_names for c in chip_names]
            for m, c in tqdm(pairs, desc="model x chip", unit="pair"):
                out.write(_rounded(audit_pair(cases[m], c, chips[c], seed=args.seed,
                                              noise_off_above=args.noise_off_above,
                                              pair_timeout_s=args.pair_timeout)))
        finally:
            out.close()
    # the page from the CSVs as written (rounded): a run and --summarize-only write the same page
    rows = read_rows(args.csv)
    from cimsim._atomic import write_text  # (cimsim imported late: the path is set above)

    write_text(args.md, summary_markdown(rows, _command(argv), chips, measured or ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
