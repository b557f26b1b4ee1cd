"""Tests from a second mutation round over the bundled models and their loaders, the work
records, the atomic writer and the HTML pieces: ``cimsim/models/_common.py``,
``models/digits_cnn.py``, ``models/imagenet.py``, ``models/resnet_digits.py``,
``cimsim/work.py``, ``cimsim/_atomic.py`` and ``cimsim/_html.py``.

Each test pins behaviour that a hand-made mutant of those files changed without any earlier
test noticing (a temporary file's pid read wrong, a stop on SIGTERM not deferred, an HTML
fragment left unescaped, a work record's default, a model's layer or initialisation); its
docstring names the location and the change it kills. All use toy modules, tiny frames and
fakes in place of signal handlers, and run in well under a second each.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import signal
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cimsim import _atomic, _html
from cimsim.errors import CimsimError, ConfigError
from cimsim.events import Events
from cimsim.models import _common, imagenet
from cimsim.models.digits_cnn import DigitsCNN, load_digits_cnn, train_digits_cnn
from cimsim.models.resnet_digits import BasicBlock as RDBasicBlock
from cimsim.models.resnet_digits import ResNetDigits, train_resnet_digits
from cimsim.work import Block, LayerWork, ModelWork

# the models seed and draw from torch's global generator; the caller's stream is kept
pytestmark = pytest.mark.usefixtures("own_torch_generator")


# ---------------------------------------------------------------------------------------------
# _atomic.py
# ---------------------------------------------------------------------------------------------
def _write_beside_leftover(tmp_path, name: str, leftover: str, mtime: float = 1e9) -> Path:
    """A temporary file ``leftover`` (last written at ``mtime``) beside the target ``name``,
    then ``name`` written; the leftover's path is returned (whether it survived is the test)."""
    path = tmp_path / name
    left = tmp_path / leftover
    left.write_text("x")
    os.utime(left, (mtime, mtime))
    _atomic.write_text(path, "data")
    assert path.read_text() == "data"
    return left


class TestRemoveOrphans:
    def test_a_pid_with_a_leading_zero_is_no_writers(self, tmp_path):
        """``_remove_orphans``: the pid pattern ``[1-9][0-9]{0,9}`` made ``[0-9]...``: an old
        ``.f.json.0999999999.tmp`` is no name a writer makes (``os.getpid()`` has no leading
        zero) and was removed as the leftover of the dead process 999999999."""
        assert _write_beside_leftover(tmp_path, "f.json", ".f.json.0999999999.tmp").exists()

    def test_a_name_with_glob_characters_is_matched_as_written(self, tmp_path):
        """``_remove_orphans``: ``glob.escape`` dropped: ``f[1].json``'s pattern matched
        ``.f1.json...`` and never the old leftover of ``f[1].json`` itself (999999999: no such
        process)."""
        assert not _write_beside_leftover(tmp_path, "f[1].json",
                                          ".f[1].json.999999999.tmp").exists()

    def test_a_pid_past_the_c_int_range_is_skipped_not_raised(self, tmp_path):
        """``_remove_orphans``: ``OverflowError`` left out of the suppressed errors: the old
        ``.f.json.9999999999.tmp`` (ten digits, past a C int) made ``os.kill`` raise, and a
        write that had succeeded failed."""
        assert _write_beside_leftover(tmp_path, "f.json", ".f.json.9999999999.tmp").exists()

    def test_a_dead_writers_file_under_an_hour_old_is_kept(self, tmp_path):
        """``_remove_orphans``: ``ORPHAN_AGE_S`` cut from an hour (to a minute): a 2-minute-old
        temporary file of a pid not seen here (another PID namespace) was removed."""
        assert _write_beside_leftover(tmp_path, "f.json", ".f.json.999999999.tmp",
                                      time.time() - 120).exists()


class TestWriteText:
    def test_utf8_bytes(self, tmp_path):
        """``write_text``: encoded other than UTF-8 (``—`` or ``µ`` lost)."""
        path = _atomic.write_text(tmp_path / "t.txt", "a\u2014\u00b5\n")
        assert path.read_bytes() == b"a\xe2\x80\x94\xc2\xb5\n"

