"""``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` on the arrays.

Every layer and direction has two matrices on the arrays, the input-to-hidden ``W_ih``
(G·H, H_in) and the hidden-to-hidden ``W_hh`` (G·H, H_out) (G = 4 gates for an LSTM, 3 for a
GRU, 1 for an RNN), and an LSTM with ``proj_size`` a third, the projection ``W_hr`` (P, H).
The per-gate biases, the gate nonlinearities and the state updates are digital, in float,
exactly torch's equations (``nn.LSTM``: gates i, f, g, o; ``nn.GRU``: r, z, n with
``b_hn`` inside the ``r ·`` product). The hidden state fed back into ``W_hh`` is the simulated
one: errors accumulate over the time steps as on a chip.

Two matrices rather than one on the concatenated ``[x, h]``:

- a GRU's candidate gate needs ``W_hn h + b_hn`` apart from ``W_in x`` (it is multiplied by
  ``r``), so its ``W_hh`` product cannot be summed with ``W_ih x`` on the bit lines;
- ``x`` and ``h`` are different tensors with different ranges (an LSTM's ``h`` lies in (−1, 1),
  its input does not): each matrix has its own input quantizer and its ADCs calibrated on what it
  reads (``W_hh`` on the hidden states of the float calibration pass);
- ``W_ih x`` does not depend on the recurrence: it runs for all time steps as one batch, ahead
  of the sequential ``W_hh`` steps, as accelerators that overlap the input projection with
  the recurrence do.

The price is one ADC conversion set per gate output per matrix instead of one, and one digital
add per gate output and step (gate arithmetic, like the model's other activation functions and
element-wise operations, is not counted as events). A packed sequence
(``nn.utils.rnn.PackedSequence``) is padded, run with each sample's length (its state held and
its output zero past it, the backward direction starting at its last step, as torch computes
one) and packed again; only the steps within each sample's length run on the arrays (the
padding is no work, no events).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pad_packed_sequence,
)

from ..arrays._rng import stream_key
from ..config import ChipConfig
from ..errors import MappingError
from .layers import MatmulCore, SimLayer

__all__ = ["RecurrentShape", "SimRNN", "SimRNNCell", "cell_forward", "cell_matrices", "cell_mode",
           "recurrent_forward", "recurrent_matrices"]

#: gates per hidden unit in W_ih / W_hh, by torch's ``mode``
_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

# which matrix of a layer/direction: index into recurrent_matrices' triple
IH, HH, HR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class RecurrentShape:
    """What a recurrent module's forward needs besides its matrices (torch's names)."""

    mode: str
    input_size: int
    num_layers: int
    bidirectional: bool
    batch_first: bool
    hidden_size: int
    proj_size: int
    dropout: float

    @classmethod
    def of(cls, src: nn.RNNBase) -> RecurrentShape:
        return cls(mode=src.mode, input_size=int(src.input_size), num_layers=src.num_layers,
                   bidirectional=src.bidirectional, batch_first=src.batch_first,
                   hidden_size=src.hidden_size, proj_size=getattr(src, "proj_size", 0),
                   dropout=float(src.dropout))


def recurrent_matrices(src: nn.RNNBase) -> list[list[tuple[str, str | None]]]:
    """Per layer/direction (index ``layer · D + direction``), the torch parameter names of
    its matrices and biases: [(weight_ih, bias_ih), (weight_hh, bias_hh)] and, for an LSTM
    with ``proj_size``, (weight_hr, None). The matrices are named ``NAME.weight_ih_l0`` ... in
    deploy (``_reverse`` for the backward direction), as torch names the parameters."""
    if src.mode not in _GATES:
        raise MappingError(f"recurrent mode {src.mode!r} is not supported")
    out = []
    for layer in range(src.num_layers):
        for d in range(2 if src.bidirectional else 1):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            mats: list[tuple[str, str | None]] = [
                (f"weight_{kind}{sfx}", f"bias_{kind}{sfx}" if src.bias else None)
                for kind in ("ih", "hh")]
            if getattr(src, "proj_size", 0) > 0:
                mats.append((f"weight_hr{sfx}", None))
            out.append(mats)
    return out


def cell_update(mode: str, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor,
                c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One time step's gates and state update from the two products ``gi = W_ih x + b_ih``
    and ``gh = W_hh h + b_hh`` (B, G·H), as torch's documentation writes the equations:
    the new ``(h, c)`` (``c`` only for an LSTM, None otherwise)."""
    if mode == "LSTM":
        assert c is not None
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if mode == "GRU":
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)  # b_hn is in h_n: inside the r product
        return (1 - z) * n + z * h, None
    if mode == "RNN_TANH":
        return torch.tanh(gi + gh), None
    return torch.relu(gi + gh), None


