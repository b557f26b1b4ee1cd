"""Inference on torch: ``cimsim.deploy(..., backend="torch", device="cuda")``.

Each mapped matrix keeps its programmed parts (the same ``EngineView`` the Numba engine
runs) and torch computes, on the device, what ``engine.run_detailed`` computes from the same
operands, in the same order: the input planes, one partial-sum GEMM per row group and chunk of
vectors with the engine's matrix (``ProgrammedLayer.gemm_matrix``: int8 digits, or float32
conductances multiplied in float32 where the engine's ``_gemm.choose`` does), its off-state
current, column non-linearity and column pairs (``pos``, ``neg``, ``off_add``), the conversion
noise (thermal, per-cell
read with the engine's per-output variance ``gemm_var``, comparator: torch draws on the device,
so the same distribution as the engine's Gaussian path, not the same draws), the gain and
offset error, the ADC tables, and the shift-add ``Σ_c coef_c · Σ_p sig_p · value`` (a drift
compensation's gains are in ``coef``) accumulated conversion by conversion as the kernel does.
An ageing chip runs at the time its parts were set to (``SimModel.set_time``: ``drift.at_time``
re-derives the operands). Noise-free, on the CPU, the result is the engine's bit for bit; on
CUDA a float GEMM of programmed conductances sums in cuBLAS's order (a value within ~1e-7 of
an ADC boundary may convert a code apart there; integer GEMMs stay exact).

What the run did is counted as the engine counts it, so the report is the same: the static
events from the shapes (``engine._static_events``, a compensation's gain multiplies included),
the data-dependent ones from the input planes (DAC pulses, cell reads, Σ x²·G and Σ |x|·G:
``engine._add_plane_events``), and the clipped conversions against the tables' clip bounds.
An ADC fused with the following ReLU (``adc.fuse_activation``) is a table of per-output
thresholds and levels like a ramp converter's, converted as the engine converts it.
The float parts of the model (BatchNorm, ReLU, attention's softmax ...) stay where the
``SimModel`` runs them, on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import engine
from ..arrays import _gemm
from ..arrays.analog import column_transfer
from ..arrays.encoding import plane_layout
from ..arrays.program import ProgrammedLayer
from ..errors import ConfigError, MappingError
from ..events import Events
from .matrix import EngineView

__all__ = ["BACKENDS", "TorchMatmul", "check_backend"]

BACKENDS = ("numba", "torch")


def check_backend(backend: str, device: str | torch.device | None) -> None:
    """Refuse a backend or device that cannot run here (ConfigError); every chip runs on
    either."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend = {backend!r} is invalid; allowed: "
                          + ", ".join(repr(b) for b in BACKENDS))
    # the CIMSIM_* process settings, whichever backend reads them: a typo in one was refused
    # by the Numba engine's first call and ignored by the torch backend
    engine.engine_settings()
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device = {device!r} is not a torch device ({exc})") from None
    if backend == "numba":
        if dev.type != "cpu":  # torch.device("cpu") and "cpu:0" are the CPU too
            raise ConfigError(f"device = {device!r} needs backend = 'torch' (the Numba engine "
                              "runs on the CPU)")
        return
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device = {device!r}: torch sees no CUDA device here")
    if dev.type == "meta":  # shapes without values: the deploy ran, its first forward failed
        raise ConfigError(f"device = {device!r} holds no values; allowed: 'cpu' or a GPU "
                          "torch can use, e.g. 'cuda'")
    if dev.type != "cpu":
        # a device this torch build or machine lacks (mps, xpu, cuda:7 on one GPU) failed
        # only after the whole deploy's work, with torch's own error; the simulation works in
        # float64 on it (a device without float64 cannot run it either)
        try:
            torch.zeros(1, dtype=torch.float64, device=dev)
        except (RuntimeError, AssertionError, TypeError, ValueError) as exc:
            # torch's first sentence (the rest lists its dispatch keys)
            why = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() \
                else type(exc).__name__
            raise ConfigError(f"device = {device!r} cannot run the simulation here ({why}); "
                              "allowed: 'cpu' or a GPU torch can use, e.g. 'cuda'") from None


