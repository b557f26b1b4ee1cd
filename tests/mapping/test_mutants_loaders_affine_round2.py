"""Tests written for the survivors of a second hand-made mutation round over the model and data
loaders and the graph rewriting (cimsim/mapping/loaders.py) and the recognition of modules that
compute a Linear (cimsim/mapping/affine.py): each pins a behaviour that a small wrong change
left every earlier test passing. Small modules and files, known answers worked out by hand or
read off torch's own computation; each docstring names the line and the change it kills."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.mapping import loaders
from cimsim.mapping.affine import AffineSource, affine_source
from cimsim.mapping.loaders import (
    LoadError,
    import_user_module,
    is_train_checkpoint,
    label_problem,
    load_data,
    load_model,
    modules_from_graph,
)

# ---------------------------------------------------------------------------------------------
# cimsim/mapping/affine.py


class _Hand(nn.Module):
    """``x @ W.T + b`` written out, with the weight and bias given."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(w.clone())
        self.bias = None if b is None else nn.Parameter(b.clone())

    def forward(self, x):
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


class _WithChild(_Hand):
    """A Linear's computation, then a submodule (the identity): not a leaf."""

    def __init__(self, w, b=None):
        super().__init__(w, b)
        self.act = nn.Identity()

    def forward(self, x):
        return self.act(super().forward(x))


class _WithGain(_Hand):
    """A third parameter, a gain of one at the probe: the module computes more than a Linear
    (the gain may be learned)."""

    def __init__(self, w, b=None):
        super().__init__(w, b)
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return super().forward(x) * self.gain


class _ThreeD(nn.Module):
    """A 3-D weight summed over its last axis: no Linear's weight."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(24.0).reshape(3, 4, 2) / 10)

    def forward(self, x):
        return x @ self.weight.sum(-1).T


class _IntWeight(nn.Module):
    """An integer weight (a frozen lookup), used as floats."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(12).reshape(3, 4), requires_grad=False)

    def forward(self, x):
        return x @ self.weight.T.to(x.dtype)


class _MatrixBias(nn.Module):
    """A (3, 1) bias added as a row (``b.T``): ``F.linear`` would refuse it."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(12.0).reshape(3, 4) / 10)
        self.bias = nn.Parameter(torch.tensor([[1.0], [2.0], [3.0]]))

    def forward(self, x):
        return x @ self.weight.T + self.bias.T


class TestAffineSource:
    @pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
    def test_a_scripted_linear_is_not_taken(self):
        """affine.py ``affine_source``: the ``torch.jit.ScriptModule`` refusal dropped took a
        scripted ``nn.Linear`` (whose forward the probe cannot replace) for a Linear."""
        torch.manual_seed(0)
        assert affine_source(torch.jit.script(nn.Linear(4, 3))) is None

    def test_a_module_with_a_submodule_is_not_taken(self):
        """affine.py ``affine_source``: the ``next(module.children()) is not None`` check
        dropped took a module holding a submodule (which may change later) for a Linear."""
        w = torch.arange(12.0).reshape(3, 4) / 10
        assert affine_source(_Hand(w)) is not None
        assert affine_source(_WithChild(w)) is None

    def test_a_module_with_a_third_parameter_is_not_taken(self):
        """affine.py ``affine_source``: ``set(params) not in ({"weight"}, {"weight",
        "bias"})`` weakened to ``"weight" not in params`` took a module with a learned gain
        (one at the probe) for a plain Linear, dropping the gain."""
        w = torch.arange(12.0).reshape(3, 4) / 10
        assert affine_source(_WithGain(w, torch.ones(3))) is None

    def test_a_three_d_weight_is_not_taken(self):
        """affine.py ``affine_source``: ``w.dim() != 2`` as ``w.dim() < 2`` probed a 3-D
        weight and failed in ``F.linear`` instead of answering None."""
        assert affine_source(_ThreeD()) is None

    def test_an_integer_weight_is_not_taken(self):
        """affine.py ``affine_source``: the ``w.is_floating_point()`` check dropped probed an
        integer weight with integer random inputs, which torch refuses (an error, not None)."""
        assert affine_source(_IntWeight()) is None

    def test_a_two_d_bias_is_not_taken(self):
        """affine.py ``affine_source``: the ``b.dim() != 1`` check dropped probed a (3, 1)
        bias, and ``F.linear`` raised on it instead of the answer None."""
        assert affine_source(_MatrixBias()) is None

    def test_a_symmetric_square_weight_is_found_untransposed(self):
        """affine.py ``affine_source``: the layouts tried ``(True, False)`` instead of
        ``(False, True)`` found a symmetric (out, in) weight as transposed, so the trained
        weight would have come back transposed into the module."""
        w = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 5.0], [3.0, 5.0, 6.0]])
        found = affine_source(_Hand(w))
        assert found is not None and found.transposed is False

    def test_the_source_of_a_stored_in_out_weight_is_transposed(self):
        """affine.py ``affine_source``: ``AffineSource(linear, transposed)`` returning
        ``False`` always gave back an (out, in) weight into a module storing (in, out)."""
        w = torch.arange(12.0).reshape(4, 3) / 10  # (in, out)

        class Project(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = nn.Parameter(w.clone())

            def forward(self, x):
                return x @ self.weight

        found = affine_source(Project())
        assert found is not None and found.transposed is True
        assert torch.equal(found.linear.weight.detach(), w.T)
        assert torch.equal(found.module_weight(found.linear.weight.detach()), w)

    def test_module_weight_transposes_only_when_transposed(self):
        """affine.py ``AffineSource.module_weight``: ``weight.t() if self.transposed else
        weight`` as ``weight`` gave a transposed module its weight in the Linear's layout."""
        w = torch.arange(6.0).reshape(2, 3)
        lin = nn.Linear(3, 2)
        assert torch.equal(AffineSource(lin, True).module_weight(w), w.T)
        assert torch.equal(AffineSource(lin, False).module_weight(w), w)


class _Dropped(_Hand):
    """A Linear, then a dropout that acts in training only."""

    def forward(self, x):
        return F.dropout(super().forward(x), 0.5, self.training)


class _Flattening(_Hand):
    """``F.linear`` of the input flattened to rows: right on 2-D inputs only."""

    def forward(self, x):
        return F.linear(x.reshape(-1, x.shape[-1]), self.weight, self.bias)


class _Unsqueezed(_Hand):
    """The Linear's output with a leading axis of one added."""

    def forward(self, x):
        return super().forward(x).unsqueeze(0)