class TestSignalsDeferred:
    def test_sigterm_is_held_until_the_block_ends(self):
        """``signals_deferred``: the signals ``(SIGINT, SIGTERM)`` cut to ``(SIGINT,)``: a
        SIGTERM during the block reached the handler at once, before the block's writes."""
        seen = []

        def mine(signum, _frame):
            seen.append(signum)

        previous = signal.signal(signal.SIGTERM, mine)
        try:
            with _atomic.signals_deferred():
                signal.raise_signal(signal.SIGTERM)
                assert seen == []
            assert seen == [signal.SIGTERM]
            assert signal.getsignal(signal.SIGTERM) is mine
        finally:
            signal.signal(signal.SIGTERM, previous)

    def test_of_two_stops_the_first_is_delivered(self):
        """``signals_deferred``: ``raise_signal(got[0])`` made ``got[-1]``: a SIGTERM then a
        SIGINT during the block ended in the later SIGINT's handler."""
        seen = []

        def mine(signum, _frame):
            seen.append(signum)

        saved = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with _atomic.signals_deferred():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGINT)
            assert seen == [signal.SIGTERM]
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    def test_a_handler_not_set_from_python_is_left_alone(self, monkeypatch):
        """``signals_deferred``: ``if previous is not None`` made ``if True``: a handler
        Python cannot see (``getsignal`` is None) was replaced, and "restored" as None."""
        calls = []
        monkeypatch.setattr(_atomic.signal, "getsignal", lambda sig: None)
        monkeypatch.setattr(_atomic.signal, "signal",
                            lambda sig, handler: calls.append(sig) or signal.SIG_DFL)
        with _atomic.signals_deferred():
            pass
        assert calls == []


class TestExclusiveLock:
    def test_a_dead_holders_pid_is_replaced_not_appended_to(self, tmp_path):
        """``exclusive_lock``: the ``seek(0); truncate()`` before the holder's pid is written
        removed: the lock file (opened for appending) left by a killed holder still said
        ``pid 1`` and got ``pid 1pid N``, and a refused run named that holder."""
        lock = tmp_path / ".lock"
        lock.write_text("pid 1")  # a holder killed before its release emptied the file
        with _atomic.exclusive_lock(lock, "sweep", "wait for it"):
            assert lock.read_text() == f"pid {os.getpid()}"
        assert lock.read_text() == ""


    def test_a_holder_that_wrote_no_pid_is_another_process(self, tmp_path):
        """``exclusive_lock``: the ``or "another process"`` fallback made ``""``: a lock
        held by a process that wrote no pid was reported as held by ``()``."""
        fcntl = pytest.importorskip("fcntl")
        lock = tmp_path / ".lock"
        with lock.open("a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                with pytest.raises(CimsimError, match=r"\(another process\); wait"):
                    with _atomic.exclusive_lock(lock, "sweep", "wait"):
                        pass
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

# ---------------------------------------------------------------------------------------------
# _html.py
# ---------------------------------------------------------------------------------------------
class TestPage:
    def test_the_whole_document_by_hand(self):
        """``page``: the page's own ``css`` put before the shared sheet (``{css}{_CSS}``: the
        shared rules won), the final newline or the ``<h1>`` dropped, the title unescaped."""
        text = _html.page("a<b", ["<p>x</p>", "<p>y</p>"], css="p{color:red}")
        assert text == ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>\n"
                        "<title>a&lt;b</title>\n"
                        f"<style>{_html._CSS}p{{color:red}}</style></head><body>\n"
                        "<h1>a&lt;b</h1>\n<p>x</p>\n<p>y</p>\n</body></html>\n")


