"""Tests from a third mutation round over the bundled models and their loading/training
helpers and the work records: ``cimsim/models/_common.py``, ``models/digits_cnn.py``,
``models/resnet_digits.py``, ``models/imagenet.py`` and ``cimsim/work.py``.

Each test pins behaviour that a hand-made mutant of those files changed without either earlier
round (``tests/test_mutants_models_work_atomic_html_round2.py``,
``tests/test_mutants_runner_models.py``) noticing: a training loop's last short batch or its
labels, the weights file's dtypes and its atomic write, a model's layer. Its docstring names
the location and the change it kills. The last four classes pin five real bugs found on the
way, fixed. Toy modules and tiny inputs throughout; no real
training.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from cimsim.errors import ConfigError
from cimsim.events import Events
from cimsim.models import _common, imagenet
from cimsim.models.resnet_digits import BasicBlock as RDBasicBlock
from cimsim.models.resnet_digits import ResNetDigits
from cimsim.work import Block, LayerWork
from tests.test_mutants_runner_models import _Recorder

# the models seed and draw from torch's global generator; the caller's stream is kept
pytestmark = pytest.mark.usefixtures("own_torch_generator")


# ---------------------------------------------------------------------------------------------
# models/_common.py: fit_classifier
# ---------------------------------------------------------------------------------------------
class TestFitClassifierBatches:
    def test_a_last_batch_of_one_sample_is_trained_on(self):
        """``fit_classifier``: ``range(0, n, batch_size)`` made ``range(0, n - 1, ...)``: with
        5 samples in batches of 4 the last batch (one sample) was never seen."""
        x, y = torch.arange(5.0)[:, None], torch.arange(5)
        model = _common.fit_classifier(_Recorder, x, y, seed=1, epochs=1, batch_size=4,
                                       lr=1e-3)
        assert [len(b) for b in model.seen] == [4, 1]
        assert sorted(sum(model.seen, [])) == [0, 1, 2, 3, 4]

    def test_each_batch_is_scored_against_its_own_labels(self, monkeypatch):
        """``fit_classifier``: the loss given ``y_train[order[:len(idx)]]`` instead of
        ``y_train[idx]`` (every batch scored against the first batch's labels). Each sample's
        label is its index here, so the targets the loss sees must equal the inputs."""
        pairs = []
        real = nn.CrossEntropyLoss

        class Recording(real):
            def forward(self, logits, target):
                pairs.append(target.tolist())
                return super().forward(logits, target)

        monkeypatch.setattr(nn, "CrossEntropyLoss", Recording)
        x, y = torch.arange(6.0)[:, None], torch.arange(6)
        model = _common.fit_classifier(_Recorder, x, y, seed=2, epochs=2, batch_size=2,
                                       lr=1e-3)
        assert pairs == model.seen and len(pairs) == 6

    def test_the_logged_loss_is_the_mean_over_samples(self, caplog):
        """``fit_classifier``: ``total += loss.item() * idx.numel()`` made ``+= loss.item()``
        (the logged epoch loss divided by the batch size once too often). A zero linear
        model scores ln 10 on every sample."""
        def build():
            model = nn.Linear(1, 10)
            nn.init.zeros_(model.weight)
            nn.init.zeros_(model.bias)
            return model

        x, y = torch.ones(4, 1), torch.arange(4)
        with caplog.at_level(logging.DEBUG, logger=_common.__name__):
            _common.fit_classifier(build, x, y, seed=0, epochs=1, batch_size=4, lr=1e-3)
        assert f"epoch 1/1: train loss {math.log(10):.4f}" in caplog.messages


# ---------------------------------------------------------------------------------------------
# models/_common.py: save_weights, _read_state, load_state
# ---------------------------------------------------------------------------------------------
class TestWeightDtypes:
    def test_a_float64_model_is_saved_as_float32(self, tmp_path):
        """``save_weights``: ``tensor.is_floating_point()`` made ``dtype == torch.float32``:
        a double-precision model was refused as neither float nor integer."""
        model = nn.Linear(2, 2).double()
        _common.save_weights(model, tmp_path / "w.npz")
        with np.load(tmp_path / "w.npz") as npz:
            assert npz["weight"].dtype == np.float32
            np.testing.assert_array_equal(npz["weight"], model.weight.detach().float().numpy())

    def test_unsigned_arrays_read_as_int64_and_doubles_as_float32(self, tmp_path):
        """``_read_state``: ``np.integer`` made ``np.signedinteger`` (a uint8 array read as
        float32), or the float branch's ``np.float32`` made ``arr.dtype`` (a float64 array
        kept as a double, which ``load_state_dict`` copies into float32 parameters only by
        luck)."""
        path = tmp_path / "w.npz"
        np.savez(path, u=np.array([3, 250], np.uint8), d=np.array([0.5], np.float64))
        state = _common._read_state(path)
        assert state["u"].dtype == torch.int64 and state["u"].tolist() == [3, 250]
        assert state["d"].dtype == torch.float32


class TestWeightFiles:
    def test_a_rewrite_replaces_the_file_not_writes_into_it(self, tmp_path):
        """``save_weights``: the atomic ``write_bytes`` (``cimsim._atomic``) made
        ``Path.write_bytes``: the earlier file was truncated and rewritten in place (a hard
        link to it, like a reader holding it open, saw the new bytes; a kill mid-write left
        a truncated archive)."""
        path = tmp_path / "w.npz"
        _common.save_weights(nn.Linear(2, 2), path)
        os.link(path, tmp_path / "old.npz")
        before = (tmp_path / "old.npz").read_bytes()
        _common.save_weights(nn.Linear(3, 3), path)
        assert (tmp_path / "old.npz").read_bytes() == before
        assert path.read_bytes() != before

    def test_an_empty_path_is_not_the_bundled_file(self, tmp_path):
        """``load_state``: ``if path is None`` made ``if not path``: an empty path silently
        loaded the bundled weights instead of failing on the path given."""
        with pytest.raises(OSError):
            _common.load_state(nn.Linear(2, 2), "", "digits_cnn.npz")




# ---------------------------------------------------------------------------------------------
# models/resnet_digits.py
# ---------------------------------------------------------------------------------------------
class TestResNetDigitsShortcut:
    def test_a_stride_alone_needs_the_projection(self):
        """``BasicBlock``: ``stride != 1 or c_in != c_out`` made ``c_in != c_out``: a block
        that halves the side at the same width kept the identity shortcut, whose full-size
        input could not be added (equal widths, e.g. ``widths=(4, 4, 4)``, failed at the
        first forward)."""
        block = RDBasicBlock(2, 2, stride=2).eval()
        assert isinstance(block.shortcut, nn.Sequential)
        assert block(torch.rand(1, 2, 4, 4)).shape == (1, 2, 2, 2)
        model = ResNetDigits(widths=(2, 2, 2), blocks=1).eval()
        with torch.no_grad():
            assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


    def test_widths_that_are_no_sequence_are_a_config_error(self):
        """``ResNetDigits``: the ``isinstance(widths, (tuple, list))`` test dropped: a single
        integer for ``widths`` failed with ``TypeError: object of type 'int' has no len()``
        instead of the refusal naming ``widths``."""
        with pytest.raises(ConfigError, match="widths"):
            ResNetDigits(widths=16)  # type: ignore[arg-type]

    def test_numpy_widths_become_python_ints(self):
        """``ResNetDigits``: the checked widths ``(w0, w1, w2)`` replaced by ``tuple(widths)``
        (the unchecked values): NumPy integers went on into the layers' channel counts."""
        model = ResNetDigits(widths=[np.int64(2), np.int64(3), np.int64(4)], blocks=1)
        assert type(model.stem[1].out_channels) is int
        assert type(model.head[2].in_features) is int and model.head[2].in_features == 4