class _Pair(_Hand):
    """The Linear's output inside a tuple."""

    def forward(self, x):
        return (super().forward(x),)


class _RowsOnly(_Hand):
    """A Linear that refuses inputs of more than two dimensions."""

    def forward(self, x):
        if x.dim() != 2:
            raise ValueError("rows only")
        return super().forward(x)


class _Gained(_Hand):
    """``F.linear`` with the weight times a gain near one."""

    def __init__(self, w, b, gain):
        super().__init__(w, b)
        self.gain = gain

    def forward(self, x):
        return F.linear(x, self.weight * self.gain, self.bias)


class _Summed(_Hand):
    """A Linear computed as a broadcast product summed: the same map, float32 sums in another
    order."""

    def forward(self, x):
        return (x.unsqueeze(-2) * self.weight).sum(-1) + self.bias


def _wb(n_out=3, n_in=4, scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n_out, n_in, generator=gen) * scale,
            torch.randn(n_out, generator=gen) * scale)


class TestAffineProbe:
    def test_a_training_dropout_is_probed_in_eval_mode(self):
        """affine.py ``_computes``: ``module.eval()`` dropped probed a module in training mode,
        its dropout random, and refused a module that is a Linear in eval mode."""
        m = _Dropped(*_wb()).train()
        assert affine_source(m) is not None

    def test_the_probe_gives_back_the_training_mode(self):
        """affine.py ``_computes``: ``module.train(was_training)`` dropped left a module in
        training mode switched to eval by the probe."""
        m = _Hand(*_wb()).train()
        assert affine_source(m) is not None
        assert m.training is True

    def test_a_module_right_on_rows_only_is_not_taken(self):
        """affine.py ``_computes``: the rank-3 probe ``(2, 3, in)`` dropped took a module
        that flattens its input to rows (wrong for a sequence batch) for a Linear."""
        assert affine_source(_Flattening(*_wb())) is None

    def test_an_output_of_another_shape_is_not_taken(self):
        """affine.py ``_computes``: the ``y.shape != want.shape`` check dropped compared by
        broadcasting and took a module adding a leading axis for a Linear."""
        assert affine_source(_Unsqueezed(*_wb())) is None

    def test_an_output_that_is_no_tensor_is_not_taken(self):
        """affine.py ``_computes``: the ``isinstance(y, torch.Tensor)`` check dropped read
        ``.shape`` of a tuple and raised instead of answering None."""
        assert affine_source(_Pair(*_wb())) is None

    def test_a_module_refusing_a_probe_is_not_taken(self):
        """affine.py ``_computes``: ``except Exception`` narrowed let a module's own refusal of
        the rank-3 probe escape instead of answering None."""
        assert affine_source(_RowsOnly(*_wb())) is None

    def test_a_gain_of_one_and_a_half_in_ten_thousand_is_refused(self):
        """affine.py ``_RTOL = 1e-4`` as 1e-3, and ``allclose(rtol=0.0)`` as ``rtol=_RTOL``:
        a bias-free weight 1.5e-4 off (1.5e-4 of the output's scale at its largest entry,
        beyond 1e-4; within 1e-4 of the scale plus 1e-4 of each entry) was taken for the plain
        Linear."""
        w, _ = _wb(8, 16)
        assert affine_source(_Gained(w, None, 1.0)) is not None
        assert affine_source(_Gained(w, None, 1.00015)) is None

    def test_the_tolerance_scales_with_the_output(self):
        """affine.py ``_computes``: ``scale = float(want.abs().max()) or 1.0`` as ``1.0``
        made the tolerance absolute: outputs of ~1e5 summed in another order (float32
        rounding of ~1e-2) were refused."""
        w, b = _wb(8, 64, scale=1e4)
        assert affine_source(_Summed(w, b)) is not None

    def test_the_tolerance_scales_with_the_largest_output(self):
        """affine.py ``_computes``: the scale ``want.abs().max()`` as ``.mean()``: one output
        of ~1e5 beside 999 of ~1e-3 (a mean ~1e3 times smaller) made its float32 rounding
        too large, and a Linear summed in another order was refused."""
        w, b = _wb(1000, 64, scale=1e-3)
        w[0] *= 1e7
        assert affine_source(_Summed(w, b * 0)) is not None

    def test_the_probe_leaves_the_global_random_stream(self):
        """affine.py ``_computes``: the probe's inputs drawn from the global generator
        (``generator=None``) moved the caller's random stream."""
        m = _Hand(*_wb())
        torch.manual_seed(5)
        want = torch.rand(3)
        torch.manual_seed(5)
        assert affine_source(m) is not None
        assert torch.equal(torch.rand(3), want)


# ---------------------------------------------------------------------------------------------
# cimsim/mapping/loaders.py: data files


