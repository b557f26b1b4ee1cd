"""Tests written for the survivors of a third, short hand-made mutation round over the model
and data loaders (cimsim/mapping/loaders.py), aimed at the checks a user's data files and
``module:function`` specs go through that the two earlier rounds left unpinned. Tiny files
under ``tmp_path``; each docstring names the line and the change it kills."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.mapping import loaders
from cimsim.mapping.loaders import (
    LoadError,
    import_user_module,
    label_problem,
    load_data,
    load_model_for,
)


class TestLoadDataFileShapes:
    def test_empty_npz_file_is_one_load_error(self, tmp_path):
        """loaders.py ``load_data``: ``EOFError`` dropped from the ``.npz`` reader's ``except``
        let an empty (0-byte) ``.npz`` escape as numpy's bare ``EOFError``."""
        p = tmp_path / "d.npz"
        p.write_bytes(b"")
        with pytest.raises(LoadError, match="not a readable .npz file"):
            load_data(p)

    def test_empty_tuple_is_refused_as_wrong_format(self, tmp_path):
        """loaders.py ``load_data``: ``1 <= len(obj) <= 2`` as ``0 <= len(obj) <= 2`` read
        ``obj[0]`` of an empty tuple: an IndexError instead of the format's LoadError."""
        p = tmp_path / "d.pt"
        torch.save((), p)
        with pytest.raises(LoadError, match="expected a tensor, an \\(x, y\\) tuple"):
            load_data(p)

    def test_zero_d_first_keyword_input_is_refused_by_name(self, tmp_path):
        """loaders.py ``_keyword_data``: ``or arrays[key].dim() == 0`` dropped read
        ``shape[0]`` of a 0-d counting entry (every entry of one row, so the first counts):
        an IndexError instead of the entry's LoadError."""
        p = tmp_path / "d.npz"
        np.savez(p, a=np.float32(1.0), b=np.ones((1, 3), np.float32))
        with pytest.raises(LoadError, match="input 'a' holds no inputs"):
            load_data(p)

    def test_dict_with_a_non_tensor_entry_is_refused_as_wrong_format(self, tmp_path):
        """loaders.py ``load_data``: ``not bad and`` dropped sent a dict holding a string
        beside a tensor to the keyword inputs' checks: an AttributeError on ``str.dim``."""
        p = tmp_path / "d.pt"
        torch.save({"a": torch.ones(2, 3), "note": "hello"}, p)
        with pytest.raises(LoadError, match="a dict of the model's keyword inputs"):
            load_data(p)

    def test_empty_uint64_x_is_said_to_hold_no_inputs(self, tmp_path):
        """loaders.py ``_as_tensor``: ``array.size == 0 or`` dropped took ``max()`` of an empty
        uint64 array: numpy's ValueError, reported as an unreadable .npz file instead of
        inputs that are missing."""
        p = tmp_path / "d.npz"
        np.savez(p, x=np.zeros((0, 3), np.uint64))
        with pytest.raises(LoadError, match="'x' holds no inputs"):
            load_data(p)

    def test_pair_with_a_non_tensor_second_item_is_refused_as_wrong_format(self, tmp_path):
        """loaders.py ``load_data``: the ``all(isinstance(t, torch.Tensor) ...)`` of a pair
        dropped took a string as the labels: an AttributeError on ``str.dim``."""
        p = tmp_path / "d.pt"
        torch.save((torch.ones(2, 3), "labels"), p)
        with pytest.raises(LoadError, match="expected a tensor, an \\(x, y\\) tuple"):
            load_data(p)

    def test_dict_whose_x_is_no_tensor_is_refused_as_wrong_format(self, tmp_path):
        """loaders.py ``load_data``: ``isinstance(obj.get("x"), torch.Tensor)`` as ``"x" in
        obj`` sent a string ``x`` to the inputs' checks: an AttributeError on ``str.layout``."""
        p = tmp_path / "d.pt"
        torch.save({"x": "inputs.csv"}, p)
        with pytest.raises(LoadError, match="a dict with 'x'"):
            load_data(p)