# ---------------------------------------------------------------------------------------------
# models/imagenet.py
# ---------------------------------------------------------------------------------------------
class TestResNet18Geometry:
    def test_the_stem_quarters_the_side(self):
        """``ResNet18``: the 7x7 stem convolution's padding 3 or the max-pool's padding 1
        changed (a 32-pixel image reached ``layer1`` at 7x7, not torchvision's 8x8); each
        block's ``stride`` attribute (torchvision's) set to 1."""
        model = imagenet.resnet18(3, width=2)
        with torch.no_grad():
            stem = model.maxpool(model.relu(model.bn1(model.conv1(torch.rand(1, 3, 32, 32)))))
        assert stem.shape == (1, 2, 8, 8)
        assert model.conv1.padding == (3, 3) and model.maxpool.padding == 1
        assert [model.layer2[0].stride, model.layer2[1].stride] == [2, 1]
        # layer1 keeps the side, each later stage halves it (``layer4``'s stride 1 kept 2x2)
        assert [getattr(model, f"layer{i}")[0].stride for i in range(1, 5)] == [1, 2, 2, 2]

    def test_forward_by_hand(self):
        """``ResNet18.forward``: the stem's ReLU skipped, or the head's average pooling made a
        max: the logits, recomputed here module by module, differ."""
        model = imagenet.resnet18(3, width=2)
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # 2x2 out
        with torch.no_grad():
            h = model.maxpool(torch.relu(model.bn1(model.conv1(x))))
            h = model.layer4(model.layer3(model.layer2(model.layer1(h))))
            want = model.fc(h.mean((2, 3)))
            got = model(x)
        assert got.shape == (2, 3) and (h.amax((2, 3)) != h.mean((2, 3))).any()
        torch.testing.assert_close(got, want)

    def test_a_block_ends_in_a_relu_of_the_sum(self):
        """``BasicBlock.forward`` (ImageNet): the final ``relu`` of ``out + identity``
        dropped. With ``conv2`` zeroed the block is ``relu(x)``: a negative input gives 0."""
        block = imagenet.BasicBlock(1, 1).eval()
        with torch.no_grad():
            block.conv2.weight.zero_()
            got = block(-torch.ones(1, 1, 3, 3))
        assert torch.equal(got, torch.zeros(1, 1, 3, 3))