def _npz(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _saved(tmp_path, obj, name="data.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


class TestLoadData:
    def test_a_folder_is_named_as_one(self, tmp_path):
        """loaders.py ``load_data``: the ``p.is_dir()`` refusal dropped said "data file ...
        not found" of a folder that exists."""
        with pytest.raises(LoadError, match="is a folder; allowed: an .npz file"):
            load_data(tmp_path)

    def test_an_npy_file_is_refused_naming_the_npz(self, tmp_path):
        """loaders.py ``load_data``: the ``.npy`` branch dropped gave torch.load's failure,
        which names no way out."""
        path = tmp_path / "x.npy"
        np.save(path, np.zeros((2, 3), np.float32))
        with pytest.raises(LoadError, match="a .npy file is not read"):
            load_data(path)

    def test_an_npz_of_labels_alone_is_refused(self, tmp_path):
        """loaders.py ``load_data``: ``not [k for k in z.files if k != "y"]`` as ``not
        z.files`` read labels without inputs as keyword data of no entries."""
        with pytest.raises(LoadError, match="an .npz needs an array named 'x'"):
            load_data(_npz(tmp_path, y=np.arange(3)))

    def test_a_long_double_input_loads_as_its_values(self, tmp_path):
        """loaders.py ``_as_tensor``: the ``except TypeError`` fallback to float64 dropped
        raised torch's TypeError on a float128 array, which holds numbers."""
        x = np.array([[1.5, -2.0], [3.25, 0.0]], dtype=np.longdouble)
        if np.dtype(np.longdouble).itemsize == 8:
            pytest.skip("long double is float64 here")
        got, y = load_data(_npz(tmp_path, x=x))
        assert y is None and got.dtype == torch.float32
        assert got.tolist() == [[1.5, -2.0], [3.25, 0.0]]

    def test_uint64_labels_beyond_int64_are_refused_as_negative(self, tmp_path):
        """loaders.py ``_as_tensor``: ``np.int64 if name == "y" or fits`` as ``if fits``
        made labels beyond int64 float64, refused as "not integers" instead of wrapping to a
        negative class index, the message the comment promises."""
        path = _npz(tmp_path, x=np.zeros((2, 3), np.float32),
                    y=np.array([1, 1 << 63], dtype=np.uint64))
        with pytest.raises(LoadError, match="must be class indices >= 0"):
            load_data(path)

    def test_a_uint64_input_of_exactly_two_to_the_63_stays_positive(self, tmp_path):
        """loaders.py ``_as_tensor``: ``int(array.max()) < 1 << 63`` as ``<=`` cast 2**63 to
        int64, where it wraps to -2**63."""
        x, _ = load_data(_npz(tmp_path, x=np.array([[1 << 63, 1]], dtype=np.uint64)))
        assert x.tolist() == [[float(1 << 63), 1.0]]

    def test_the_first_non_finite_value_is_named(self, tmp_path):
        """loaders.py ``_checked_data``: ``(~finite).nonzero()[0]`` as ``[-1]`` named the last
        bad value as the first; ``int((~finite).sum())`` as ``.any()`` counted one of two."""
        x = np.zeros((3, 2), np.float32)
        x[1, 0], x[2, 1] = np.nan, np.inf
        with pytest.raises(LoadError, match=r"holds 2 NaN or infinite value\(s\).*the first "
                           r"at index \(1, 0\)"):
            load_data(_npz(tmp_path, x=x))

    def test_labels_come_back_as_int64(self, tmp_path):
        """loaders.py ``_checked_data``: ``return x, y.long()`` as ``return x, y`` gave int32
        labels of a tensor file as int32."""
        path = _saved(tmp_path, (torch.zeros(2, 3), torch.tensor([0, 1], dtype=torch.int32)))
        _, y = load_data(path)
        assert y.dtype == torch.int64 and y.tolist() == [0, 1]

    def test_labels_beside_a_non_tensor_are_refused_by_name(self, tmp_path):
        """loaders.py ``load_data``: the check that a dict's ``'y'`` is a tensor dropped failed
        later on a list of labels (an AttributeError, no LoadError)."""
        with pytest.raises(LoadError, match="'y' must be a tensor of labels; got list"):
            load_data(_saved(tmp_path, {"x": torch.zeros(2, 3), "y": [0, 1]}))

    def test_a_one_tensor_tuple_has_no_labels(self, tmp_path):
        """loaders.py ``load_data``: ``obj[1] if len(obj) == 2 else None`` as ``obj[-1]``
        read a one-tensor tuple's inputs as its own labels."""
        x, y = load_data(_saved(tmp_path, (torch.ones(2, 3),)))
        assert y is None and x.tolist() == [[1.0] * 3] * 2


class TestKeywordData:
    def test_a_name_that_is_no_identifier_is_refused(self, tmp_path):
        """loaders.py ``_keyword_data``: the ``isidentifier`` check dropped took an array named
        ``input-ids`` (no Python keyword) as a keyword input."""
        with pytest.raises(LoadError, match="is no keyword argument name"):
            load_data(_saved(tmp_path, {"input-ids": torch.zeros(2, 3)}))

    def test_an_empty_entry_is_refused(self, tmp_path):
        """loaders.py ``_keyword_data``: ``t.dim() == 0 or t.shape[0] == 0`` as ``t.dim() ==
        0`` took an entry of no rows beside others."""
        with pytest.raises(LoadError, match="input 'mask' holds no inputs"):
            load_data(_saved(tmp_path, {"ids": torch.zeros(2, 3, dtype=torch.long),
                                        "mask": torch.zeros(0, 3)}))

    def test_a_complex_entry_is_refused(self, tmp_path):
        """loaders.py ``_keyword_data``: the complex refusal dropped cast a complex entry to
        float32, dropping its imaginary part with only a warning."""
        with pytest.raises(LoadError, match="input 'z' must hold real numbers"):
            load_data(_saved(tmp_path, {"z": torch.ones(2, 3, dtype=torch.complex64)}))

    def test_labels_are_checked_and_int64(self, tmp_path):
        """loaders.py ``_keyword_data``: the labels' ``label_problem`` check dropped took
        labels of the wrong count; ``y.long()`` dropped gave int32 labels as int32."""
        ids = torch.zeros(3, 2, dtype=torch.long)
        with pytest.raises(LoadError, match="labels 'y' must be 1-D with one per input \\(3\\)"):
            load_data(_saved(tmp_path, {"ids": ids, "y": torch.zeros(2, dtype=torch.long)}))
        _, y = load_data(_saved(tmp_path, {"ids": ids, "y": torch.arange(3, dtype=torch.int32)}))
        assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2]


class TestLabelProblem:
    def test_one_label_per_input(self):
        """loaders.py ``label_problem``: the ``y.shape[0] != n`` check dropped took 2 labels
        for 3 inputs."""
        assert "one per input (3)" in label_problem(torch.zeros(2, dtype=torch.long), 3)
        assert label_problem(torch.zeros(3, dtype=torch.long), 3) is None

    def test_bool_labels_are_no_class_indices(self):
        """loaders.py ``label_problem``: ``y.dtype == torch.bool`` dropped took booleans for
        class indices."""
        assert "integer class indices" in label_problem(torch.ones(2, dtype=torch.bool), 2)

    def test_sparse_labels_are_refused(self):
        """loaders.py ``label_problem``: the layout check dropped passed a sparse tensor on to
        ``min()``, which torch refuses for it."""
        y = torch.tensor([0, 1]).to_sparse()
        assert "dense" in label_problem(y, 2)

    def test_no_labels_for_no_inputs_is_no_problem(self):
        """loaders.py ``label_problem``: ``y.numel() and`` dropped took ``min()`` of an empty
        tensor, which raises."""
        assert label_problem(torch.zeros(0, dtype=torch.long), 0) is None

    @pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32])
    def test_wide_unsigned_labels_are_read(self, dtype):
        """loaders.py ``label_problem``: the cast of uint16 / uint32 to int64 dropped called
        ``min()``, which torch lacks for them."""
        assert label_problem(torch.tensor([0, 3], dtype=dtype), 2) is None


