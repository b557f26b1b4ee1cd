"""A ninth zoo (worktree ``zoo9``, after ``test_new_models.py`` and ``test_zoo2.py`` ..
``test_zoo8.py``): models written the way HuggingFace transformers, timm and torchvision write
them (small, in ``zoo9_models.py``; no library imported), called the way those libraries call
them. HuggingFace: a BERT classifier taking ``input_ids`` / ``attention_mask`` /
``token_type_ids`` / ``position_ids`` / ``head_mask`` / ``labels`` / ``return_dict`` as keyword
inputs (a ``ModelOutput``, a tuple with the loss first), gradient checkpointing, a masked LM
tied to its embeddings, a LLaMA decoder (RoPE, grouped-query attention by SDPA's ``enable_gqa``
or ``repeat_interleave``) generating greedily with its ``past_key_values`` cache after deploy.
A DiT block (adaLN), a Whisper encoder-decoder (Conv1d stem, sinusoids, cross-attention, logits
by the embedding's transpose). timm / torchvision: layer scale, DropPath / StochasticDepth,
FrozenBatchNorm2d, Conv2dNormActivation, SqueezeExcitation(scale_activation=Hardsigmoid),
``forward_features`` / ``forward_head(pre_logits=...)``, ``features_only``, channels_last.
A DETR detector (object queries as an Embedding's weight, a dict of class and box outputs).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.evaluate import accuracy
from cimsim.mapping.deploy import _batches
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    check_every_matrix,
    check_lossy_run,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy
from .test_zoo5 import _quiet, _rram_noise_free
from .zoo9_models import (
    DETR,
    BertForMaskedLM,
    BertForSequenceClassification,
    DiT,
    FrozenBatchNorm2d,
    LlamaForCausalLM,
    PreLogits,
    SequenceClassifierOutput,
    TimmConvNeXt,
    TorchvisionNet,
    Whisper,
    greedy_generate,
)

flat = flat_output  # a ModelOutput, a tuple with a loss, a dict, a list: one tensor


def _bert_batch(with_positions: bool = False) -> dict:
    """A tokenizer's output: ids (0 the padding), the 2-D mask, segment ids."""
    ids = torch.randint(1, 24, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[0, 4:] = 0
    ids[0, 4:] = 0
    batch = {"input_ids": ids, "attention_mask": mask,
             "token_type_ids": (torch.arange(6) >= 3).long().expand(3, 6).contiguous()}
    if with_positions:  # explicit (1, S) position ids: one row shared by the batch
        batch["position_ids"] = torch.arange(2, 8)[None]
    return batch


def _bert_labels():
    return {**_bert_batch(True), "labels": torch.tensor([0, 2, 1]), "return_dict": False}


def _bert_head_mask():
    head_mask = torch.ones(2, 2)
    head_mask[1, 0] = 0.0  # a pruned head (layer 1, head 0), HF's (layers, heads)
    return {**_bert_batch(), "head_mask": head_mask, "output_hidden_states": True}


def _image(c: int = 3, s: int = 8, b: int = 3):
    return lambda: (torch.randn(b, c, s, s),)


ZOO9 = {
    "bert": (BertForSequenceClassification, _bert_batch),
    "bert-labels-tuple": (BertForSequenceClassification, _bert_labels),
    "bert-head-mask": (BertForSequenceClassification, _bert_head_mask),
    "bert-mlm-tied": (BertForMaskedLM, lambda: {k: v for k, v in _bert_batch().items()
                                                if k != "token_type_ids"}),
    "llama-sdpa-gqa": (LlamaForCausalLM, lambda: {"input_ids": torch.randint(0, 24, (3, 6))}),
    "llama-repeat-kv": (lambda: LlamaForCausalLM(sdpa=False),
                        lambda: {"input_ids": torch.randint(0, 24, (3, 6)),
                                 "use_cache": True, "return_dict": True}),
    "dit": (DiT, lambda: (torch.randn(3, 2, 4, 4), torch.tensor([1, 50, 999]),
                          torch.tensor([0, 3, 4]))),
    "whisper": (Whisper, lambda: (torch.randn(3, 4, 12), torch.randint(0, 20, (3, 5)))),
    "torchvision": (TorchvisionNet, _image()),
    "timm-convnext": (TimmConvNeXt, _image()),
    "features-only": (lambda: TimmConvNeXt(features_only=True), _image()),
    "detr": (DETR, _image(s=16, b=2)),
}


def _build(name: str, dtype=torch.float32):
    make, data = ZOO9[name]
    torch.manual_seed(0)
    model = make().eval().to(dtype)
    torch.manual_seed(1)
    batch = data()
    if isinstance(batch, dict):
        batch = {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                 for k, v in batch.items()}
    else:
        batch = tuple(a.to(dtype) if a.is_floating_point() else a for a in batch)
    return model, batch


def call(model, batch):
    """A model on its inputs: keyword inputs from a dict (HF's ``model(**batch)``)."""
    return model(**batch) if isinstance(batch, dict) else model(*batch)


def _rel(got, want) -> float:
    return float((flat(got) - flat(want)).norm() / flat(want).norm())


_BERT = {"embeddings.word_embeddings", "embeddings.position_embeddings",
         "embeddings.token_type_embeddings"}
# what each model keeps digital, by name: every weight matrix is mapped or listed here. The
# embeddings (DETR's object queries are an Embedding's weight read whole); the attention
# products of the module whose forward computes them; Whisper's logits by the token
# embedding's transpose (a weight used without a module)
_DIGITAL = {
    "bert": _BERT | {"encoder.layer.0.attention", "encoder.layer.1.attention"},
    "bert-mlm-tied": _BERT | {"encoder.layer.0.attention"},
    "llama-sdpa-gqa": {"embed_tokens", "layers.0.self_attn", "layers.1.self_attn"},
    "dit": {"y_embedder", "block.attn"},
    "whisper": {"token_embedding", "token_embedding.weight", "enc.attn", "dec.attn",
                "dec.cross_attn"},
    "detr": {"query_embed", "encoder.self_attn", "decoder.self_attn", "decoder.multihead_attn"},
}
_DIGITAL["bert-labels-tuple"] = _DIGITAL["bert-head-mask"] = _DIGITAL["bert"]
_DIGITAL["llama-repeat-kv"] = _DIGITAL["llama-sdpa-gqa"]
# 2-D parameters no product reads: Whisper's learned decoder positions (added)
_NOT_MATRICES = {"whisper": ("dec_positional_embedding",)}


# ---------------------------------------------------------------------------------------------
# deploy: lossless (bit-exact, near float), rram-22nm
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ZOO9))
def test_lossless_deploy_equals_the_quantized_model_and_is_near_float(name):
    """Bit-exact against the integer re-implementation (every Linear / Conv / MHA, the rest in
    torch), the output of the model's own type (a ModelOutput, a tuple with the loss first, a
    list of feature maps, a dict of detections), within 8-bit quantization of float, one
    inference per sample, exactly the expected layers digital."""
    model, batch = _build(name)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), batch)
    with torch.no_grad():
        want = call(reference_model(model, sim), batch)
        ref = call(model, batch)
    got = call(sim, batch)
    assert type(got) is type(want) is type(ref)
    assert_bitwise(flat(got), flat(want))
    assert _rel(got, ref) < 0.03
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    assert sim.n_inferences == first.shape[0]
    assert {d[0] for d in sim.digital} == _DIGITAL.get(name, set())