class TestMobileNetV2Widths:
    def test_the_width_multiplier_scales_every_stage_but_not_the_last_below_1280(self):
        """``MobileNetV2``/``mobilenet_v2``: ``width_mult`` not passed on, or dropped from the
        stem's 32 channels or a stage's ``c`` (torchvision's rounded widths at 0.5 are 16,
        then 8, 16, 16, 32, 48, 80, 160), or from the last 1280 channels above 1.0 (1.5
        gives 1920)."""
        model = imagenet.mobilenet_v2(2, width_mult=0.5)
        assert model.features[0][0].out_channels == 16
        outs = [m.out_channels for m in model.features
                if isinstance(m, imagenet.InvertedResidual)]
        assert sorted(set(outs)) == [8, 16, 32, 48, 80, 160] and outs[:3] == [8, 16, 16]
        assert model.last_channel == 1280
        assert imagenet.MobileNetV2(2, width_mult=1.5).last_channel == 1920

    def test_kaiming_fan_out_and_the_seed_is_used(self):
        """``MobileNetV2``: the convolutions' ``kaiming_normal_(mode="fan_out")`` made
        ``fan_in`` (the last 1x1 convolution, 160 -> 1280 at 0.5, has std sqrt(2 / 1280), not
        sqrt(2 / 160)); ``mobilenet_v2`` built with seed 0 whatever ``seed`` says."""
        model = imagenet.mobilenet_v2(2, width_mult=0.5, seed=1)
        conv = model.features[-1][0]
        assert (conv.in_channels, conv.out_channels) == (160, 1280)
        assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / 1280), rel=0.05)
        other = imagenet.mobilenet_v2(2, width_mult=0.5, seed=2)
        assert not torch.equal(model.features[0][0].weight, other.features[0][0].weight)