# ---------------------------------------------------------------------------------------------
# cimsim/mapping/loaders.py: models


def _export(model, x):
    """``torch.export`` with a dynamic batch."""
    return torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))


def _train_mode_linear() -> nn.Module:
    """A factory's model as built: in training mode."""
    return nn.Linear(3, 2)


_BUILT = []


def _counted_double_linear() -> nn.Module:
    """A float64 model, each build counted."""
    _BUILT.append(1)
    return nn.Linear(3, 2, dtype=torch.float64)


class _DoubleKeywordNet(nn.Module):
    """Token ids through a float64 embedding, a float input through a float64 Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 2, dtype=torch.float64)
        self.lin = nn.Linear(2, 2, dtype=torch.float64)

    def forward(self, ids, scale):
        return self.emb(ids).sum(1) + self.lin(scale)


_CHECKPOINT = {"epoch": 1, "model": {}, "optimizer": {}, "loss": [0.5], "run": {}}


class TestLoadModel:
    def test_a_pt2_file_whose_name_holds_a_colon_loads(self, tmp_path):
        """loaders.py ``_model_from_spec``: ``":" in spec and not Path(spec).exists()`` as
        ``":" in spec`` read an existing ``net:v1.pt2`` as ``module:function``."""
        torch.manual_seed(0)
        net = nn.Linear(3, 2).eval()
        x = torch.randn(2, 3)
        path = tmp_path / "net:v1.pt2"
        torch.export.save(_export(net, x), path)
        model = load_model(str(path), example=x)
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)

    def test_a_pt2_with_a_zero_d_input_beside_a_dynamic_batch_loads(self, tmp_path):
        """loaders.py ``_check_dynamic_batch``: ``len(shape) and`` dropped read the first
        dimension of a 0-d input (a scalar temperature beside the batch): an IndexError."""

        class Tempered(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(3, 2)

            def forward(self, x, t):
                return self.lin(x) * t

        torch.manual_seed(0)
        net, x, t = Tempered().eval(), torch.randn(2, 3), torch.tensor(2.0)
        ep = torch.export.export(net, (x, t), dynamic_shapes=(
            {0: torch.export.Dim("batch")}, None))
        path = tmp_path / "m.pt2"
        torch.export.save(ep, path)
        model = load_model(str(path))
        torch.testing.assert_close(model(x, t), net(x, t), rtol=0, atol=0)

    def test_a_train_runs_folder_is_named_as_one(self, tmp_path):
        """loaders.py ``_model_from_spec``: the check of a folder's ``checkpoint.pt`` dropped
        called a `cimsim train` output folder only "a folder"."""
        torch.save(_CHECKPOINT, tmp_path / "checkpoint.pt")
        with pytest.raises(LoadError, match="a `cimsim train` checkpoint"):
            load_model(str(tmp_path))

    @pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
    def test_a_torchscript_model_refusing_the_example_says_so(self, tmp_path):
        """loaders.py ``_model_from_spec``: the float run on the example before the conversion
        dropped said "could not be converted" of a model that is fine, given inputs of the
        wrong width."""
        if loaders.torchscript_converter() is None:
            pytest.skip("this torch has no TorchScript converter")
        path = tmp_path / "m.ts"
        torch.jit.trace(nn.Linear(3, 2).eval(), (torch.zeros(2, 3),)).save(str(path))
        with pytest.raises(LoadError, match=r"cannot run on the data's inputs of shape \(2, 5\)"):
            load_model(str(path), example=torch.zeros(2, 5))

    @pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
    def test_a_torchscript_model_without_an_example_says_it_needs_one(self, tmp_path):
        """loaders.py ``_model_from_spec``: the ``example is None`` refusal dropped ran the
        conversion on no inputs (an AttributeError of ``None.shape``, no LoadError)."""
        path = tmp_path / "m.ts"
        torch.jit.trace(nn.Linear(3, 2).eval(), (torch.zeros(2, 3),)).save(str(path))
        with pytest.raises(LoadError, match="converting a TorchScript model needs example"):
            load_model(str(path))

    def test_a_factorys_model_is_in_eval_mode(self):
        """loaders.py ``_model_from_factory``: ``return model.eval()`` as ``return model``
        left a factory's model in training mode (dropout random, batch norm on each batch)."""
        model = load_model(f"{__name__}:_train_mode_linear")
        assert model.training is False

    def test_a_factory_returning_no_module_is_refused(self):
        """loaders.py ``_model_from_factory``: the ``isinstance(model, nn.Module)`` check
        dropped failed in ``.eval()`` of a dict (an AttributeError, no LoadError)."""
        with pytest.raises(LoadError, match="returned dict, not a torch nn.Module"):
            load_model("builtins:dict")

    def test_a_value_that_is_not_callable_is_named_so(self):
        """loaders.py ``_model_from_factory``: ``if not callable(fn)`` as ``if fn is None``
        called ``math:pi`` "not a model factory ... needs arguments"."""
        with pytest.raises(LoadError, match="'math' has no callable 'pi'"):
            load_model("math:pi")

    def test_a_factory_file_in_a_folder_with_a_colon_loads(self, tmp_path, monkeypatch):
        """loaders.py ``_model_from_factory``: ``spec.rpartition(":")`` as ``.partition``
        split ``folder:x/file.py:make`` at the folder's colon."""
        name = "cimsim_round2_colon_factory"
        folder = tmp_path / "a:b"
        folder.mkdir()
        (folder / f"{name}.py").write_text(
            "from torch import nn\n\ndef make():\n    return nn.Linear(2, 1)\n")
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        try:
            model = load_model(f"{folder / name}.py:make")
        finally:
            sys.modules.pop(name, None)
        assert isinstance(model, nn.Linear) and model.in_features == 2

    def test_a_float64_factory_is_built_once_for_float32_data(self, monkeypatch):
        """loaders.py ``load_model_for``: the floating data's own path (``_floats_for``)
        dropped built a model that refuses float32 inputs twice (once per dtype tried)."""
        monkeypatch.setattr(sys.modules[__name__], "_BUILT", [])
        model, x = loaders.load_model_for(f"{__name__}:_counted_double_linear",
                                          torch.zeros(2, 3))
        assert x.dtype == torch.float64 and model.weight.dtype == torch.float64
        assert _BUILT == [1]

    def test_float64_keyword_inputs_cast_only_their_floats(self):
        """loaders.py ``load_model_for``: the cast of keyword inputs to the weights' dtype
        applied to the integer entries too made token ids float64, which the embedding
        refuses."""
        x = {"ids": torch.tensor([[1, 2], [3, 4]]), "scale": torch.ones(2, 2)}
        _, got = loaders.load_model_for(f"{__name__}:_DoubleKeywordNet", x)
        assert (got["ids"].dtype, got["scale"].dtype) == (torch.int64, torch.float64)

    def test_integer_data_refused_alike_as_floats_is_said_once(self):
        """loaders.py ``load_model_for``: the ``str(as_float) == str(as_int)`` re-raise
        dropped said a factory's one failure twice ("...; as int64 (token ids): ...")."""
        with pytest.raises(LoadError) as info:
            loaders.load_model_for("math:pi", torch.zeros(2, 3, dtype=torch.long))
        assert str(info.value) == "'math' has no callable 'pi'"

    def test_a_damaged_pt2_leaves_the_export_logger_as_it_was(self, tmp_path, monkeypatch):
        """loaders.py ``_load_export``: ``export_log.disabled = was_disabled`` as ``= False``
        switched on a logger the user had switched off."""
        log = logging.getLogger("torch.export")
        monkeypatch.setattr(log, "disabled", True)
        path = tmp_path / "bad.pt2"
        path.write_bytes(b"not a zip")
        with pytest.raises(LoadError, match="not a torch.export archive"):
            load_model(str(path))
        assert log.disabled is True