@pytest.mark.parametrize("name", list(ZOO9))
def test_rram_deploy_runs_reports_and_accounts_for_every_matrix(name):
    model, batch = _build(name)
    with torch.no_grad():
        want = flat(call(model, batch))
    sim = _quiet(cimsim.deploy, model, _rram(), batch)
    check_lossy_run(flat(call(sim, batch)), want, sim)
    check_every_matrix(model, sim, _DIGITAL.get(name, set()), _NOT_MATRICES.get(name, ()))


# ---------------------------------------------------------------------------------------------
# prepare -> one step -> deploy
# ---------------------------------------------------------------------------------------------
_SLOW_PREPARE = {"bert-labels-tuple", "bert-head-mask", "llama-repeat-kv", "features-only"}


@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", [n if n not in _SLOW_PREPARE else
                                  pytest.param(n, marks=pytest.mark.slow) for n in ZOO9])
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    model, batch = _build(name, torch.float64)
    chip_cfg = lossless_chip("channel") if chip == "ideal" else _rram_noise_free()
    prep = prepare_step_deploy(model, chip_cfg, batch, 0, main=flat)
    assert {d[0] for d in prep.digital} == _DIGITAL.get(name, set())


# ---------------------------------------------------------------------------------------------
# HuggingFace idioms
# ---------------------------------------------------------------------------------------------
def test_the_deployed_bert_answers_as_hf_does_a_model_output_or_a_tuple_with_the_loss():
    """``return_dict`` (the default): a ModelOutput read by attribute, key and index;
    ``return_dict=False`` with ``labels``: the tuple (loss, logits), the loss the cross entropy
    of the simulated logits."""
    model, batch = _build("bert")
    sim = _quiet(cimsim.deploy, model, _rram_noise_free(), batch)
    out = sim(**batch)
    assert isinstance(out, SequenceClassifierOutput) and list(out.keys()) == ["logits"]
    assert out.logits is out["logits"] is out[0] and out.loss is None
    labels = torch.tensor([0, 2, 1])
    loss, logits = sim(**batch, labels=labels, return_dict=False)
    assert_bitwise(logits, out.logits)  # the same noise-free arrays, the same inputs
    assert_bitwise(loss, nn.functional.cross_entropy(out.logits, labels))
    assert accuracy(sim, batch, labels) == pytest.approx(
        float((out.logits.argmax(-1) == labels).double().mean()))