class TestLabelProblemDtypes:
    def test_complex_labels_are_not_class_indices(self):
        """loaders.py ``label_problem``: ``y.dtype.is_complex`` dropped from the dtype check
        sent complex labels to ``min()``: torch's NotImplementedError, not the problem."""
        problem = label_problem(torch.tensor([1 + 0j, 2 + 0j]), 2)
        assert problem is not None and "integer class indices" in problem

    def test_uint64_labels_are_read_as_int64(self):
        """loaders.py ``label_problem``: ``torch.uint64`` dropped from the cast to int64 called
        ``min()`` on a uint64 tensor, which torch does not implement (``run_sweep`` passes
        labels here as the user gave them)."""
        assert label_problem(torch.tensor([0, 3], dtype=torch.uint64), 2) is None


class TestImportUserModule:
    def test_a_missing_dependency_is_raised_without_a_second_import(self, tmp_path,
                                                                     monkeypatch):
        """loaders.py ``import_user_module``: ``exc.name != top or`` dropped retried a module
        found on ``sys.path`` whose own import of a missing package failed: its top-level code
        ran twice and the current folder was appended to ``sys.path``."""
        monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
        monkeypatch.chdir(tmp_path)
        runs = tmp_path / "runs.txt"
        (tmp_path / "cimsim_r3_needs_dep.py").write_text(
            f"open({str(runs)!r}, 'a').write('x')\n"
            "import cimsim_r3_no_such_dependency  # noqa\n")
        before = list(sys.path)
        try:
            with pytest.raises(ModuleNotFoundError, match="cimsim_r3_no_such_dependency"):
                import_user_module("cimsim_r3_needs_dep")
        finally:
            sys.modules.pop("cimsim_r3_needs_dep", None)
        assert runs.read_text() == "x"
        assert sys.path == before

    def test_a_package_folder_in_the_current_folder_is_found(self, tmp_path, monkeypatch):
        """loaders.py ``import_user_module``: ``or Path(top).is_dir()`` dropped found a
        ``module.py`` in the current folder but not a package folder (``pkg.models``)."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", [p for p in sys.path
                                          if p not in ("", ".", os.getcwd())])
        pkg = tmp_path / "cimsim_r3_pkg"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "models.py").write_text("VALUE = 7\n")
        try:
            assert import_user_module("cimsim_r3_pkg.models").VALUE == 7
        finally:
            sys.modules.pop("cimsim_r3_pkg.models", None)
            sys.modules.pop("cimsim_r3_pkg", None)

    def test_a_module_file_in_the_current_folder_is_found(self, tmp_path, monkeypatch):
        """loaders.py ``import_user_module``: ``Path(top + ".py").is_file() or`` dropped
        found a package folder in the current folder but not a ``module.py`` there."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", [p for p in sys.path
                                          if p not in ("", ".", os.getcwd())])
        (tmp_path / "cimsim_r3_cwdmod.py").write_text("VALUE = 5\n")
        try:
            assert import_user_module("cimsim_r3_cwdmod").VALUE == 5
        finally:
            sys.modules.pop("cimsim_r3_cwdmod", None)

    def test_a_missing_py_file_is_said_so_and_leaves_sys_path(self, tmp_path, monkeypatch):
        """loaders.py ``import_user_module``: the ``path.is_file()`` refusal dropped put the
        missing file's folder on ``sys.path`` and said "No module named ..." instead of
        naming the missing file."""
        monkeypatch.setattr(sys, "path", list(sys.path))
        before = list(sys.path)
        with pytest.raises(ImportError, match="no file"):
            import_user_module(str(tmp_path / "cimsim_r3_missing.py"))
        assert sys.path == before