class TestTrainCheckpoint:
    @pytest.mark.parametrize("key, value", [("loss", torch.zeros(1)), ("run", "abc"),
                                            ("optimizer", [1])])
    def test_each_part_must_have_its_type(self, key, value):
        """loaders.py ``is_train_checkpoint``: the ``isinstance`` check of ``loss`` (a list),
        ``run`` or ``optimizer`` (mappings) dropped took another tool's checkpoint with the
        same names for a `cimsim train` one."""
        assert is_train_checkpoint(_CHECKPOINT)
        assert not is_train_checkpoint({**_CHECKPOINT, key: value})

    def test_a_state_dict_is_a_non_empty_mapping_of_names(self):
        """loaders.py ``_is_state_dict``: ``bool(obj) and`` dropped called an empty dict a
        state_dict; ``isinstance(k, str)`` dropped called one keyed by numbers one."""
        assert loaders._is_state_dict({"w": torch.zeros(1)})
        assert not loaders._is_state_dict({})
        assert not loaders._is_state_dict({1: torch.zeros(1)})


class TestImportUserModule:
    def test_the_folder_of_a_file_is_added_once(self, tmp_path, monkeypatch):
        """loaders.py ``import_user_module``: the ``folder not in sys.path`` check dropped put
        a factory file's folder on ``sys.path`` again at every import."""
        name = "cimsim_round2_twice"
        (tmp_path / f"{name}.py").write_text("VALUE = 3\n")
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        try:
            for _ in range(2):
                assert import_user_module(str(tmp_path / f"{name}.py")).VALUE == 3
        finally:
            sys.modules.pop(name, None)
        assert sys.path.count(str(tmp_path.resolve())) == 1


class TestMessages:
    def test_an_empty_message_is_told_by_its_type(self):
        """loaders.py ``_first_line``: an exception without a message gave its type name; as
        ``""`` the one-line error ended in nothing."""
        assert loaders._first_line(ValueError()) == "ValueError"

    def test_the_torchscript_interpreters_error_is_its_last_line_without_the_type(self):
        """loaders.py ``_first_line``: ``lines[-1]`` as ``lines[1]`` gave the interpreter's
        traceback line; the ``re.sub`` of ``...Error: `` dropped repeated the type."""
        exc = RuntimeError("The following operation failed in the TorchScript interpreter.\n"
                           "Traceback of TorchScript (most recent call last):\n"
                           "  File 'x', line 1\n"
                           "RuntimeError: shapes do not match")
        assert loaders._first_line(exc) == "shapes do not match"

    def test_several_unknown_keywords_are_named_with_are(self):
        """loaders.py ``_check_keyword_names``: ``'is' if len(unknown) == 1`` as ``if
        len(unknown)`` said "'a', 'b' is no keyword input"."""

        class Net(nn.Module):
            def forward(self, input_ids):
                return input_ids

        x = {"a": torch.zeros(1), "b": torch.zeros(1)}
        with pytest.raises(LoadError, match="'a', 'b' are no keyword input of net "
                                            r"\(its forward takes: input_ids\)"):
            loaders._check_keyword_names("net", Net(), x)
        with pytest.raises(LoadError, match="'a' is no keyword input"):
            loaders._check_keyword_names("net", Net(), {"a": torch.zeros(1)})


def _dropouts(n: int) -> torch.fx.GraphModule:
    """A graph of ``n`` ``aten.dropout`` calls in training mode, one after the other."""
    graph = torch.fx.Graph()
    node = graph.placeholder("x")
    for _ in range(n):
        node = graph.create_node("call_function", torch.ops.aten.dropout.default,
                                 (node, 0.5, True), name="d")
    graph.output(node)
    return torch.fx.GraphModule(nn.Module(), graph)


class TestTrainingMode:
    def test_four_calls_are_named_without_an_ellipsis(self):
        """loaders.py ``_refuse_training_mode``: ``len(found) > 4`` as ``>= 4`` ended a list
        of all four calls in ", ..."."""
        with pytest.raises(LoadError, match=r"\(4 call\(s\) with training on: d \(dropout\), "
                           r"d_1 \(dropout\), d_2 \(dropout\), d_3 \(dropout\)\): its"):
            loaders._refuse_training_mode(None, _dropouts(4))

    def test_five_calls_name_the_first_four(self):
        """loaders.py ``_refuse_training_mode``: ``found[:4]`` as ``found[:5]`` named all
        five before the ", ..." that says more were left out."""
        with pytest.raises(LoadError) as info:
            loaders._refuse_training_mode(None, _dropouts(5))
        assert "d_3 (dropout), ...)" in str(info.value)
        assert "d_4" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# cimsim/mapping/loaders.py: graph rewriting


def _rebuilt(model: nn.Module, x: torch.Tensor) -> torch.fx.GraphModule:
    """``model`` exported with a dynamic batch, its weight calls rewritten as modules; the
    rewritten graph checked to compute what the model does."""
    gm = modules_from_graph(_export(model.eval(), x).module())
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=1e-6, atol=1e-6)
    return gm