def test_a_pruned_head_changes_what_the_deployed_bert_computes_as_it_does_in_float():
    """``head_mask`` (layers, heads), passed whole beside the batch: the deployed model with
    head 0 of layer 1 masked equals the re-implementation with it masked, and differs from
    the one without."""
    model, batch = _build("bert-head-mask")
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), batch)
    ref = reference_model(model, sim)
    with torch.no_grad():
        want = ref(**batch)
        unmasked = ref(**{k: v for k, v in batch.items() if k != "head_mask"})
    got = sim(**batch)
    assert len(got.hidden_states) == 3
    assert_bitwise(flat(got), flat(want))
    assert not torch.equal(got.logits, unmasked.logits)


def test_gradient_checkpointing_in_training_gives_the_twin_the_same_gradients():
    """HF's ``gradient_checkpointing`` (``torch.utils.checkpoint`` in train mode): the twin
    recomputes its quantized layers in the backward; the gradients equal those without."""
    model, batch = _build("bert-labels-tuple", torch.float64)
    batch = {**batch, "return_dict": True}
    grads = []
    for checkpointing in (False, True):
        m = copy.deepcopy(model)
        m.encoder.gradient_checkpointing = checkpointing
        prep = _quiet(prepare, m, _rram_noise_free(), batch, seed=3)
        prep.train()
        torch.manual_seed(7)  # the same dropout masks (checkpoint restores the RNG to recompute)
        out = prep(**batch)
        out.loss.backward()
        grads.append({n: p.grad.clone() for n, p in prep.named_parameters()
                      if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, rtol=1e-12, atol=1e-12, msg=n)


def test_the_tied_decoder_maps_the_embedding_table_once_read_twice():
    """The MLM decoder's weight *is* the word embedding: the look-up stays digital, the
    decoder's product is mapped; the twin keeps them one parameter through a step."""
    model, batch = _build("bert-mlm-tied", torch.float64)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), batch)
    assert "decoder" in sim.sim_layers
    prep = _quiet(prepare, model, lossless_chip("channel"), batch)
    (twin,) = prep.twin_layers["decoder"].matrices()
    assert twin.weight is prep.model.embeddings.word_embeddings.weight
    opt = torch.optim.SGD(prep.parameters(), lr=0.1)
    prep(**batch).pow(2).mean().backward()
    opt.step()
    f = prep.float_model()  # (equal values; float_model copies each twin's weight apart)
    assert torch.equal(f.get_output_embeddings().weight, f.get_input_embeddings().weight)