class TestSmallPieces:
    def test_paragraph_breaks_between_its_escaped_lines(self):
        """``paragraph``: the lines joined by ``""`` instead of ``<br>``."""
        assert _html.paragraph("a<", "b") == "<p>a&lt;<br>b</p>"
        assert _html.paragraph() == "<p></p>"

    def test_items_of_strings_and_of_a_mapping(self):
        """``items``: a mapping taken for strings (``isinstance(..., Mapping)`` made False:
        the keys alone listed), its first entry dropped, its key unescaped."""
        assert _html.items(["a<", "b"]) == "<ul><li>a&lt;</li><li>b</li></ul>"
        assert _html.items({"k<": 1, "j": "v&"}) == (
            "<ul><li><b>k&lt;</b>: 1</li><li><b>j</b>: v&amp;</li></ul>")

    def test_key_values_escapes_the_formatted_value(self):
        """``key_values``: ``fmt(v)`` put in unescaped."""
        text = _html.key_values({"a<": 1}, fmt=lambda v: f"<{v}>")
        assert text == ("<div class='scroll'><table><tr><th>a&lt;</th><td>&lt;1&gt;</td>"
                        "</tr></table></div>")
        assert _html.key_values({"k": "v"}) == (  # ``str`` by default, not ``repr``
            "<div class='scroll'><table><tr><th>k</th><td>v</td></tr></table></div>")

    def test_collapsed_keeps_every_fragment(self):
        """``collapsed``: only the first fragment kept."""
        assert _html.collapsed("t", "<p>1</p>", "<p>2</p>") == (
            "<details><summary>t</summary><p>1</p><p>2</p></details>")

    def test_figure_is_standard_base64_with_an_escaped_alt(self):
        """``figure``: ``urlsafe_b64encode`` (``-_`` for ``+/``: a browser's data URI
        decoder rejects them) or the alt text unescaped."""
        png = bytes([0xFB, 0xEF, 0xFF])  # base64 "++//"
        assert _html.figure(png, "a'b") == (
            "<img alt='a&#x27;b' src='data:image/png;base64,++//'>")


class TestRows:
    def test_no_header_and_no_class_by_hand(self):
        """``rows``: an empty header ``[]`` given a ``<thead>`` (``if header is not None``),
        the first cell of a row a ``<td>`` (``i == 1``), a data cell left unescaped."""
        assert _html.rows([("a", "b<", "c")], header=[]) == (
            "<div class='scroll'><table><tbody><tr><th>a</th><td>b&lt;</td><td>c</td></tr>"
            "</tbody></table></div>")

    def test_header_cells_are_header_cells(self):
        """``rows``: the header's titles written as ``<td>``."""
        assert _html.rows([], header=["k"], css_class="s") == (
            "<div class='scroll'><table class='s'><thead><tr><th>k</th></tr></thead>"
            "<tbody></tbody></table></div>")


class TestTable:
    def test_a_whole_table_by_hand(self):
        """``table``: the rows written on one line (``"".join`` for ``"\\n".join``)."""
        text = _html.table(pd.DataFrame({"a": [1, 2]}))
        assert text == ("<div class='scroll'><table><thead><tr><th>a</th></tr></thead><tbody>\n"
                        "<tr><td>1</td></tr>\n<tr><td>2</td></tr>\n</tbody></table></div>")

    def test_the_header_is_escaped_and_breaks_after_underscores(self):
        """``table``: the column names put in unescaped."""
        text = _html.table(pd.DataFrame({"<a_b>": [1]}))
        assert "<thead><tr><th>&lt;a_<wbr>b&gt;</th></tr></thead>" in text

    def test_rows_without_classes_have_no_class_attribute(self):
        """``table``: ``class=''`` written for a row without a class (``if cls`` dropped)."""
        text = _html.table(pd.DataFrame({"a": [1]}))
        assert "<tr><td>1</td></tr>" in text and "class=''" not in text

    def test_one_class_per_row_is_required(self):
        """``table``: ``zip(..., strict=True)`` made lax: a short ``row_classes`` silently
        dropped the frame's last rows."""
        with pytest.raises(ValueError):
            _html.table(pd.DataFrame({"a": [1, 2]}), row_classes=["x"])

    def test_missing_values_of_every_kind(self):
        """``_is_missing``: pandas NA or a float NaN no longer missing (``str`` shown)."""
        frame = pd.DataFrame({"a": pd.array([None], dtype="Int64"), "b": [float("nan")],
                              "c": [None]}, dtype=object)
        frame["a"] = [pd.NA]
        text = _html.table(frame, lambda c, v: "X")
        assert text.count(f"<td>{_html.MISSING}</td>") == 3 and "X" not in text
        assert _html.MISSING == "\u2014"