def _linears(gm: nn.Module) -> list[nn.Linear]:
    return [m for m in gm.modules() if isinstance(m, nn.Linear)]


class _ScaledAddmm(nn.Module):
    """``addmm(b, x, W, alpha=2)``: twice the product, no Linear's computation."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(12.0).reshape(4, 3) / 10)
        self.bias = nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))

    def forward(self, x):
        return torch.addmm(self.bias, x, self.weight, alpha=2.0)


class _ScaledBiasAdd(nn.Module):
    """``x @ W.T`` plus twice a constant (``torch.add(..., alpha=2)``): no plain bias."""

    def __init__(self):
        super().__init__()
        self.lin = _Hand(torch.arange(12.0).reshape(3, 4) / 10)
        self.shift = nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))

    def forward(self, x):
        return torch.add(self.lin(x), self.shift, alpha=2.0)


class _OneRow(nn.Module):
    """``x @ W`` with a (1, 3) weight: one input feature, an outer product."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[1.0, 2.0, -3.0]]))

    def forward(self, x):
        return x @ self.weight


class _TransposeInt(nn.Module):
    """``x @ W.transpose(0, 1)``: a Linear's weight read through ``aten.transpose.int``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(12.0).reshape(3, 4) / 10)

    def forward(self, x):
        return x @ self.weight.transpose(0, 1)


class _ThriceTransposed(_TransposeInt):
    """``x @ W.t().t().t()``: the weight read through three transposes."""

    def forward(self, x):
        return x @ self.weight.t().t().t()


class _ProductAndGain(nn.Module):
    """``x @ W.T`` in a module holding a learned gain too: a functional weight, not a Linear
    (deploy leaves such a Python module as it is)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(12.0).reshape(3, 4) / 10)
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return (x @ self.weight.T) * self.scale


class _FunctionalConvs(nn.Module):
    """``F.conv2d`` and ``F.conv_transpose2d`` of its weights with every default left out: the
    export's calls hold two arguments."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(18.0).reshape(2, 1, 3, 3) / 10)
        self.tweight = nn.Parameter(torch.arange(8.0).reshape(2, 1, 2, 2) / 10)

    def forward(self, x):
        return F.conv_transpose2d(F.conv2d(x, self.weight), self.tweight)


class _DerivedWeight(nn.Module):
    """``F.linear`` of a weight computed from the parameter by three constant operations."""

    def __init__(self):
        super().__init__()
        self.v = nn.Parameter(torch.arange(12.0).reshape(3, 4) / 10)

    def forward(self, x):
        return F.linear(x, (self.v * 2 + 1) * 0.5)


class _ProductUsedTwice(nn.Module):
    """``(x @ W.T + c) * (x @ W.T)``, ``c`` a constant of another module: the product read
    twice, so the add is no bias of it."""

    def __init__(self):
        super().__init__()
        self.lin = _Hand(torch.arange(12.0).reshape(3, 4) / 10)
        self.shift = nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))

    def forward(self, x):
        y = self.lin(x)
        return (y + self.shift) * y


class _ThereAndBack(nn.Module):
    """``F.linear`` by the square weight, then by its transpose: two maps read from one
    module's weight."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(9.0).reshape(3, 3) / 10)

    def forward(self, x):
        return F.linear(F.linear(x, self.weight), self.weight.t())