class TestViTByHand:
    def test_a_whole_forward_by_hand(self):
        """``ViT``/``EncoderBlock``: the patches' token order changed (each patch given
        another's position embedding), attention reading ``x`` instead of ``norm1(x)``, the
        MLP's GELU made a ReLU, the class token drawn with std 1 instead of 0.02,
        ``batch_first`` dropped (attention across the batch). Four patches, one block,
        recomputed module by module."""
        vit = imagenet.vit_tiny(3, image=32, depth=1, dim=48, seed=4)
        assert float(vit.cls_token.detach().abs().max()) < 0.1
        block = vit.blocks[0]
        assert isinstance(block.mlp[1], nn.GELU) and block.attn.batch_first  # (B, tokens, dim)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            patches = torch.stack([vit.patch_embed(x[:, :, 16 * r:16 * r + 16,
                                                     16 * c:16 * c + 16])[:, :, 0, 0]
                                   for r in range(2) for c in range(2)], dim=1)
            t = torch.cat([vit.cls_token.expand(2, -1, -1), patches], dim=1) + vit.pos_embed
            h = block.norm1(t)
            t = t + block.attn(h, h, h, need_weights=False)[0]
            h = block.norm2(t)
            t = t + block.mlp[2](nn.functional.gelu(block.mlp[0](h)))
            want = vit.head(vit.norm(t)[:, 0])
            got = vit(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# work.py
# ---------------------------------------------------------------------------------------------
def _layer_work(events, **counts):
    return LayerWork(name="l", kind="matmul", events=Events(events), blocks=(), n_inputs=4,
                     n_outputs=2, n_matrices=1, input_signed=False, n_cells=8, n_arrays=1,
                     **counts)


class TestLayerWorkFractions:
    def test_only_adc_conversions_of_every_width_count(self):
        """``LayerWork.n_adc_conversions``: the filter's ``and`` made ``or``, or the action
        test dropped (the ADC's leakage events counted as conversions); the clip fraction
        is the clipped count over them, by hand."""
        work = _layer_work({("adc", "convert", 4): 8, ("adc", "convert", 6): 2,
                            ("adc", "leak"): 100, ("dac", "pulse"): 50}, n_adc_clipped=5.0)
        assert work.n_adc_conversions == 10.0
        assert work.adc_clip_fraction == 0.5

    def test_no_conversions_is_an_unknown_clip_fraction(self):
        """``LayerWork.adc_clip_fraction``: the ``math.nan`` of a layer without conversions
        made 0.0 (a layer that converted nothing reported as never clipping)."""
        assert math.isnan(_layer_work({("dac", "pulse"): 3}).adc_clip_fraction)

    def test_the_input_fraction_reads_the_input_counts(self):
        """``LayerWork.input_clip_fraction``: ``n_input_clipped`` swapped for
        ``n_adc_clipped`` (the ADC's clipping reported as the inputs')."""
        work = _layer_work({("adc", "convert", 4): 4}, n_adc_clipped=2.0, n_input_clipped=1.0,
                           n_input_values=8.0)
        assert work.input_clip_fraction == 0.125 and work.adc_clip_fraction == 0.5


    def test_fields_are_keyword_only(self):
        """``LayerWork``: ``kw_only=True`` dropped: a positional construction (whose order a
        new field would silently shift) was accepted."""
        with pytest.raises(TypeError):
            LayerWork("l", "matmul", Events(), (), 4, 2, 1, False, 8, 1)  # type: ignore[misc]


class TestBlockDefaults:
    def test_one_stage_no_lag_and_its_own_row_tiles(self):
        """``Block``: the defaults ``stage = 0``, ``lag_vectors = 0.0`` or
        ``merged_row_tiles = 1`` changed (every block waiting on a stage before it, or
        merging no row tile)."""
        block = Block(layer=None, n_vectors=3.0)  # type: ignore[arg-type]
        assert (block.stage, block.lag_vectors, block.merged_row_tiles) == (0, 0.0, 1)


# ---------------------------------------------------------------------------------------------
# real bugs found on the way, fixed
# ---------------------------------------------------------------------------------------------
class TestSaveWeightsNarrowIntegers:
    @pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.uint8])
    def test_a_narrow_integer_buffer_is_saved_as_int64(self, tmp_path, dtype):
        """``save_weights`` (``_common.py``, ``elif tensor.dtype in (torch.int64,
        torch.int32)``): the docstring stores integer tensors as int64 and raises only for a
        tensor that is "neither floating-point nor integer"; an int8 buffer (a quantized
        model's codes) raised ``TypeError: ... has dtype torch.int8; expected a float or
        integer tensor`` (a real bug found by this round, fixed)."""
        model = nn.Linear(2, 2)
        model.register_buffer("codes", torch.tensor([1, 2], dtype=dtype))
        _common.save_weights(model, tmp_path / "w.npz")
        state = _common._read_state(tmp_path / "w.npz")
        assert state["codes"].dtype == torch.int64 and state["codes"].tolist() == [1, 2]


