"""A zoo's three registry tests, written once (the twelfth and thirteenth zoos use them): from
its registry ``{name: (make, data)}`` (``conftest.build_seeded``'s arguments: one model, its
positional example inputs, the first tensor's batch dimension 0) and what each model keeps
digital, :func:`zoo_deploy_tests` returns the lossless deploy, the ``rram-22nm`` deploy and the
``prepare`` test, which a zoo's file binds to the names pytest collects."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping

import pytest
import torch

import cimsim
from cimsim.cost import estimate
from cimsim.report import Report

from .conftest import (
    assert_bitwise,
    check_every_matrix,
    check_lossy_run,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy
from .test_zoo5 import _quiet, _rel, _rram_noise_free
from .test_zoo11 import Flat


def zoo_deploy_tests(zoo: Mapping[str, tuple], build: Callable[..., tuple],
                     digital: Mapping[str, set[str]], *,
                     not_matrices: Mapping[str, tuple[str, ...]] | None = None,
                     noise_free: Collection[str] = (), tol: Mapping[str, float] | None = None,
                     not_exact: Collection[str] = ()) -> tuple[Callable, ...]:
    """``(lossless, rram, prepare)`` for the models of ``zoo``, built by ``build(name,
    dtype)``; ``digital``: the names each keeps digital (none if absent).

    * lossless: on ``lossless_chip('channel')`` bit-equal to the integer re-implementation
      (not for ``not_exact``: layers it does not cover), within ``tol[name]`` (3 %) of float,
      one inference per sample, exactly ``digital[name]`` listed;
    * rram: on ``rram-22nm`` (``noise_free``: its conversion noise off) finite, near float,
      reported, every weight matrix mapped or listed (``not_matrices[name]``: 2-D parameters
      in no product);
    * prepare: in float64, on the lossless chip and on ``rram-22nm`` noise-free, one step and
      the deployed twin equals the twin, listing what deploy lists.
    """
    names = list(zoo)

    @pytest.mark.parametrize("name", names)
    def lossless(name):
        model, args = build(name)
        sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
        with torch.no_grad():
            want = flat_output(model(*args))
            ref = (None if name in not_exact
                   else flat_output(reference_model(model, sim)(*args)))
        got = flat_output(sim(*args))
        if ref is not None:
            assert_bitwise(got, ref)
        assert _rel(got, want) < (tol or {}).get(name, 0.03)
        assert sim.n_inferences == args[0].shape[0]
        assert {d[0] for d in sim.digital} == digital.get(name, set())

    @pytest.mark.parametrize("name", names)
    def rram(name):
        model, args = build(name)
        with torch.no_grad():
            want = flat_output(model(*args))
        chip = _rram_noise_free() if name in noise_free else _rram()
        sim = _quiet(cimsim.deploy, model, chip, args)
        check_lossy_run(flat_output(sim(*args)), want, sim)
        check_every_matrix(model, sim, digital.get(name, set()),
                           (not_matrices or {}).get(name, ()))

    @pytest.mark.parametrize("chip", ["ideal", "rram"])
    @pytest.mark.parametrize("name", names)
    def prepare(name, chip):
        model, args = build(name, torch.float64)
        chip_cfg = lossless_chip("channel") if chip == "ideal" else _rram_noise_free()
        prep = prepare_step_deploy(Flat(model), chip_cfg, args, 0)
        assert {d[0] for d in prep.digital} == {"model." + d if d != "model" else "model"
                                                for d in digital.get(name, set())}

    return lossless, rram, prepare


# ---------------------------------------------------------------------------------------------
# the user path on one chip (the twenty-third zoo's, and the later zoos')
# ---------------------------------------------------------------------------------------------
TOTALS = ("energy_pj_per_inference", "area_mm2", "area_mm2_used", "latency_ns_per_inference",
          "tops", "tops_per_w", "tops_per_mm2", "n_macs_per_inference", "power_mw")


def user_chip(name: str) -> cimsim.ChipConfig:
    """A preset as a user loads it; a single-macro published chip time-multiplexed, as its
    capacity error advises (a toy network needs more arrays than one macro has)."""
    chip = cimsim.load_chip(name)
    if name.startswith("published/"):
        chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True))
    return chip


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_on_users_chip(model, args, chip: cimsim.ChipConfig, digital: Collection[str],
                        tmp_path, **deploy_kw) -> cimsim.mapping.SimModel:
    """Deploy, run, trace; the report's and ``estimate``'s totals finite and positive (and the
    same), every layer's energy and latency too; the headline, the HTML page (naming every
    mapped layer) and the figures render; saved and loaded, the totals come back. ``args``: a
    tuple of positional inputs, or a dict of keyword ones (each sample along dimension 0).
    Returns the deployed model."""
    from .test_zoo5 import _quiet

    def call(m):
        return m(**args) if isinstance(args, dict) else m(*args)

    sim = _quiet(cimsim.deploy, model, chip, args, seed=0, **deploy_kw)
    with torch.no_grad():
        want = flat_output(call(model))
    got = flat_output(call(sim))
    assert got.shape == want.shape and got.dtype == want.dtype and torch.isfinite(got).all()
    first = next(iter(args.values())) if isinstance(args, dict) else args[0]
    assert sim.n_inferences == len(first)
    assert {d[0] for d in sim.digital} == set(digital)
    fidelity = sim.trace(args if isinstance(args, dict) else tuple(args))
    assert list(fidelity["layer"]) == list(sim.sim_layers)
    report = sim.report()
    cost = estimate(sim.work())
    for key in TOTALS:
        assert positive(report.totals[key]), (key, report.totals[key])
        assert cost.totals[key] == pytest.approx(report.totals[key], rel=1e-9), key
    layers = report.layers.set_index("layer")
    # a time-multiplexed run's ``(reprogramming)`` row: the reloads' energy and time, no area
    assert list(layers.index) == list(sim.sim_layers) + (
        ["(reprogramming)"] if sim.arrays_needed > chip.array.n_arrays else [])
    for column in ("energy_pj_per_inference", "latency_ns_per_inference", "area_um2"):
        values = layers[column].drop("(reprogramming)", errors="ignore")
        assert all(positive(float(v)) for v in values), (column, list(values))
    assert report.headline_lines()
    # the figures and the HTML page, rendered once (matplotlib is most of this test's time)
    written = {p.name for p in report.save(tmp_path)}
    assert {"energy_per_layer.png", "latency_per_layer.png", "fidelity_per_layer.png",
            "report.html", "report.json", "layers.csv"} <= written
    html = (tmp_path / "report.html").read_text()
    assert all(layer in html for layer in sim.sim_layers)
    loaded = Report.load(tmp_path)
    for key in TOTALS:
        assert loaded.totals[key] == pytest.approx(report.totals[key], rel=1e-12), key
    assert list(loaded.layers["layer"]) == list(layers.index)
    return sim


def user_path_tests(fast: Collection[tuple[str, str]], slow: Collection[tuple[str, str]],
                    check: Callable[[str, str, object], None]) -> tuple[Callable, Callable]:
    """A zoo's two user-path tests: ``check(name, chip_name, tmp_path)`` on the ``fast``
    (model, chip) pairs in the default run and on the ``slow`` ones with ``-m slow``."""

    @pytest.mark.parametrize("name, chip", list(fast))
    def on_a_users_chip(name, chip, tmp_path):
        check(name, chip, tmp_path)

    @pytest.mark.slow
    @pytest.mark.parametrize("name, chip", list(slow))
    def on_every_other_chip(name, chip, tmp_path):
        check(name, chip, tmp_path)

    return on_a_users_chip, on_every_other_chip