class _Wrapper(nn.Module):
    """Calls its child Linear's weights through ``F.linear`` in its own forward."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 3)

    def forward(self, x):
        return F.linear(x, self.inner.weight, self.inner.bias)


class TestModulesFromGraph:
    def test_a_second_map_of_a_weight_gets_its_own_module(self):
        """loaders.py ``_original_place``: ``installed[path] == _weight_source(node)`` dropped
        gave the transposed weight's call the module installed for the weight itself (the
        graph computed ``W`` twice)."""
        torch.manual_seed(0)
        gm = _rebuilt(nn.Sequential(_ThereAndBack()), torch.randn(2, 3))
        assert len(_linears(gm)) == 2

    def test_a_weight_called_by_another_module_takes_its_holders_name(self):
        """loaders.py ``_original_place``: the reset of a path whose class is not the rebuilt
        one dropped named ``F.linear(x, self.inner.weight, ...)`` by the calling module, which
        holds a child, and so gave it a generated name instead of ``0.inner``."""
        torch.manual_seed(0)
        gm = _rebuilt(nn.Sequential(_Wrapper()), torch.randn(2, 4))
        assert [n for n, m in gm.named_modules() if isinstance(m, nn.Linear)] == ["0.inner"]

    def test_a_product_read_twice_keeps_its_add(self):
        """loaders.py ``_with_added_bias``: ``len(users) != 1`` as ``< 1`` folded the add of
        a product that has another reader, and erasing the product then failed."""
        gm = _rebuilt(_ProductUsedTwice(), torch.ones(2, 4))
        (layer,) = _linears(gm)
        assert layer.bias is None

    def test_a_weight_three_operations_deep_is_folded(self):
        """loaders.py ``_tensor``: ``depth < 32`` as ``depth < 2`` refused a weight computed
        by three constant operations as "computed from the model's inputs"."""
        gm = _rebuilt(nn.Sequential(_DerivedWeight()), torch.ones(2, 4))
        (layer,) = _linears(gm)
        want = (torch.arange(12.0).reshape(3, 4) / 10 * 2 + 1) * 0.5
        assert torch.equal(layer.weight.detach(), want)

    def test_convolutions_without_their_defaults_become_modules(self):
        """loaders.py ``_conv_args``: ``stride or 1`` as ``stride``, ``groups or 1`` as
        ``groups`` and ``out_padding or 0`` dropped built the modules of calls that leave the
        defaults out with None (a TypeError, or torch's refusal of it)."""
        gm = _rebuilt(_FunctionalConvs(), torch.ones(2, 1, 5, 5))
        conv, tconv = gm.get_submodule("cimsim_0_conv2d"), gm.get_submodule(
            "cimsim_1_conv_transpose2d")
        assert isinstance(conv, nn.Conv2d) and isinstance(tconv, nn.ConvTranspose2d)
        assert (conv.stride, conv.groups, tconv.output_padding) == ((1, 1), 1, (0, 0))

    def test_a_scaled_addmm_stays_as_it_is(self):
        """loaders.py ``_product_args``: the ``not node.kwargs`` check of ``addmm`` dropped
        mapped ``addmm(b, x, W, alpha=2)`` as the plain Linear, computing half the product."""
        gm = _rebuilt(nn.Sequential(_ScaledAddmm()), torch.ones(2, 4))
        assert _linears(gm) == []

    def test_a_scaled_add_is_no_bias(self):
        """loaders.py ``_with_added_bias``: the ``add.kwargs`` check dropped folded ``add(y, b,
        alpha=2)`` as the bias ``b``, computing half the shift."""
        gm = _rebuilt(_ScaledBiasAdd(), torch.ones(2, 4))
        (layer,) = _linears(gm)
        assert layer.bias is None

    def test_a_one_row_weight_is_no_linear(self):
        """loaders.py ``_product_linear``: ``w.shape[0] < 2`` as ``< 1`` mapped a (1, n)
        weight's outer product as a Linear of one input, which deploy refuses for the same
        module of a Python model (``affine_source``)."""
        model = nn.Sequential(_OneRow())
        assert affine_source(model[0]) is None
        gm = _rebuilt(model, torch.tensor([[1.0], [2.0]]))
        assert _linears(gm) == []

    def test_a_weight_read_through_transpose_is_a_linear(self):
        """loaders.py ``_weight_holder_path``: ``aten.transpose.int`` dropped from the
        transposes looked through left ``x @ W.transpose(0, 1)`` unmapped."""
        gm = _rebuilt(nn.Sequential(_TransposeInt()), torch.ones(2, 4))
        (layer,) = _linears(gm)
        assert torch.equal(layer.weight.detach(), torch.arange(12.0).reshape(3, 4) / 10)

    def test_a_weight_read_through_three_transposes_is_a_linear(self):
        """loaders.py ``_weight_holder_path``: ``range(4)`` as ``range(1)`` looked through one
        transpose only, leaving ``x @ W.t().t().t()`` unmapped."""
        gm = _rebuilt(nn.Sequential(_ThriceTransposed()), torch.ones(2, 4))
        (layer,) = _linears(gm)
        assert torch.equal(layer.weight.detach(), torch.arange(12.0).reshape(3, 4) / 10)

    def test_no_dead_read_of_a_mapped_weight_is_left(self):
        """loaders.py ``_modules_from_graph``: ``eliminate_dead_code()`` dropped left the
        replaced product's ``W.T`` in the graph, a read of the mapped layer's weight that
        deploy refuses (WeightReadError) at calibration."""
        torch.manual_seed(0)
        model = nn.Sequential(_TransposeInt(), nn.ReLU(), nn.Linear(3, 2))
        x = torch.randn(4, 4)
        gm = _rebuilt(model, x)
        assert [n.op for n in gm.graph.nodes if n.op in ("get_attr", "call_function")] == [
            "call_function"]  # the relu
        sim = cimsim.deploy(gm, cimsim.load_chip("ideal"), x)
        assert list(sim.sim_layers) == ["0", "2"]

    def test_the_rewriting_leaves_the_global_random_stream(self):
        """loaders.py ``modules_from_graph``: ``torch.random.fork_rng`` dropped let the
        rebuilt modules' default initialisation move the caller's random stream."""
        gm = _export(nn.Sequential(nn.Linear(4, 3)).eval(), torch.ones(2, 4)).module()
        torch.manual_seed(7)
        want = torch.rand(3)
        torch.manual_seed(7)
        modules_from_graph(gm)
        assert torch.equal(torch.rand(3), want)

    def test_the_rewritten_graph_switches_modes(self):
        """loaders.py ``_modules_from_graph``: the ``gm.eval`` rebinding dropped left torch's
        exported module's ``eval()``, which refuses to run."""
        gm = modules_from_graph(_export(nn.Sequential(nn.Linear(4, 3)).eval(),
                                        torch.ones(2, 4)).module())
        gm.train()
        assert gm.get_submodule("0").training is True
        gm.eval()
        assert gm.get_submodule("0").training is False

    def test_a_cell_with_only_the_hidden_bias_gets_a_zero_input_bias(self):
        """loaders.py ``_cell_for``: the missing ``b_ih`` as ``zeros_like`` changed to
        ``ones_like`` added one to every gate."""
        w_ih, w_hh = torch.arange(6.0).reshape(3, 2) / 10, torch.arange(9.0).reshape(3, 3) / 10
        root = nn.Module()
        for name, t in (("w_ih", w_ih), ("w_hh", w_hh), ("b_hh", torch.ones(3))):
            root.register_buffer(name, t)
        graph = torch.fx.Graph()
        x, h = graph.placeholder("x"), graph.placeholder("h")
        args = (x, h, graph.get_attr("w_ih"), graph.get_attr("w_hh"), None,
                graph.get_attr("b_hh"))
        node = graph.call_function(torch.ops.aten.rnn_tanh_cell.default, args)
        graph.output(node)
        cell = loaders._cell_for(torch.fx.GraphModule(root, graph), node, nn.RNNCell)
        assert torch.equal(cell.bias_ih.detach(), torch.zeros(3))
        assert torch.equal(cell.bias_hh.detach(), torch.ones(3))

    def test_a_product_in_a_module_holding_more_is_no_linear(self):
        """loaders.py ``_weight_holder_path``: a holder's own parameters allowed beyond
        ``{"weight", "bias"}`` mapped the product of a module that also holds a gain."""
        gm = _rebuilt(nn.Sequential(_ProductAndGain()), torch.ones(2, 4))
        assert _linears(gm) == []

    @pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")
    def test_a_one_layer_lstm_gets_no_dropout(self):
        """loaders.py ``_recurrent_for``: ``dropout=... if num_layers > 1 else 0.0`` as the
        call's dropout gave a one-layer LSTM a dropout, which torch warns about and never
        applies (between layers only)."""
        torch.manual_seed(0)
        with pytest.warns(UserWarning, match="dropout"):
            lstm = nn.LSTM(3, 2, num_layers=1, dropout=0.5)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = lstm

            def forward(self, x):
                return self.lstm(x)[0]

        x = torch.randn(2, 4, 3)
        gm = modules_from_graph(torch.export.export(Net().eval(), (x,)).module())
        (layer,) = [m for m in gm.modules() if isinstance(m, nn.LSTM)]
        assert layer.dropout == 0.0


class _BiasAfterRelu(nn.Module):
    """``relu(x @ W.T) + b``: a weight-and-bias module whose bias is added after the
    activation, so the product alone is the Linear."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.arange(12.0).reshape(3, 4) / 10)
        self.bias = nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))

    def forward(self, x):
        return torch.relu(x @ self.weight.T) + self.bias


class _OwnBiasScaled(_BiasAfterRelu):
    """``x @ W.T + 2 b`` (``torch.add(..., alpha=2)``) of the module's own bias."""

    def forward(self, x):
        return torch.add(x @ self.weight.T, self.bias, alpha=2.0)


class TestProductHolderKeepsItsBias:
    """loaders.py ``_original_place``: the product of a module that holds ``weight`` and
    ``bias`` became an ``nn.Linear`` installed at the module's path, replacing it; where the
    graph still reads ``<path>.bias`` itself (added after an activation, or with a factor),
    the rewritten graph no longer compiled (RuntimeError: references nonexistent attribute
    bias). Fixed: the holder stays where the graph reads a tensor the new module lacks, and
    the product's Linear gets a name of its own."""

    @pytest.mark.parametrize("make", [_BiasAfterRelu, _OwnBiasScaled])
    def test_the_rewritten_graph_computes_the_model(self, make):
        model = nn.Sequential(make())
        gm = _rebuilt(model, torch.ones(2, 4))
        (linear,) = _linears(gm)
        assert linear.bias is None
        torch.testing.assert_close(linear.weight, model[0].weight, rtol=0, atol=0)
        name = next(n for n, m in gm.named_modules() if m is linear)
        assert name.startswith("cimsim_") and name != "0"


class TestConvertedGraphChecks:
    def test_the_freed_guard_checks_every_dimension_but_the_batch(self):
        """loaders.py ``_SampleShapeGuard.forward``: ``x.shape[1:]`` compared as
        ``x.shape[2:]`` let an input of other channels through."""
        guard = loaders._SampleShapeGuard((4, 10))
        guard(torch.zeros(3, 4, 10))
        with pytest.raises(ValueError, match=r"\(batch, 4, 10\); got \(3, 5, 10\)"):
            guard(torch.zeros(3, 5, 10))

    def test_a_graph_computing_other_values_is_told_apart(self):
        """loaders.py ``_computes_like``: ``rtol=1e-5, atol=1e-6`` loosened to 1e-1 took a
        graph 1e-3 off the scripted model's outputs for the same computation."""
        x = torch.ones(2, 3)
        assert loaders._computes_like(nn.Identity(), x, x.clone())
        assert not loaders._computes_like(nn.Identity(), x, x + 1e-3)


class _FakeConverter:
    """Stands for ``TS2EPConverter``: records the ``torch._export`` logger's level while it
    converts."""

    seen: list[int] = []

    def __init__(self, scripted, args):
        pass

    def convert(self):
        type(self).seen.append(logging.getLogger("torch._export").level)
        return "converted"


class TestTorchscriptConverter:
    def test_the_converter_runs_quiet_and_the_level_comes_back(self, monkeypatch):
        """loaders.py ``torchscript_converter``: ``setLevel(logging.ERROR)`` as ``WARNING``
        let the converter's warnings through; ``setLevel(level)`` as ``NOTSET`` lost the
        level the user had set."""
        converter = pytest.importorskip("torch._export.converter")
        monkeypatch.setattr(converter, "TS2EPConverter", _FakeConverter)
        monkeypatch.setattr(_FakeConverter, "seen", [])
        log = logging.getLogger("torch._export")
        monkeypatch.setattr(log, "level", logging.INFO)
        assert loaders.torchscript_converter()(None, ()) == "converted"
        assert _FakeConverter.seen == [logging.ERROR]
        assert log.level == logging.INFO


def _lifted(t: torch.Tensor, **buffers: torch.Tensor) -> torch.fx.GraphModule:
    """A converted graph's stand-in: ``lifted_tensor_0`` (``t``) read and returned, beside
    other ``buffers`` of the root."""
    root = nn.Module()
    root.register_buffer("lifted_tensor_0", t)
    graph = torch.fx.Graph()
    graph.output(graph.get_attr("lifted_tensor_0"))
    gm = torch.fx.GraphModule(root, graph)
    for name, value in buffers.items():  # (a GraphModule copies only what its graph reads)
        gm.register_buffer(name, value)
    return gm


class TestNamedAsScripted:
    def test_a_root_parameters_name_is_kept_as_lifted(self):
        """loaders.py ``_named_as_scripted``: the ``"." not in name`` skip dropped made a
        holder of the empty path for a root parameter (``add_module("")``: a KeyError)."""
        t = torch.ones(2)
        scripted = nn.Module()
        scripted.w = nn.Parameter(t)
        gm = loaders._named_as_scripted(_lifted(t), scripted)
        assert [n.target for n in gm.graph.nodes if n.op == "get_attr"] == ["lifted_tensor_0"]

    def test_a_path_through_a_tensor_is_kept_as_lifted(self):
        """loaders.py ``_named_as_scripted``: the ``break`` at a path part that is no module
        dropped went on into a tensor (``Tensor.add_module``: an AttributeError)."""
        t = torch.ones(2)
        scripted = nn.Module()
        scripted.a = nn.Module()
        scripted.a.b = nn.Module()
        scripted.a.b.w = nn.Parameter(t)
        gm = loaders._named_as_scripted(_lifted(t, a=torch.zeros(1)), scripted)
        assert [n.target for n in gm.graph.nodes if n.op == "get_attr"] == ["lifted_tensor_0"]


class TestWeightHolderPath:
    def test_a_recurrent_holder_with_another_parameter_is_none(self):
        """loaders.py ``_weight_holder_path``: the check that a recurrent call's holder holds
        only ``weight_ih_l0``-like names dropped named a module holding more by its path."""
        lstm = nn.LSTM(2, 3)
        root = nn.Module()
        root.r = nn.Module()
        for name in lstm._flat_weights_names:
            root.r.register_parameter(name, getattr(lstm, name))
        graph = torch.fx.Graph()
        x, h, c = (graph.placeholder(n) for n in ("x", "h", "c"))
        params = [graph.get_attr(f"r.{n}") for n in lstm._flat_weights_names]
        node = graph.call_function(torch.ops.aten.lstm.input,
                                   (x, [h, c], params, True, 1, 0.0, False, False, False))
        graph.output(node)
        gm = torch.fx.GraphModule(root, graph)
        assert loaders._weight_holder_path(gm, node) == "r"
        gm.r.register_parameter("gain", nn.Parameter(torch.ones(1)))
        assert loaders._weight_holder_path(gm, node) is None