class _RefusesBoth(nn.Module):
    """Refuses integer and floating inputs, each with its own message."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        raise ValueError("floats refused" if x.is_floating_point() else "ints refused")


class TestLoadModelForBothRefused:
    def test_message_gives_the_int64_error_itself(self, monkeypatch):
        """loaders.py ``load_model_for``: ``str(as_int).split(': ', 1)[-1]`` as ``[0]`` gave
        the int64 attempt's preamble (the spec and shapes) instead of its error."""
        mod = types.ModuleType("cimsim_r3_refuses")
        mod.build = _RefusesBoth
        monkeypatch.setitem(sys.modules, "cimsim_r3_refuses", mod)
        with pytest.raises(LoadError) as info:
            load_model_for("cimsim_r3_refuses:build", torch.tensor([[1, 2, 3], [4, 5, 6]]))
        msg = str(info.value)
        assert "ValueError: floats refused" in msg
        assert msg.endswith("; as int64 (token ids): ValueError: ints refused")


class _OneSampleOnly(nn.Module):
    """Runs on one input only: its view drops the batch dimension."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, features):
        return self.lin(features.view(3))


class _PositionalOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, *args):
        return self.lin(args[0])


class TestLoadModelForKeywordInputs:
    def _spec(self, monkeypatch, cls) -> str:
        mod = types.ModuleType("cimsim_r3_kw")
        mod.build = cls
        monkeypatch.setitem(sys.modules, "cimsim_r3_kw", mod)
        return "cimsim_r3_kw:build"

    def test_model_is_checked_on_two_rows(self, monkeypatch):
        """loaders.py ``load_model_for``: ``input_rows(x, 0, 2)`` as ``(x, 0, 1)`` checked
        keyword inputs on one row, taking a model that fails on every larger batch."""
        spec = self._spec(monkeypatch, _OneSampleOnly)
        with pytest.raises(LoadError, match="cannot run on the data's inputs"):
            load_model_for(spec, {"features": torch.ones(4, 3)})

    def test_a_forward_of_only_star_args_is_said_to_take_none(self, monkeypatch):
        """loaders.py ``_check_keyword_names``: ``or "none"`` dropped left the list of the
        forward's inputs empty ("its forward takes: )")."""
        spec = self._spec(monkeypatch, _PositionalOnly)
        with pytest.raises(LoadError, match=r"its forward takes: none\)"):
            load_model_for(spec, {"features": torch.ones(4, 3)})


class TestRefuseTrainingMode:
    def test_train_flag_given_as_keyword_is_found(self):
        """loaders.py ``_refuse_training_mode``: ``i < len(node.args)`` as ``<=`` read
        ``node.args[2]`` of a dropout whose ``train`` is a keyword: an IndexError instead of
        the training-mode refusal."""
        g = torch.fx.Graph()
        x = g.placeholder("x")
        out = g.call_function(torch.ops.aten.dropout.default, (x, 0.5), {"train": True})
        g.output(out)
        gm = torch.fx.GraphModule(nn.Module(), g)
        with pytest.raises(LoadError, match="recorded in training mode"):
            loaders._refuse_training_mode(None, gm)

    def test_an_omitted_training_argument_is_not_training(self):
        """loaders.py ``_refuse_training_mode``: ``value is True`` as ``value is not False``
        refused a call that leaves ``training`` to its default (False): ``aten.rrelu(x)``."""
        g = torch.fx.Graph()
        x = g.placeholder("x")
        g.output(g.call_function(torch.ops.aten.rrelu.default, (x,)))
        loaders._refuse_training_mode(None, torch.fx.GraphModule(nn.Module(), g))


class _TwoLinears(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)

    def forward(self, x):
        return self.b(self.a(x))


class _Reordered(nn.Module):
    """The converted graph's modules in another order, and one the scripted model lacks."""

    def __init__(self, src: _TwoLinears):
        super().__init__()
        self.extra = nn.Identity()
        self.b = src.b
        self.a = src.a

    def forward(self, x):
        return self.extra(self.b(self.a(x)))