@pytest.mark.parametrize("name", ["llama-sdpa-gqa", "llama-repeat-kv"])
def test_the_deployed_decoder_generates_greedily_with_its_cache(name):
    """Deploy on the prompt, then HF's greedy loop: the prompt once (``use_cache``), then one
    token at a time with ``past_key_values`` fed back (positions continuing after the cache).
    Tokens and every step's logits equal the integer re-implementation's loop bit for bit;
    the cache holds the simulated K / V; on rram-22nm the loop runs, finite."""
    model, batch = _build(name)
    prompt = batch["input_ids"]
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), batch)
    with torch.no_grad():
        ref = reference_model(model, sim)
        want_ids, want_logits = greedy_generate(ref, prompt, 4)
    got_ids, got_logits = greedy_generate(sim, prompt, 4)
    assert got_ids.shape == (3, 10) and torch.equal(got_ids, want_ids)
    for g, w in zip(got_logits, want_logits, strict=True):
        assert_bitwise(g, w)
    assert sim.n_inferences == 3 * 5
    lossy = _quiet(cimsim.deploy, model, _rram(), batch)
    ids, logits = greedy_generate(lossy, prompt, 3)
    assert ids.shape == (3, 9) and all(torch.isfinite(x).all() for x in logits)


def test_a_dataloader_of_tokenizer_batches_deploys_the_classifier():
    model, batch = _build("bert")
    loader = [{k: v[i:i + 2] for k, v in batch.items()} for i in (0, 2)]
    whole = _quiet(cimsim.deploy, model, _rram(), batch, batch_size=2, seed=5)
    batched = _quiet(cimsim.deploy, model, _rram(), loader, seed=5)
    assert_bitwise(whole(**batch).logits, batched(**batch).logits)


# ---------------------------------------------------------------------------------------------
# timm / torchvision idioms
# ---------------------------------------------------------------------------------------------
def test_a_channels_last_model_and_input_deploy_as_the_contiguous_ones():
    """timm's ``model.to(memory_format=torch.channels_last)`` and channels_last inputs: the
    same integer weights, the same outputs bit for bit (deploy and the prepared twin)."""
    model, (x,) = _build("timm-convnext")
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    assert cl.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    sim = _quiet(cimsim.deploy, model, _rram(), x, seed=2)
    sim_cl = _quiet(cimsim.deploy, cl, _rram(), x_cl, seed=2)
    assert_bitwise(sim_cl(x_cl), sim(x))
    model64, (x64,) = _build("timm-convnext", torch.float64)
    prep_step = prepare_step_deploy(model64.to(memory_format=torch.channels_last),
                                    _rram_noise_free(),
                                    (x64.contiguous(memory_format=torch.channels_last),), 0)
    assert list(prep_step.twin_layers) == list(sim.sim_layers)


def test_forward_head_pre_logits_names_the_unused_classifier():
    """A timm model used for its embeddings (``forward_head(pre_logits=True)``): the classifier
    is never reached, named, and excluded it stays float while the rest maps."""
    model, (x,) = _build("timm-convnext")
    emb = PreLogits(model).eval()
    with pytest.raises(MappingError, match=r"model\.head_fc.*never reached.*exclude"):
        _quiet(cimsim.deploy, emb, lossless_chip("channel"), x)
    sim = _quiet(cimsim.deploy, emb, lossless_chip("channel"), x, exclude=["model.head_fc"])
    assert "model.head_fc" not in sim.sim_layers and len(sim.sim_layers) == 8
    with torch.no_grad():
        assert sim(x).shape == (3, 12) and _rel(sim(x), emb(x)) < 0.03


def test_stochastic_depth_and_drop_path_are_identity_in_eval_and_train_in_the_twin():
    """torchvision's StochasticDepth and timm's DropPath draw per-sample masks in training:
    the twin trains through them (a row of zeros in some samples' branch), eval is exact."""
    model, (x,) = _build("torchvision", torch.float64)
    x = torch.cat([x] * 4)
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    prep.train()
    torch.manual_seed(3)
    a = prep(x)
    torch.manual_seed(4)
    b = prep(x)
    assert not torch.equal(a, b)  # different samples dropped
    prep.eval()
    assert torch.equal(prep(x), prep(x))