# ---------------------------------------------------------------------------------------------
# work.py
# ---------------------------------------------------------------------------------------------
def _layer_work(**counts):
    return LayerWork(name="l", kind="matmul", events=Events({("adc", "convert", 4): 8}),
                     blocks=(), n_inputs=4, n_outputs=2, n_matrices=1, input_signed=False,
                     n_cells=8, n_arrays=1, **counts)


class TestLayerWork:
    def test_no_clipping_and_no_inputs_by_default(self):
        """``LayerWork``: the defaults of ``n_adc_clipped``, ``n_input_clipped`` or
        ``n_input_values`` made 1.0 (a layer built without them clipped one conversion)."""
        work = _layer_work()
        assert (work.n_adc_clipped, work.n_input_clipped, work.n_input_values) == (0, 0, 0)
        assert work.adc_clip_fraction == 0.0 and math.isnan(work.input_clip_fraction)

    def test_it_is_frozen(self):
        """``LayerWork``/``Block``: ``frozen=True`` dropped (a reader could change the
        counts the cost model and the report share)."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            _layer_work().n_arrays = 2  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            Block(layer=None, n_vectors=1.0).stage = 1  # type: ignore[arg-type,misc]


class TestModelWork:
    def test_defaults_frozen_and_repr(self):
        """``ModelWork``: ``t_s`` defaulting to 0.0 (a time where none is known), no other
        events, no digital layers; ``frozen=True`` dropped; the repr's fields swapped."""
        chip = types.SimpleNamespace(name="toy")
        work = ModelWork(layers=(_layer_work(), _layer_work()), n_inferences=3, chip=chip,
                         n_arrays_needed=7)
        assert work.t_s is None and work.digital == () and len(work.other_events) == 0
        assert repr(work) == "ModelWork(chip='toy', layers=2, inferences=3, arrays_needed=7)"
        with pytest.raises(dataclasses.FrozenInstanceError):
            work.n_inferences = 4  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# models/_common.py
# ---------------------------------------------------------------------------------------------
class TestDeterministicCpu:
    def test_inside_one_thread_deterministic_and_the_callers_stream_kept(self):
        """``deterministic_cpu``: ``use_deterministic_algorithms(True)`` or
        ``set_num_threads(1)`` removed, ``fork_rng`` made a plain block (the caller's random
        stream reset to the seed's), or the thread count not restored."""
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            before = torch.get_rng_state()
            with _common.deterministic_cpu(0):
                assert torch.are_deterministic_algorithms_enabled()
                assert torch.get_num_threads() == 1
                torch.rand(3)
            assert torch.equal(torch.get_rng_state(), before)
            assert torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(threads)


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


class TestFitClassifier:
    def test_refuses_a_zero_batch_and_a_bad_seed(self):
        """``fit_classifier``: the ``batch_size`` or ``seed`` check removed (``range(0, n,
        0)`` failed; a seed of 1.5 went on to torch)."""
        x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64)
        with pytest.raises(ConfigError, match="batch_size"):
            _common.fit_classifier(_tiny, x, y, seed=0, epochs=1, batch_size=0, lr=0.1)
        with pytest.raises(ConfigError, match="seed"):
            _common.fit_classifier(_tiny, x, y, seed=1.5, epochs=1, batch_size=2, lr=0.1)

    def test_returns_the_model_in_eval_mode(self):
        """``fit_classifier``: the closing ``model.eval()`` removed."""
        x, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
        model = _common.fit_classifier(_tiny, x, y, seed=0, epochs=1, batch_size=2, lr=0.1)
        assert not model.training

    def test_trains_in_training_mode_whatever_build_returns(self):
        """``fit_classifier``: ``model.train()`` removed: a ``build`` returning an eval-mode
        model trained with frozen BatchNorm statistics (no batch counted)."""
        x, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
        model = _common.fit_classifier(lambda: _tiny().eval(), x, y, seed=0, epochs=1,
                                       batch_size=2, lr=0.1)
        assert int(model[1].num_batches_tracked) == 2

    def test_each_step_uses_only_its_own_batchs_gradient(self):
        """``fit_classifier``: ``zero_grad`` removed (the second step used the sum of both
        batches' gradients): two batches of a 1-input linear model, compared bit for bit
        with the same Adam steps written out here."""
        def build():
            return nn.Linear(1, 2)

        x, y = torch.tensor([[1.0], [2.0], [3.0], [4.0]]), torch.tensor([0, 1, 1, 0])
        got = _common.fit_classifier(build, x, y, seed=3, epochs=1, batch_size=2, lr=0.1)
        with _common.deterministic_cpu(3):
            model = build()
            opt = torch.optim.Adam(model.parameters(), lr=0.1)
            order = torch.randperm(4, generator=torch.Generator().manual_seed(3))
            for start in (0, 2):
                idx = order[start:start + 2]
                opt.zero_grad()
                nn.CrossEntropyLoss()(model(x[idx]), y[idx]).backward()
                opt.step()
        assert torch.equal(got.weight, model.weight) and torch.equal(got.bias, model.bias)


