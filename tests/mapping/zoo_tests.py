"""A zoo's three registry tests, written once (the twelfth and thirteenth zoos use them): from
its registry ``{name: (make, data)}`` (``conftest.build_seeded``'s arguments: one model, its
positional example inputs, the first tensor's batch dimension 0) and what each model keeps
digital, :func:`zoo_deploy_tests` returns the lossless deploy, the ``rram-22nm`` deploy and the
``prepare`` test, which a zoo's file binds to the names pytest collects."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import pytest
import torch

import cimsim

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