def _lifted_graph(child: nn.Module, constant: torch.Tensor) -> torch.fx.GraphModule:
    """A converted graph as the exporter leaves it: module ``a`` = ``child`` called on the
    input, and ``constant`` lifted to a root buffer ``lifted_tensor_0``, both returned."""
    root = nn.Module()
    root.a = child
    root.register_buffer("lifted_tensor_0", constant)
    g = torch.fx.Graph()
    y = g.call_module("a", (g.placeholder("x"),))
    g.output((y, g.get_attr("lifted_tensor_0")))
    return torch.fx.GraphModule(root, g)


class TestNamedAsScriptedOrder:
    @pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
    def test_scripted_models_order_comes_first(self):
        """loaders.py ``_named_as_scripted``: ``order + rest`` as ``rest + order`` put the
        graph's own modules before the scripted model's, whose order deploy's layers follow."""
        src = _TwoLinears()
        gm = torch.fx.symbolic_trace(_Reordered(src))
        out = loaders._named_as_scripted(gm, torch.jit.script(src))
        assert list(out._modules) == ["a", "b", "extra"]

    @pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
    def test_a_name_taken_in_its_module_keeps_the_lifted_constant(self):
        """loaders.py ``_named_as_scripted``: ``or hasattr(holder, attr)`` dropped registered
        a lifted constant as a buffer under a name its module already holds (``a.weight`` of
        a Linear): torch's KeyError instead of keeping the converter's name."""
        src = _TwoLinears()
        gm = _lifted_graph(src.a, src.a.weight.data)
        out = loaders._named_as_scripted(gm, torch.jit.script(src))
        targets = [n.target for n in out.graph.nodes if n.op == "get_attr"]
        assert targets == ["lifted_tensor_0"]


class _Holder(nn.Module):
    """A module with a weight of its own beside a child module."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2, 2))
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x @ self.w)


class _Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _Holder()

    def forward(self, x):
        return self.a(x)


class TestNamedAsScriptedRealModule:
    @pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
    def test_a_module_with_children_gets_no_buffer(self):
        """loaders.py ``_named_as_scripted``: ``or next(holder.children(), None) is not
        None`` dropped registered the lifted constant as a buffer of a real module of the
        graph (one with children), changing that module."""
        src = _Outer()
        gm = _lifted_graph(nn.Sequential(nn.Identity()), src.a.w.data)
        out = loaders._named_as_scripted(gm, torch.jit.script(src))
        assert [n.target for n in out.graph.nodes if n.op == "get_attr"] == ["lifted_tensor_0"]
        assert not hasattr(out.a, "w")


class TestSparseKeywordInput:
    """loaders.py ``_keyword_data``: no layout check, unlike ``_checked_data`` (which says
    "allowed: a dense tensor (x.to_dense())") and ``label_problem``: a float sparse keyword
    input escaped as torch's multi-line NotImplementedError, an integer one was taken as it
    was (a real bug this round found, fixed: the same LoadError as a sparse 'x')."""

    def test_sparse_float_keyword_input_is_one_load_error(self, tmp_path):
        p = tmp_path / "d.pt"
        torch.save({"features": torch.ones(2, 3).to_sparse()}, p)
        with pytest.raises(LoadError, match=r"input 'features' is a torch.sparse_coo tensor; "
                                            r"allowed: a dense tensor \(features.to_dense\(\)\)"):
            load_data(p)

    def test_sparse_integer_keyword_input_is_one_load_error(self, tmp_path):
        p = tmp_path / "d.pt"
        torch.save({"input_ids": torch.ones(2, 3, dtype=torch.long).to_sparse()}, p)
        with pytest.raises(LoadError, match=r"input 'input_ids' is a torch.sparse_coo tensor"):
            load_data(p)