def test_frozen_batchnorm_is_folded_nowhere_and_computed_from_its_buffers():
    """FrozenBatchNorm2d has no parameter (every one a buffer): the conv before it maps with
    its own weight and the norm runs in torch; prepare trains the conv, never the buffers."""
    model, (x,) = _build("torchvision", torch.float64)
    prep = prepare_step_deploy(model, lossless_chip("channel"), (x,), 0)
    frozen = [n for n, m in prep.model.named_modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == 4 and "features.0.0" in prep.twin_layers
    assert not any(n.startswith(f + ".") for n, _ in prep.model.named_parameters()
                   for f in frozen)
    for f in frozen:  # the step left the statistics and the affine buffers as they were
        for key in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(prep.model.get_submodule(f).get_buffer(key),
                               model.get_submodule(f).get_buffer(key))


def test_whisper_names_the_logits_by_the_embedding_transpose():
    model, batch = _build("whisper")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cimsim.deploy(model, lossless_chip("channel"), batch)
    said = [str(w.message) for w in caught]
    assert any("token_embedding.weight (matmul)" in m for m in said), said
    assert any("token_embedding (Embedding)" in m for m in said), said


def test_detr_answers_a_dict_of_class_and_box_tensors():
    model, batch = _build("detr")
    sim = _quiet(cimsim.deploy, model, _rram(), batch)
    out = sim(*batch)
    assert set(out) == {"pred_logits", "pred_boxes"}
    assert out["pred_logits"].shape == (2, 4, 4) and out["pred_boxes"].shape == (2, 4, 4)
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
    assert "query_embed" not in sim.sim_layers


# ---------------------------------------------------------------------------------------------
# cimsim.evaluate on these outputs
# ---------------------------------------------------------------------------------------------
def test_accuracy_names_a_tuple_output_it_cannot_score():
    """HF's ``return_dict=False`` answers a tuple (the loss first when labels are passed):
    accuracy failed with "'tuple' object has no attribute 'argmax'" from inside; it says what
    it got and what to pass now."""
    model, batch = _build("bert")
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), batch)
    with pytest.raises(ValueError, match=r"the model returned a tuple of 1.*return_dict=True"):
        accuracy(sim, {**batch, "return_dict": False}, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("name", ["detr", "features-only"])
def test_output_cosine_compares_every_output_of_a_dict_or_a_list(name):
    """DETR's dict of class and box tensors, timm's list of feature maps: each output cut by
    the batch and put together again before the cosine (it failed: 'expected Tensor')."""
    model, (x,) = _build(name)
    sim = _quiet(cimsim.deploy, model, _rram_noise_free(), x)
    with torch.no_grad():  # both on the same batches of one, as output_cosine runs them
        ref = torch.cat([flat(model(x[i:i + 1])) for i in range(len(x))]).double()
        got = torch.cat([flat(sim(x[i:i + 1])) for i in range(len(x))]).double()
    want = float(ref @ got / (ref.norm() * got.norm()))
    assert cimsim.evaluate.output_cosine(model, sim, x, batch_size=1) == pytest.approx(want,
                                                                                         abs=1e-9)


# ---------------------------------------------------------------------------------------------
# torchvision's detection models take a list of images
# ---------------------------------------------------------------------------------------------
class ImageListDetector(nn.Module):
    """torchvision's GeneralizedRCNN convention: ``forward(images)``, a list of (C, H, W)
    images of different sizes, a list of per-image outputs."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, images):
        return [self.fc(self.conv(im[None]).mean((2, 3)))[0] for im in images]


def test_a_list_of_images_is_calibrated_as_a_detection_loader_yields_it():
    """``(images,)`` reads as a DataLoader whose item ``images`` is (inputs, labels): the model
    was called with the first image alone and failed deep in its conv ('expected ... 3
    channels, but got input of size [1, 1, 8, 8]'). The error now says how the calibration was
    read and what to pass: (images, targets) pairs, with which it deploys."""
    torch.manual_seed(0)
    model = ImageListDetector().eval()
    images = [torch.randn(3, 8, 8), torch.randn(3, 10, 6)]
    with pytest.raises(RuntimeError) as info:
        cimsim.deploy(model, lossless_chip("channel"), (images,))
    note = " ".join(getattr(info.value, "__notes__", []))
    assert "read as a DataLoader" in note and "a tensor of shape (3, 8, 8)" in note
    assert "[(images, targets), ...]" in note
    sim = cimsim.deploy(model, lossless_chip("channel"), [(images, None)])
    assert list(sim.sim_layers) == ["conv", "fc"]
    with torch.no_grad():
        assert _rel(sim(images), model(images)) < 0.03


def test_a_cut_keyword_batch_is_noted_on_the_models_error():
    """A dict calibration is cut as a tuple is, each tensor with the sample count along its
    first dimension with the batch: HF's (layers, heads) ``head_mask`` of a 2-layer model on 2
    samples in batches of 1 was cut too, and the model failed ('index 1 is out of bounds')
    without the note a tuple calibration gets. The note names the entries cut."""
    model, batch = _build("bert-head-mask")
    two = {k: v[:2] if k != "head_mask" and isinstance(v, torch.Tensor) else v
           for k, v in batch.items()}
    with pytest.raises(IndexError) as info:
        _quiet(cimsim.deploy, model, lossless_chip("channel"), two, batch_size=1)
    note = " ".join(getattr(info.value, "__notes__", []))
    assert ("the calibration inputs (input_ids, attention_mask, token_type_ids, head_mask) "
            "were cut into batches of 1") in note and "pass batch_size=2" in note
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), two, batch_size=2)
    with torch.no_grad():
        assert _rel(sim(**two), model(**two)) < 0.03


def test_a_shared_input_passed_first_does_not_set_the_sample_count():
    """HF's (1, S) ``position_ids`` shared by the batch, passed before ``input_ids``
    (``sim(position_ids=..., **batch)``): the deployed model counted 1 inference per call, not
    the batch's 3 (the report's per-inference energy 3x too high); a size-1 batch dimension
    broadcasts, the first input with another size counts now."""
    model, batch = _build("bert")
    sim = _quiet(cimsim.deploy, model, _rram_noise_free(), batch)
    positions = torch.arange(6)[None]
    got = sim(position_ids=positions, **batch)
    assert sim.n_inferences == 3
    assert_bitwise(got.logits, sim(**batch, position_ids=positions).logits)
    assert sim.n_inferences == 6


def test_a_shared_input_first_in_a_dict_is_passed_whole_and_the_batch_cut():
    """The same (1, S) ``position_ids`` first in a calibration or evaluation dict set the
    sample count to 1: deploy ran the whole set as one batch, and accuracy refused '1 inputs
    but 3 labels'. The count comes from the first input that does not broadcast."""
    model, batch = _build("bert")
    shared = {"position_ids": torch.arange(6)[None], **batch}
    cuts = list(_batches(shared, 2))
    assert [c.kwargs["input_ids"].shape[0] for c in cuts] == [2, 1]
    assert all(c.kwargs["position_ids"].shape == (1, 6) for c in cuts)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), shared, batch_size=2)
    labels = sim(**shared).logits.argmax(-1)
    assert accuracy(sim, shared, labels, batch_size=2) == 1.0


def test_a_text_column_left_in_a_dataloader_batch_is_named_as_such():
    """A HuggingFace dataset's text column collated by a DataLoader is a list of str: it was
    refused as if it were a cache ('a cache of earlier steps is not an input')."""
    model, batch = _build("bert")
    loader = [{**{k: v[:2] for k, v in batch.items()}, "text": ["a b", "c d"]}]
    with pytest.raises(MappingError, match=r"entry 'text' is a list of str.*remove_columns"):
        _quiet(cimsim.deploy, model, lossless_chip("channel"), loader)
