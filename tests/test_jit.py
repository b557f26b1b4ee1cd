"""cimsim's kernels compile where Numba can write no cache (``cimsim._jit``)."""

from __future__ import annotations

import warnings

import numba
import pytest

from cimsim import _jit


def _function_without_a_source_file():
    # Numba caches beside a function's source file or in the user's cache folder, keyed by
    # that file: one that does not exist has no cache locator, as a read-only install run by
    # a user without a writable home has none
    ns: dict = {}
    exec(compile("def plus_one(x):\n    return x + 1\n", "/nonexistent/cimsim_kernel.py",
                 "exec"), ns)
    return ns["plus_one"]


def test_a_kernel_without_a_cache_place_compiles_uncached_with_one_warning(monkeypatch):
    """``numba.njit(cache=True)`` refused to decorate there ('cannot cache function ...: no
    locator available'), so ``import cimsim`` failed; the kernel now compiles uncached, with
    one warning naming NUMBA_CACHE_DIR."""
    with pytest.raises(RuntimeError, match="cannot cache"):
        numba.njit(cache=True)(_function_without_a_source_file())
    monkeypatch.setattr(_jit, "_warned", False)
    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        kernel = _jit.njit(cache=True)(_function_without_a_source_file())
    assert kernel(41) == 42
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process
        assert _jit.njit(cache=True)(_function_without_a_source_file())(1) == 2


def _plus_two(x):
    return x + 2


def test_a_kernel_that_can_be_cached_is():
    kernel = _jit.njit(cache=True)(_plus_two)
    assert kernel(1) == 3
    assert type(kernel._cache).__name__ == "FunctionCache"
