"""ADC tables as a value: the programmed layer carries them, calibration returns a new layer."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import cimsim
from cimsim import engine
from cimsim.adc import ADCTables, calibration_units
from cimsim.arrays.program import program
from cimsim.config import CalibrationGranularity
from tests.conftest import ideal_chip


def _calibrated_chip(granularity="array", **adc):
    return ideal_chip(encoding="signed_cell", input_bits=4, weight_bits=4, bits_per_cell=4,
                      dac_bits=4, n_rows=8, n_cols=3, rows_per_conversion=4,
                      adc=dict(bits=5, range_policy="calibrated",
                               calibration_granularity=granularity, **adc))


def _problem(seed=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 16, (40, 19)), rng.integers(-7, 8, (7, 19))


def test_calibration_returns_a_new_layer_and_leaves_the_old_one():
    x, w = _problem()
    layer = program(w, _calibrated_chip())
    assert layer.adc is None
    done = engine.calibrate(layer, x)
    assert layer.adc is None and done.adc is not None and done is not layer
    assert done.adc.shape == (layer.n_groups, layer.n_conversions)
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.adc = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.adc.lo = np.zeros(1)  # type: ignore[misc]


def test_with_adc_checks_the_shape():
    x, w = _problem()
    layer = program(w, _calibrated_chip())
    with pytest.raises(ValueError, match="do not fit"):
        layer.with_adc(ADCTables.linear(np.zeros((1, 1)), np.ones((1, 1))))
    with pytest.raises(ValueError, match="thr and lvl"):
        ADCTables(lo=np.zeros((1, 1)), delta=np.ones((1, 1)), thr=np.zeros((1, 1, 1)))


def test_from_levels_lsb_is_the_mean_level_spacing():
    lvl = np.array([[[0.0, 1.0, 3.0, 6.0]], [[2.0, 2.0, 2.0, 2.0]]])
    thr = 0.5 * (lvl[..., 1:] + lvl[..., :-1])
    t = ADCTables.from_levels(thr, lvl)
    np.testing.assert_array_equal(t.lo, [[0.0], [2.0]])
    np.testing.assert_array_equal(t.delta, [[2.0], [1.0]])  # a flat unit gets a unit step
    assert t.nonlinear and not ADCTables.linear(t.lo, t.delta).nonlinear


@pytest.mark.parametrize("granularity", list(CalibrationGranularity))
def test_calibration_units_partition_the_layer(granularity):
    _, w = _problem()
    layer = program(w, _calibrated_chip(granularity.value))
    units = calibration_units(layer, granularity)
    seen = np.zeros((layer.n_groups, layer.n_conversions), dtype=int)
    for rows, cols in units:
        seen[np.ix_(rows, cols)] += 1
    assert np.all(seen == 1)
    expected = {"layer": 1, "column": layer.n_groups * layer.n_conversions,
                "array": len(layer.row_tiles) * layer.n_col_tiles}[granularity.value]
    assert len(units.members) == expected


def test_analog_values_are_the_partial_sums_of_each_row_group():
    x, w = _problem(5)
    layer = program(w, _calibrated_chip())
    got = np.zeros((layer.n_groups, x.shape[0], layer.n_conversions))
    for blk in engine.analog_values(layer, x, chunk_vectors=7):
        assert blk.values.shape[0] == 1  # one plane: a one-shot DAC
        got[blk.group, blk.m0:blk.m0 + blk.values.shape[1]] = blk.values[0]
    for g, (k0, k1, _tile) in enumerate(layer.groups):
        np.testing.assert_array_equal(got[g], x[:, k0:k1] @ w[:, k0:k1].T)


def _module_imports(path: Path, name: str) -> set[str]:
    """cimsim modules that ``name`` imports at module level (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            mod = node.module or ""
            full = (f"{base}.{mod}" if mod else base) if node.level else mod
            out.add(full)
            out.update(f"{full}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("cimsim")}


def test_no_import_cycle_and_no_oracle_in_production():
    root = Path(cimsim.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    graph = {name: {m for m in _module_imports(path, name) if m in modules and m != name}
             for name, path in modules.items()}
    # a package's __init__ re-exports its modules: an edge into it is not a cycle by itself,
    # so follow module -> module edges only
    graph = {n: {m for m in deps if not modules[m].name == "__init__.py"}
             for n, deps in graph.items() if modules[n].name != "__init__.py"}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(stack + [node, dep])
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    users = [n for n, deps in graph.items()
             if any(d.endswith("._reference") for d in deps) and not n.endswith("._reference")]
    assert users == [], f"production modules import a test oracle at load: {users}"


@pytest.mark.parametrize("shape", [(5, 3), (300, 7), (4000, 97), (20000, 64)])
@pytest.mark.parametrize("threads", [1, 2])
def test_column_percentiles_are_numpys(shape, threads):
    """The calibration's per-column percentiles (transposed, split over threads) are exactly
    ``np.percentile(..., axis=0)``, ties and a constant column included."""
    import numba

    from cimsim.adc.linear import column_percentiles

    rng = np.random.default_rng(shape[0])
    s = rng.normal(size=shape).astype(np.float32)
    s[:, 0] = 1.5  # a column that never moved
    s[: shape[0] // 2, -1] = np.round(s[: shape[0] // 2, -1])  # ties
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        got = column_percentiles(s, [0.1, 99.9])
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(got, np.percentile(s, [0.1, 99.9], axis=0))