class _Part:
    """One programmed part's operands on the device, as ``engine.run_detailed`` reads them."""

    def __init__(self, layer: ProgrammedLayer, device: torch.device,
                 engine_gemm: bool | None = None):
        chip = layer.chip
        tables = layer.adc
        if tables is None:
            raise MappingError("a programmed part has no ADC tables (calibrate it)")
        f64 = dict(dtype=torch.float64, device=device)

        def t64(a) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64), **f64)  # type: ignore

        self.layer = layer
        sig, v_lo, v_hi = plane_layout(chip, layer.input_signed)
        self.sig = [float(s) for s in sig]
        mat = layer.gemm_matrix
        a_max = max(abs(v_lo), abs(v_hi))
        # the engine's GEMM kind of each row group: float32 products of float32 conductances
        # round as the engine's do; int8 and float64 products of integers are exact in float64
        self.kinds = [_gemm.choose(a_max, layer.group_abs_max[g], k1 - k0, mat.dtype == np.int8)
                      for g, (k0, k1, _) in enumerate(layer.groups)]
        # on the CPU the engine's own GEMM call (its BLAS, CIMSIM_GEMM honoured); elsewhere
        # torch's in the engine's precision (``engine_gemm`` chooses, for tests)
        self.cpu_gemm = device.type == "cpu" if engine_gemm is None else engine_gemm
        self.mat32 = (torch.as_tensor(np.ascontiguousarray(mat, dtype=np.float32), device=device)
                      if "float32" in self.kinds and not self.cpu_gemm else None)
        self.mat64 = t64(mat) if set(self.kinds) - {"float32"} and not self.cpu_gemm else None
        self.var = (None if layer.gemm_var is None else
                    torch.as_tensor(np.ascontiguousarray(layer.gemm_var, dtype=np.float32),
                                    device=device))
        self.pos = torch.as_tensor(layer.pos, dtype=torch.long, device=device)
        has_neg = layer.neg >= 0
        self.has_neg = bool(has_neg.any())
        self.neg_mask = torch.as_tensor(has_neg, device=device)
        self.neg = torch.as_tensor(np.where(has_neg, layer.neg, 0), dtype=torch.long,
                                   device=device)
        self.off_add = t64(layer.off_add)
        self.transfer = column_transfer(chip.noise, layer.column_fs, xp=torch)
        self.need_xsum = bool(np.any(layer.off_add != 0))
        self.coef = t64(layer.conv_coef)  # a drift compensation's gains included
        # conversions of each output in the engine's order: the r-th of every output at step r
        rank = np.zeros(layer.n_conversions, dtype=np.int64)
        seen: dict[int, int] = {}
        for c, n in enumerate(layer.out_col):
            rank[c] = seen.get(int(n), 0)
            seen[int(n)] = rank[c] + 1
        self.steps = [(torch.as_tensor(np.flatnonzero(rank == r), device=device),
                       torch.as_tensor(layer.out_col[rank == r], device=device))
                      for r in range(int(rank.max(initial=-1)) + 1)]
        self.lo, self.delta = t64(tables.lo), t64(tables.delta)
        self.thr = None if tables.thr is None else t64(tables.thr)
        self.lvl = None if tables.lvl is None else t64(tables.lvl)
        self.clip_lo, self.clip_hi = (t64(b) for b in tables.clip_bounds(chip.adc.n_codes))
        self.x_sum_coef = t64(layer.x_sum_coef) if np.any(layer.x_sum_coef != 0) else None
        self.rowsum = t64(layer.cell_rowsum)

    def run(self, x: torch.Tensor) -> engine.RunResult:
        """Integer inputs (M, K) as float64 on the device -> ``engine.run_detailed``'s result."""
        from ..train.twin import input_planes

        layer = self.layer
        chip = layer.chip
        m = x.shape[0]
        planes = input_planes(x, chip, layer.input_signed)  # (P, M, K), exact
        n_planes = planes.shape[0]
        ev = engine._static_events(layer, m, n_planes)
        v2g = engine._read_v2g(planes, layer,
                               float((planes * planes).sum(dim=(0, 1)) @ self.rowsum))
        engine._add_plane_events(layer, float(torch.count_nonzero(planes)), v2g,
                                 *engine._v1g(planes, layer), ev)
        y = x.new_zeros((m, layer.n_outputs))
        clips = torch.zeros((), dtype=torch.long, device=x.device)
        chunk = engine._chunk_size(layer, n_planes, None)  # the engine's GEMM shapes
        for m0 in range(0, m, chunk):
            flat = planes[:, m0:m0 + chunk].reshape(-1, layer.n_inputs)
            for g in range(layer.n_groups):
                clips += self._group(flat, g, n_planes, y[m0:m0 + chunk])
        if self.x_sum_coef is not None:
            y += x.sum(dim=1)[:, None] * self.x_sum_coef[None, :]
        return engine.RunResult(
            y=y.cpu().numpy(), events=Events(ev), n_clipped=int(clips),
            n_conversions=m * n_planes * layer.n_groups * layer.n_conversions)

    def analog(self, flat: torch.Tensor, g: int, n_planes: int) -> torch.Tensor:
        """Noise-free analog value (P, Mc, C) of every conversion of row group ``g`` for a
        chunk's planes ``flat`` (P·Mc, K): ``engine.analog_values``' bit for bit on the CPU."""
        k0, k1, _ = self.layer.groups[g]
        xg = flat[:, k0:k1]
        mc = flat.shape[0] // n_planes
        if self.cpu_gemm:
            # a contiguous left operand, as the engine's (its int8 planes' copy)
            ps = torch.from_numpy(_gemm.gemm(np.ascontiguousarray(xg.numpy()),
                                             self.layer.gemm_matrix[k0:k1], self.kinds[g])
                                  ).double()
        elif self.kinds[g] == "float32":
            assert self.mat32 is not None
            with _gemm.ieee_float32(torch):  # exact below 2^24 only in IEEE float32
                ps = torch.matmul(xg.to(torch.float32).contiguous(), self.mat32[k0:k1]
                                  ).double()
        else:
            assert self.mat64 is not None
            ps = torch.matmul(xg.contiguous(), self.mat64[k0:k1])
        ps = ps.reshape(n_planes, mc, -1)
        # the analog value of every conversion: its column(s), their off-state current
        xs = xg.sum(dim=1).reshape(n_planes, mc, 1) if self.need_xsum else 0.0
        a = ps[..., self.pos] + self.off_add[self.pos] * xs
        f = (lambda v: v) if self.transfer is None else self.transfer[0]
        a = f(a)  # the column non-linearity acts on each column's current
        if self.has_neg:
            a = a - torch.where(self.neg_mask,
                                f(ps[..., self.neg] + self.off_add[self.neg] * xs), 0.0)
        return a

    def _group(self, flat: torch.Tensor, g: int, n_planes: int, out: torch.Tensor
               ) -> torch.Tensor:
        """Row group ``g`` of one chunk (planes stacked along the vectors, (P·Mc, K)):
        converted and accumulated into ``out`` (Mc, N); returns its clipped conversions."""
        layer = self.layer
        chip, adc = layer.chip, layer.chip.adc
        k0, k1, _ = layer.groups[g]
        xg = flat[:, k0:k1]
        mc = flat.shape[0] // n_planes
        a = self.analog(flat, g, n_planes)
        th = chip.noise.thermal_sigma_lsb
        if th > 0 or self.var is not None:
            v = torch.full_like(a, th * th)
            if self.var is not None:
                with _gemm.ieee_float32(torch):  # as the engine's float32 variance GEMM
                    var = torch.matmul(xg.to(torch.float32).square(), self.var[k0:k1]
                                       ).double()
                var = var.reshape(n_planes, mc, -1)
                v = v + var[..., self.pos]
                if self.has_neg:
                    v = v + torch.where(self.neg_mask, var[..., self.neg], 0.0)
            a = a + v.sqrt() * torch.randn_like(a)
        delta = self.delta[g]
        v = a * (1.0 + adc.gain_error) + adc.offset_error_lsb * delta
        if adc.comparator_noise_lsb > 0:
            v = v + adc.comparator_noise_lsb * delta * torch.randn_like(v)
        n_clip = ((v < self.clip_lo[g]) | (v > self.clip_hi[g])).sum()
        if self.thr is not None and self.lvl is not None:
            # code = number of thresholds <= v (ties go up), per conversion
            vt = v.reshape(-1, v.shape[-1]).t().contiguous()  # (C, P·Mc)
            code = torch.searchsorted(self.thr[g].contiguous(), vt, right=True)
            val = torch.gather(self.lvl[g], 1, code).t().reshape(v.shape)
        else:
            lo, top = self.lo[g], float(adc.n_codes - 1)
            u = ((v - lo) / delta + 0.5).clamp_(0.0, top + 0.5)
            val = lo + u.floor_() * delta
        acc = self.sig[0] * val[0]
        for p in range(1, n_planes):  # the kernel's order: plane by plane
            acc = acc + self.sig[p] * val[p]
        contrib = self.coef * acc  # (Mc, C)
        for conv, col in self.steps:  # each output's conversions in ascending order
            out[:, col] += contrib[:, conv]
        return n_clip


class TorchMatmul:
    """One mapped matrix's programmed parts, run on a torch device.

    ``run(x_int)`` returns one :class:`cimsim.engine.RunResult` per part, as
    ``engine.run_detailed`` gives them for ``x_int[:, a:b]`` of each part.
    """

    def __init__(self, weight: np.ndarray, view: EngineView, device: str | torch.device,
                 name: str = ""):
        self.device = torch.device(device)
        self.name = name
        self.weight = weight
        self.view = view
        self._parts = [_Part(layer, self.device) for _, _, layer in view.parts]

    def run(self, x_int: np.ndarray, view: EngineView | None = None
            ) -> list[engine.RunResult]:
        """Integer inputs (M, K) -> the result of every part (integer domain). ``view``: the
        matrix as it is now (``SimModel.set_time`` replaces it: its operands are loaded)."""
        if view is not None and view is not self.view:
            self.view = view
            self._parts = [_Part(layer, self.device) for _, _, layer in view.parts]
        x = torch.as_tensor(np.asarray(x_int, dtype=np.float64), device=self.device)
        with torch.no_grad():
            return [part.run(x[:, a:b]) for part, (a, b, _) in zip(self._parts, self.view.parts,
                                                                  strict=True)]