def recurrent_forward(project: Callable[[int, int, torch.Tensor], torch.Tensor],
                      shape: RecurrentShape, training: bool, input: Any, hx: Any, name: str
                      ) -> tuple[Any, Any]:
    """``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` ``forward`` with every matrix product done by
    ``project(index, which, x)`` (layer/direction ``index = layer · D + direction``; ``which``
    IH, HH or HR; x (M, K) -> (M, N), biases included) and the gates and state updates in
    torch, as torch's documentation writes the equations.

    ``training``: the calling module's mode (dropout between layers); ``name``: the layer's
    name for errors. The deployed layer and the training twin both call this.
    """
    if isinstance(input, PackedSequence):
        return _packed_forward(project, shape, training, input, hx, name)
    return _padded_forward(project, shape, training, input, hx, name)


def _packed_forward(project: Callable[[int, int, torch.Tensor], torch.Tensor],
                    shape: RecurrentShape, training: bool, input: PackedSequence, hx: Any,
                    name: str) -> tuple[Any, Any]:
    """A PackedSequence: padded (in the caller's batch order, which ``hx`` and the returned
    states use, as torch's), run with each sample's length, packed again as it came."""
    # the caller's batch order, in the layer's layout
    padded, lengths = pad_packed_sequence(input, batch_first=bool(shape.batch_first))
    out, states = _padded_forward(project, shape, training, padded, hx, name, lengths)
    out = out.transpose(0, 1) if shape.batch_first else out  # (L, B, H_out)
    order = input.sorted_indices
    sorted_out = out if order is None else out.index_select(1, order.to(out.device))
    sorted_len = lengths if order is None else lengths[order.cpu()]
    data = pack_padded_sequence(sorted_out, sorted_len).data
    return PackedSequence(data, input.batch_sizes, input.sorted_indices,
                          input.unsorted_indices), states