class TestWeights:
    def test_floats_are_stored_as_float32_and_integers_read_as_int64(self, tmp_path):
        """``save_weights``: float tensors stored as float64; ``_read_state``: integer
        arrays read as float32 (``num_batches_tracked`` a float)."""
        model = _tiny()
        path = tmp_path / "w.npz"
        _common.save_weights(model, path)
        with np.load(path) as npz:
            assert npz["0.weight"].dtype == np.float32
            assert npz["1.num_batches_tracked"].dtype == np.int64
        state = _common._read_state(path)
        assert state["1.num_batches_tracked"].dtype == torch.int64
        assert state["0.weight"].dtype == torch.float32

    def test_a_pickled_array_is_refused(self, tmp_path):
        """``_read_state``: ``allow_pickle=True``: a weights file holding an object array
        (which unpickles, running code) was opened."""
        path = tmp_path / "w.npz"
        np.savez(path, bad=np.array([{"a": 1}], dtype=object))
        with pytest.raises(ValueError, match="allow_pickle"):
            _common._read_state(path)

    def test_load_state_is_strict_and_leaves_the_model_in_eval_mode(self, tmp_path):
        """``load_state``: ``strict=False`` (a file missing a layer loaded silently) or the
        ``model.eval()`` dropped."""
        path = tmp_path / "w.npz"
        _common.save_weights(nn.Sequential(nn.Linear(2, 2)), path)
        with pytest.raises(RuntimeError, match="Missing key"):
            _common.load_state(_tiny(), path, "unused.npz")
        model = nn.Sequential(nn.Linear(2, 2)).train()
        assert _common.load_state(model, path, "unused.npz") is model and not model.training


class TestEvaluate:
    def test_passes_the_batch_size_on_and_restores_the_mode(self, monkeypatch):
        """``evaluate``: ``batch_size`` not passed to ``accuracy`` or its default changed, or
        the model's training mode not restored."""
        seen = {}

        def fake(model, x, y, batch_size):
            seen["batch_size"], seen["training"] = batch_size, model.training
            return 0.5

        monkeypatch.setattr(_common, "accuracy", fake)
        model = _tiny().train()
        assert _common.evaluate(model, torch.zeros(2, 2), torch.zeros(2), batch_size=7) == 0.5
        assert seen == {"batch_size": 7, "training": False} and model.training
        _common.evaluate(model, torch.zeros(2, 2), torch.zeros(2))
        assert seen["batch_size"] == 256  # the documented default


# ---------------------------------------------------------------------------------------------
# models/digits_cnn.py, models/resnet_digits.py
# ---------------------------------------------------------------------------------------------
class TestTrainingDefaults:
    def test_the_defaults_that_reproduce_the_bundled_weights(self):
        """``train_digits_cnn``/``train_resnet_digits``: a default changed (``epochs`` 40 or
        30, ``test_fraction`` 0.25...): the documented script no longer reproduces the
        bundled ``.npz``."""
        digits = inspect.signature(train_digits_cnn).parameters
        assert {k: p.default for k, p in digits.items()} == {
            "seed": 0, "epochs": 40, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0,
            "test_fraction": 0.25, "split_seed": 0}
        resnet = inspect.signature(train_resnet_digits).parameters
        assert {k: p.default for k, p in resnet.items()} == {
            "seed": 0, "epochs": 30, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4}