class TestSaveWeightsBfloat16:
    def test_a_bfloat16_model_is_saved_as_float32(self, tmp_path):
        """``save_weights`` (``tensor.detach().cpu().numpy().astype(dtype)``): a bfloat16
        tensor is floating-point, which the docstring stores as float32, but numpy has no
        bfloat16 and the conversion raised ``TypeError: Got unsupported ScalarType
        BFloat16`` before the cast; now cast in torch first (fixed)."""
        model = nn.Linear(2, 2).to(torch.bfloat16)
        _common.save_weights(model, tmp_path / "w.npz")
        state = _common._read_state(tmp_path / "w.npz")
        assert torch.equal(state["weight"], model.weight.detach().float())


class TestFitClassifierData:
    def test_an_empty_training_set_is_refused_clearly(self):
        """``fit_classifier``: ``x_train`` with 0 samples ran no batch, then divided the
        epoch's loss by ``n = 0`` for the debug log: ``ZeroDivisionError: float division by
        zero`` instead of a refusal naming the training data (fixed)."""
        x, y = torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)
        with pytest.raises(ValueError, match="x_train"):
            _common.fit_classifier(lambda: nn.Linear(2, 2), x, y, seed=0, epochs=1,
                                   batch_size=2, lr=0.1)

    def test_more_labels_than_inputs_are_refused(self):
        """``fit_classifier``: ``n = x_train.shape[0]`` alone sets the epoch; 3 inputs with 5
        labels trained silently on the first 3 labels (and 4 inputs with 3 labels failed
        with an ``IndexError`` from inside the batch loop) instead of a refusal naming
        ``y_train`` (fixed)."""
        x, y = torch.zeros(3, 2), torch.zeros(5, dtype=torch.int64)
        with pytest.raises(ValueError, match="y_train"):
            _common.fit_classifier(lambda: nn.Linear(2, 2), x, y, seed=0, epochs=1,
                                   batch_size=2, lr=0.1)


class TestVitImageSize:
    def test_an_image_side_not_a_multiple_of_the_patch_is_refused(self):
        """``vit_tiny`` (``check_int("image", image, 16)`` only): ``image=24`` built a model
        with one patch whose stride-16 embedding never reads rows and columns 16..23 (two
        images differing only there get identical logits); torchvision's ViT refuses such a
        size ("Input shape indivisible by patch size!"). Now a ``ConfigError`` naming
        ``image`` and the multiple of 16 (fixed)."""
        with pytest.raises(ConfigError, match="image"):
            imagenet.vit_tiny(3, image=24, depth=0, dim=6)