def _reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sample's first ``lengths[b]`` steps of ``x`` (L, B, ...) reversed, the padding
    left in place (its own inverse): the backward direction of a packed sequence starts at
    each sample's last step."""
    steps = torch.arange(x.shape[0])[:, None]
    n = lengths[None, :]
    idx = torch.where(steps < n, n - 1 - steps, steps).to(x.device)  # (L, B)
    return x.gather(0, idx.reshape(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


def _rows(project: Callable[[int, int, torch.Tensor], torch.Tensor], idx: int, which: int,
          x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``project(idx, which, x)`` of the ``valid`` rows only (None: all), the others zero: a
    packed sequence's padding is no work of the arrays (no events, not calibrated on)."""
    if valid is None or bool(valid.all()):
        return project(idx, which, x)
    y = project(idx, which, x[valid])
    return y.new_zeros(x.shape[0], y.shape[1]).masked_scatter(valid[:, None], y)


def _padded_forward(project: Callable[[int, int, torch.Tensor], torch.Tensor],
                    shape: RecurrentShape, training: bool, input: Any, hx: Any, name: str,
                    lengths: torch.Tensor | None = None) -> tuple[Any, Any]:
    """``recurrent_forward`` on a tensor; ``lengths`` (B,) (a packed sequence's): past its
    length a sample's state is held and its output zero, as torch computes a PackedSequence,
    and its rows are not projected."""
    mode = shape.mode
    n_dir = 2 if shape.bidirectional else 1
    hidden = int(shape.hidden_size)
    h_size = shape.proj_size or hidden
    batched = input.dim() == 3
    if input.dim() not in (2, 3):
        raise ValueError(f"{name}: expected a 2-D (unbatched) or 3-D (batched) input, got "
                         f"{input.dim()}-D")
    if input.shape[-1] != shape.input_size:
        # as torch refuses it: the arrays' row tiles would read the first input_size features
        raise RuntimeError(f"{name}: input.size(-1) must be equal to input_size. Expected "
                           f"{shape.input_size}, got {input.shape[-1]}")
    x = input.unsqueeze(1) if not batched else (
        input.transpose(0, 1) if shape.batch_first else input)
    length, bsz = x.shape[0], x.shape[1]  # (L, B, H_in) from here on
    if length == 0:  # as torch refuses it (the state came back as h_0, unrun)
        raise RuntimeError(f"{name}: Expected sequence length to be larger than 0 in RNN")
    n_states = shape.num_layers * n_dir
    if hx is None:
        h0 = x.new_zeros(n_states, bsz, h_size)
        c0 = x.new_zeros(n_states, bsz, hidden)
    else:
        if mode == "LSTM" and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            # torch failed on an index; the unpacking here named no layer
            raise ValueError(f"{name}: an LSTM's initial state is a pair (h_0, c_0), got "
                             f"{type(hx).__name__}"
                             f"{f' of {len(hx)}' if isinstance(hx, (tuple, list)) else ''}")
        h0, c0 = hx if mode == "LSTM" else (hx, None)
        if not batched:
            h0 = h0.unsqueeze(1)
            c0 = None if c0 is None else c0.unsqueeze(1)
        for state, size, what in ((h0, h_size, "hidden"), (c0, hidden, "cell")):
            want = (n_states, bsz, size)
            if state is not None and tuple(state.shape) != want:  # as torch checks it
                raise RuntimeError(f"{name}: Expected {what} size {want}, got "
                                   f"{list(state.shape)}")
    # (L, B): the steps within each sample's length, the only rows the arrays compute
    valid = None if lengths is None else (
        torch.arange(length)[:, None] < lengths[None, :]).to(x.device)
    h_last, c_last = [], []
    for layer in range(shape.num_layers):
        outs = []
        for d in range(n_dir):
            idx = layer * n_dir + d
            seq = x if d == 0 else (x.flip(0) if lengths is None
                                    else _reverse_within(x, lengths))
            # the input products of all steps at once: they do not depend on the recurrence
            gi = _rows(project, idx, IH, seq.reshape(length * bsz, seq.shape[-1]),
                       None if valid is None else valid.reshape(-1))
            gi = gi.reshape(length, bsz, gi.shape[-1])
            h, c = h0[idx], (None if c0 is None else c0[idx])
            steps = []
            for t in range(length):
                at = None if valid is None else valid[t]
                h_t, c_t = cell_update(mode, gi[t], _rows(project, idx, HH, h, at), h, c)
                if h_size != hidden:  # an LSTM's projection
                    h_t = _rows(project, idx, HR, h_t, at)
                if at is None:
                    h, c = h_t, c_t
                    steps.append(h)
                    continue
                live = at[:, None]  # the samples not yet ended
                h = torch.where(live, h_t, h)
                c = None if c is None or c_t is None else torch.where(live, c_t, c)
                steps.append(torch.where(live, h_t, torch.zeros_like(h_t)))
            y = torch.stack(steps)
            outs.append(y if d == 0 else (y.flip(0) if lengths is None
                                          else _reverse_within(y, lengths)))
            h_last.append(h)
            c_last.append(c)
        x = torch.cat(outs, dim=2)
        if training and shape.dropout > 0 and layer < shape.num_layers - 1:
            x = F.dropout(x, p=float(shape.dropout))  # as torch: between layers, training only
    out = x if not batched else (x.transpose(0, 1) if shape.batch_first else x)
    h_n = torch.stack(h_last)
    if not batched:
        out, h_n = out.squeeze(1), h_n.squeeze(1)
    if mode != "LSTM":
        return out, h_n
    c_n = torch.stack(c_last)  # type: ignore[arg-type]
    return out, (h_n, c_n if batched else c_n.squeeze(1))


def cell_mode(src: nn.RNNCellBase) -> str:
    """A recurrent cell's equations, by the ``mode`` name torch gives the whole-sequence layer."""
    if isinstance(src, nn.LSTMCell):
        return "LSTM"
    if isinstance(src, nn.GRUCell):
        return "GRU"
    if isinstance(src, nn.RNNCell) and src.nonlinearity in ("tanh", "relu"):
        return "RNN_TANH" if src.nonlinearity == "tanh" else "RNN_RELU"
    raise MappingError(f"recurrent cell {type(src).__name__} (nonlinearity "
                       f"{getattr(src, 'nonlinearity', None)!r}) is not supported")


def cell_matrices(src: nn.RNNCellBase) -> list[tuple[str, str | None]]:
    """A cell's matrices and biases by their torch names, in the order IH, HH:
    [(weight_ih, bias_ih), (weight_hh, bias_hh)] (no biases for ``bias=False``)."""
    return [(f"weight_{kind}", f"bias_{kind}" if src.bias else None) for kind in ("ih", "hh")]


def cell_forward(project: Callable[[int, torch.Tensor], torch.Tensor], mode: str,
                 sizes: tuple[int, int], input: torch.Tensor, hx: Any, name: str) -> Any:
    """``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` ``forward``: one time step, each matrix
    product done by ``project(which, x)`` (``which`` IH or HH; x (B, K) -> (B, N), biases
    included), the gates and the state update as :func:`cell_update`; inputs and states 1-D
    (unbatched) or 2-D, and the missing state zeros, as torch's cells take them; ``sizes`` the
    cell's ``(input_size, hidden_size)``, checked as torch checks them. The deployed cell and
    its training twin both call this."""
    input_size, hidden = sizes
    what = {"LSTM": "LSTMCell", "GRU": "GRUCell"}.get(mode, "RNNCell")
    if input.dim() not in (1, 2):
        raise ValueError(f"{name} ({what}): expected the input to be 1D or 2D, got "
                         f"{input.dim()}D instead")
    if mode == "LSTM" and hx is not None and not (
            isinstance(hx, (tuple, list)) and len(hx) == 2
            and all(isinstance(s, torch.Tensor) for s in hx)):
        # tuple(hx) of one (2, H) tensor read its rows as h and c and ran (torch refuses it)
        got = (f"a tensor of shape {tuple(hx.shape)}" if isinstance(hx, torch.Tensor) else
               f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list)) else
               type(hx).__name__)
        raise TypeError(f"{name} ({what}): the state is a pair (h, c) of tensors; got {got}")
    states = None if hx is None else (tuple(hx) if mode == "LSTM" else (hx,))
    for state in states or ():
        if state.dim() not in (1, 2):
            raise ValueError(f"{name} ({what}): expected the state to be 1D or 2D, got "
                             f"{state.dim()}D instead")
    batched = input.dim() == 2
    # torch's own checks: the arrays' row tiles would read the first input_size features
    if input.shape[-1] != input_size:
        raise RuntimeError(f"{name} ({what}): input has inconsistent input_size: got "
                           f"{input.shape[-1]} expected {input_size}")
    for i, state in enumerate(states or ()):
        if state.dim() != input.dim():
            raise RuntimeError(f"{name} ({what}): the input is {input.dim()}-D, its state "
                               f"{state.dim()}-D (both batched or both unbatched)")
        if state.shape[-1] != hidden:
            raise RuntimeError(f"{name} ({what}): hidden{i} has inconsistent hidden_size: got "
                               f"{state.shape[-1]} expected {hidden}")
        if batched and state.shape[0] != input.shape[0]:
            raise RuntimeError(f"{name} ({what}): Input batch size {input.shape[0]} doesn't "
                               f"match hidden{i} batch size {state.shape[0]}")
    x = input if batched else input.unsqueeze(0)
    if states is None:
        zeros = x.new_zeros(x.shape[0], hidden)
        h, c = zeros, (zeros if mode == "LSTM" else None)
    else:
        h, c = [s if batched else s.unsqueeze(0) for s in states] + [None] * (2 - len(states))
    h, c = cell_update(mode, project(IH, x), project(HH, h), h, c)
    if not batched:
        h, c = h.squeeze(0), (None if c is None else c.squeeze(0))
    return (h, c) if mode == "LSTM" else h


class SimRNN(SimLayer):
    """``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` with every W_ih, W_hh (and W_hr) on the arrays
    (module docstring). The cores are in the order of :func:`recurrent_matrices`, core ``i``
    seeded ``stream_key(seed, i)``."""

    kind = "recurrent"

    def __init__(self, src: nn.RNNBase, name: str, chip: ChipConfig, seed: int):
        super().__init__(name)
        names = recurrent_matrices(src)
        self.shape = RecurrentShape.of(src)
        self.index: list[list[MatmulCore]] = []
        for mats in names:
            row = []
            for w_name, b_name in mats:
                w = self._np(getattr(src, w_name))
                b = None if b_name is None else self._np(getattr(src, b_name))
                core = MatmulCore(f"{name}.{w_name}", w, b, chip,
                                  stream_key(seed, len(self.cores)))
                self.cores.append(core)
                row.append(core)
            self.index.append(row)
        # latency of a stack: a unidirectional layer k starts k time steps after the first
        # (a wavefront: its input at step t is the output of the layer below at step t); a
        # bidirectional layer's backward direction reads the whole output of the layer
        # below, so each bidirectional layer is a later stage. An LSTM's projection W_hr
        # reads the gates W_hh gave at step t and W_hh at t + 1 reads its output: the two
        # alternate, each step lasting both, so W_hr is a stage after its layer's W_ih/W_hh
        n_dir = 2 if self.shape.bidirectional else 1
        per_layer = 2 if getattr(src, "proj_size", 0) else 1  # stages a layer takes
        for i, row in enumerate(self.index):
            for core in row:
                proj = int(core.name.rpartition(".")[2].startswith("weight_hr"))
                if n_dir == 2:
                    core.stage = per_layer * (i // n_dir) + proj
                else:
                    core.stage = proj
                    core.lag_vectors = float(i)

    def finalize(self) -> None:
        for core in self.cores:
            core.activation_clamp = None  # a gate output is no ReLU's input
        super().finalize()

    def calibration_stages(self) -> list[list[MatmulCore]]:
        """Per layer: its input matrices (both directions read the layer's input), then its
        recurrent ones (W_hh and W_hr read states the layer's matrices produce)."""
        n_dir = 2 if self.shape.bidirectional else 1
        stages = []
        for layer in range(self.shape.num_layers):
            rows = self.index[layer * n_dir:(layer + 1) * n_dir]
            stages.append([r[IH] for r in rows if not r[IH].digital])
            stages.append([c for r in rows for c in r[1:] if not c.digital])
        return [s for s in stages if s]

    def _project(self, idx: int, which: int, x: torch.Tensor) -> torch.Tensor:
        y = self._matmul(self.index[idx][which], self._np(x))
        return torch.from_numpy(np.ascontiguousarray(y)).to(x.device, x.dtype)

    def forward(self, input, hx=None):
        return recurrent_forward(self._project, self.shape, self.training, input, hx,
                                 self.sim_name)


class SimRNNCell(SimLayer):
    """``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell``, stepped by the model's own loop: its
    W_ih and W_hh on the arrays as one layer of :class:`SimRNN` (module docstring), named
    ``NAME.weight_ih`` and ``NAME.weight_hh`` as torch names the parameters, core ``i`` seeded
    ``stream_key(seed, i)``. Each call is one time step: both products read what the call is
    given, so they run side by side."""

    kind = "recurrent"

    def __init__(self, src: nn.RNNCellBase, name: str, chip: ChipConfig, seed: int):
        super().__init__(name)
        self.mode = cell_mode(src)
        self.sizes = (int(src.input_size), int(src.hidden_size))
        for i, (w_name, b_name) in enumerate(cell_matrices(src)):
            w = self._np(getattr(src, w_name))
            b = None if b_name is None else self._np(getattr(src, b_name))
            self.cores.append(MatmulCore(f"{name}.{w_name}", w, b, chip, stream_key(seed, i)))

    def finalize(self) -> None:
        for core in self.cores:
            core.activation_clamp = None  # a gate output is no ReLU's input
        super().finalize()

    def calibration_stages(self) -> list[list[MatmulCore]]:
        """W_ih, then W_hh: the state W_hh reads is what the cell produced at its last call."""
        return [[c] for c in self.cores if not c.digital]

    def _project(self, which: int, x: torch.Tensor) -> torch.Tensor:
        y = self._matmul(self.cores[which], self._np(x))
        return torch.from_numpy(np.ascontiguousarray(y)).to(x.device, x.dtype)

    def forward(self, input, hx=None):
        return cell_forward(self._project, self.mode, self.sizes, input, hx, self.sim_name)