class TestDigitsCNN:
    def test_every_layer_has_a_bias_and_the_bundled_weights_load(self):
        """``DigitsCNN``: a convolution made ``bias=False``: 22,954 parameters no more, and
        the bundled ``digits_cnn.npz`` no longer loads (strict names)."""
        model = DigitsCNN()
        assert sum(p.numel() for p in model.parameters()) == 22_954
        assert all(m.bias is not None for m in model.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear)))
        assert not load_digits_cnn().training


class TestResNetDigits:
    @pytest.mark.parametrize("widths", [(4, 4), (4, 0, 4)])
    def test_bad_widths_are_a_config_error(self, widths):
        """``ResNetDigits``: the ``len(widths) != 3`` or the per-width check removed (a
        ValueError from unpacking, a zero-channel convolution)."""
        with pytest.raises(ConfigError, match="widths"):
            ResNetDigits(widths=widths)

    @pytest.mark.parametrize("field", ["upscale", "blocks"])
    def test_a_zero_upscale_or_block_count_is_refused(self, field):
        """``ResNetDigits``: the ``upscale``/``blocks`` checks removed."""
        with pytest.raises(ConfigError, match=field):
            ResNetDigits(**{field: 0})

    def test_upsamples_unless_the_factor_is_one(self):
        """``ResNetDigits``: ``upscale != 1`` made ``!= 2`` (the default model not upsampled);
        the head's 10 classes; the first convolution's ReLU inside a block dropped; the
        ``upscale`` attribute not kept; the head's average pooling made max pooling."""
        model = ResNetDigits(widths=(2, 2, 2), blocks=1)
        assert isinstance(model.stem[0], nn.Upsample) and model.stem[0].scale_factor == 2
        assert isinstance(ResNetDigits(upscale=1, widths=(2, 2, 2), blocks=1).stem[0],
                          nn.Identity)
        assert model.head[2].out_features == 10
        assert isinstance(model.stage1[0].relu1, nn.ReLU)
        assert model.upscale == 2
        assert isinstance(model.head[0], nn.AdaptiveAvgPool2d)
        names = [n for n, _ in model.stage1[0].named_children()]
        assert names == ["conv1", "bn1", "relu1", "conv2", "bn2", "shortcut", "relu2"]

    def test_bilinear_upsampling_and_bias_free_convolutions(self):
        """``ResNetDigits``: the stem's bilinear upsampling made nearest; a block's
        convolution given a bias (BatchNorm follows every one)."""
        model = ResNetDigits(widths=(2, 2, 2), blocks=1)
        assert model.stem[0].mode == "bilinear" and model.stem[0].align_corners is False
        assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))

    def test_a_block_applies_relu_between_its_convolutions(self):
        """``BasicBlock.forward``: ``relu1`` skipped (``bn1(conv1(x))`` fed on negative)."""
        block = RDBasicBlock(1, 1).eval()
        with torch.no_grad():
            block.conv1.weight.fill_(0.0)
            block.conv1.weight[0, 0, 1, 1] = -1.0  # conv1(x) = -x
            block.conv2.weight.fill_(0.0)
            block.conv2.weight[0, 0, 1, 1] = 1.0
        x = torch.ones(1, 1, 3, 3)
        # relu(-x) = 0, so the block is relu(0 + x) = x; without it, relu(-x + x) = 0
        torch.testing.assert_close(block(x), x, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# models/imagenet.py
# ---------------------------------------------------------------------------------------------
class TestMakeDivisible:
    def test_exactly_ninety_percent_is_not_bumped(self):
        """``_make_divisible``: ``new_v < 0.9 * v`` made ``<=``: 10 with divisor 9 rounds to
        9, exactly 90 %, which torchvision keeps (the mutant gave 18)."""
        assert imagenet._make_divisible(10, 9) == 9
        assert imagenet._make_divisible(3, 8) == 8  # never below the divisor
        assert imagenet._make_divisible(0.0, 8) == 8  # (``max(0, ...)`` gave 0)


class TestMobileNetV2:
    def test_no_expansion_convolution_at_ratio_one_and_same_padding(self):
        """``InvertedResidual``: the 1x1 expansion added at ``expand_ratio`` 1;
        ``_conv_bn_relu6``: padding 0 instead of ``(kernel - 1) // 2``, ReLU for ReLU6."""
        block = imagenet.InvertedResidual(4, 4, 1, 1)
        assert len(block.conv) == 3 and block.conv[0][0].groups == 4
        unit = imagenet._conv_bn_relu6(1, 1, kernel=3, stride=2)
        assert unit[0].padding == (1, 1) and unit[0].stride == (2, 2)
        assert isinstance(unit[2], nn.ReLU6)

    def test_classifier_dropout_and_linear_initialisation(self):
        """``MobileNetV2``: dropout 0.2 changed; the head's ``normal_(0, 0.01)`` removed
        (torch's uniform default, std about 0.6 / sqrt(in))."""
        model = imagenet.mobilenet_v2(4, width_mult=0.1)
        assert model.classifier[0].p == 0.2 and not model.training
        weight = model.classifier[1].weight.detach()
        assert 0.005 < float(weight.std()) < 0.015 and not weight.abs().gt(0.1).any()


    def test_the_classifier_reads_the_average_of_the_features(self):
        """``MobileNetV2.forward``: average pooling made max pooling."""
        model = imagenet.mobilenet_v2(2, width_mult=0.1)
        x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # 2x2 out
        model.classifier = nn.Identity()  # the pooled features themselves
        with torch.no_grad():
            torch.testing.assert_close(model(x), model.features(x).mean((2, 3)), rtol=1e-4,
                                       atol=0.0)  # (the features are tiny here)


class TestResNet18:
    def test_layout_and_stem_pooling(self):
        """``ResNet18``: one block per stage (``range(2, blocks)``), the max-pool's stride
        1, a downsample where the shape is kept."""
        model = imagenet.resnet18(3, width=2)
        assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
        assert model.maxpool.stride == 2 and model.layer1[0].downsample is None
        assert model.layer2[0].downsample is not None
        assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert all(bool((m.weight == 1).all()) and bool((m.bias == 0).all()) for m in norms)

    def test_a_block_adds_its_shortcut(self):
        """``BasicBlock.forward`` (ImageNet): ``relu(out + identity)`` made ``relu(out)``."""
        block = imagenet.BasicBlock(1, 1).eval()
        with torch.no_grad():
            block.conv2.weight.zero_()
        x = torch.ones(1, 1, 3, 3)
        torch.testing.assert_close(block(x), x)


class TestViT:
    def test_class_token_heads_and_seed(self):
        """``ViT``: the class token left at zero (its ``normal_`` removed), one head instead
        of DeiT-Ti's 3, ``vit_tiny`` unseeded (two calls, two models), the LayerNorms' eps or
        the position embeddings' scale 0.02 changed."""
        a = imagenet.vit_tiny(3, image=16, depth=1, dim=6, seed=1)
        b = imagenet.vit_tiny(3, image=16, depth=1, dim=6, seed=1)
        assert a.cls_token.abs().sum() > 0 and a.blocks[0].attn.num_heads == 3
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(),
                                                       strict=True))
        assert a.pos_embed.shape == (1, 2, 6)  # one patch and the class token
        assert a.blocks[0].norm1.eps == 1e-6 and a.norm.eps == 1e-6
        assert 0 < float(a.pos_embed.detach().abs().max()) < 0.1  # std 0.02

    def test_the_head_reads_the_normalised_class_token(self):
        """``ViT.forward``: the final LayerNorm skipped before the head. With no blocks the
        class token's output is ``head(norm(cls_token + pos_embed[0]))``, by hand."""
        vit = imagenet.vit_tiny(3, image=16, depth=0, dim=6, seed=2)
        with torch.no_grad():
            got = vit(torch.zeros(1, 3, 16, 16))
            want = vit.head(vit.norm(vit.cls_token[0, 0] + vit.pos_embed[0, 0]))
        torch.testing.assert_close(got[0], want)
