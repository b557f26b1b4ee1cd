"""A twelfth zoo (worktree ``zoo12``, after ``test_zoo11.py``): weights and control flow the
earlier zoos did not try (models in ``zoo12_models.py``). Greedy decoding inside the forward
(``nn.TransformerEncoder`` + ``nn.TransformerDecoder`` with a causal target mask and the
memory's padding mask, re-run on the growing target; a decoder-only LM stepping through a KV
cache held in a Python list), rotary embeddings by complex multiplication (``view_as_complex`` /
``torch.polar``), multi-query attention, mixture-of-depths and token merging (tokens gathered
and scattered back by indices computed from the input), PixelUnshuffle / PixelShuffle with
PReLU, ``F.grid_sample`` (deformable offsets, a spatial transformer with ``affine_grid``),
CoordConv, involution, FiLM on a second input, SegNet's ``MaxUnpool2d``, rarer activations and
norms (LocalResponseNorm, GLU, Mish, SELU + AlphaDropout, CELU, Unflatten), an ``OrderedDict``
Sequential with ``register_parameter`` / ``register_buffer`` weights, products spelt
``torch.linalg.matmul`` / ``Tensor.addmm`` / ``torch.linalg.multi_dot`` / ``torch.addmv``, a
static hypernetwork, a ``torch.vmap`` ensemble, cross-layer weight sharing by assignment, a
per-sample loop, ``F.multi_head_attention_forward`` called with Parameters (OpenAI CLIP's
attention pooling) and ``torch.lstm_cell`` / ``torch.gru_cell`` stepped by hand; and, outside
the registry, a complex-valued ``nn.Linear`` and a conv's weight read by a Linear through
``.view``. (A Perceiver, T5's bias, GQA, an ``nn.Transformer`` with a causal mask, SE with
Hardsigmoid, EmbeddingBag, Bilinear, ``torch.utils.checkpoint``, hooks, channels_last, scripted
submodules and ``functional_call`` are earlier zoos'.)

What it found, fixed: a weight multiplied by ``torch.linalg.matmul``,
``torch.linalg.multi_dot``, ``torch.chain_matmul``, ``torch.addmv`` or the method
``Tensor.addmm`` (and ``addmv``, ``baddbmm``, ``addbmm``) computed in float unnamed (the watch
knew ``torch.matmul`` and ``torch.addmm`` only); a weight applied under ``torch.vmap`` (an
ensemble's stacked weights through ``functional_call``) computed in float unnamed (it arrives
wrapped, its storage hidden); the weight matrices passed to ``F.multi_head_attention_forward``
or ``torch.lstm_cell`` / ``gru_cell`` computed in float unnamed (their products run inside the
call, unwatched); an ``nn.Linear`` of complex weights was mapped by its real parts, the
imaginary ones dropped (65 % off float, silently): it is kept digital with the reason now, in
deploy and prepare."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    build_seeded,
    check_every_matrix,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_new_models import prepare_step_deploy
from .test_zoo5 import _quiet, _rel, _rram_noise_free
from .zoo12_models import (
    ClassicActivations,
    ComplexHead,
    ComplexRoPE,
    ConvWeightAsLinear,
    CoordConv,
    DeformableSampling,
    FiLMNet,
    FunctionalCells,
    FunctionalMHA,
    Involution,
    KVCacheLM,
    MixtureOfDepths,
    MultiQuery,
    OddProducts,
    PerSampleLoop,
    PixelShuffleSR,
    RegisteredWeights,
    SegNet,
    Seq2SeqGreedy,
    SpatialTransformer,
    StaticHyperConv,
    TiedLinears,
    ToMe,
    VmapEnsemble,
)
from .zoo_tests import zoo_deploy_tests

flat = flat_output

ZOO12 = {
    "seq2seq-greedy": (Seq2SeqGreedy,
                       lambda: (torch.tensor([[3, 4, 5, 0], [6, 2, 0, 0], [7, 8, 9, 4]]),)),
    "kv-cache-lm": (KVCacheLM, lambda: (torch.randint(1, 12, (3, 4)),)),
    "complex-rope": (ComplexRoPE, lambda: (torch.randn(3, 5, 8),)),
    "multi-query": (MultiQuery, lambda: (torch.randn(3, 6, 8),)),
    "mixture-of-depths": (MixtureOfDepths, lambda: (torch.randn(3, 6, 4),)),
    "tome": (ToMe, lambda: (torch.randn(3, 8, 4),)),
    "pixelshuffle-sr": (PixelShuffleSR, lambda: (torch.randn(3, 1, 8, 8),)),
    "deformable": (DeformableSampling, lambda: (torch.randn(3, 2, 6, 6),)),
    "stn": (SpatialTransformer, lambda: (torch.randn(3, 1, 8, 8),)),
    "coordconv": (CoordConv, lambda: (torch.randn(3, 1, 8, 8),)),
    "involution": (Involution, lambda: (torch.randn(3, 1, 6, 6),)),
    "film": (FiLMNet, lambda: (torch.randn(3, 2, 6, 6), torch.randn(3, 4))),
    "segnet": (SegNet, lambda: (torch.randn(3, 1, 8, 8),)),
    "classic-acts": (ClassicActivations, lambda: (torch.randn(3, 1, 6, 6),)),
    "registered": (RegisteredWeights, lambda: (torch.randn(3, 8),)),
    "odd-products": (OddProducts, lambda: (torch.randn(3, 4),)),
    "static-hyper": (StaticHyperConv, lambda: (torch.randn(3, 2, 6, 6),)),
    "vmap-ensemble": (VmapEnsemble, lambda: (torch.randn(3, 4),)),
    "tied-linears": (TiedLinears, lambda: (torch.randn(3, 4),)),
    "per-sample-loop": (PerSampleLoop, lambda: (torch.randn(3, 4),)),
    "functional-mha": (FunctionalMHA, lambda: (torch.randn(3, 5, 4),)),
    "functional-cells": (FunctionalCells, lambda: (torch.randn(3, 4, 4),)),
}

# what stays digital, by name: the embeddings; the attention products of the module whose
# forward computes them (nn.MultiheadAttention's own, the hand-written ones' blocks, SDPA's
# caller, ToMe's matching scores, the hypernetwork's generated-kernel conv); the weights
# applied by F.linear / torch.linalg / addmm / addmv / vmap outside a mappable module
_DIGITAL = {
    "seq2seq-greedy": {"emb", "encoder.layers.0.self_attn", "decoder.layers.0.self_attn",
                       "decoder.layers.0.multihead_attn"},
    "kv-cache-lm": {"emb", "blocks.0", "blocks.1"},
    "complex-rope": {"model"},
    "multi-query": {"model"},
    "tome": {"attn", "model"},
    "registered": {"proj_weight", "random_proj"},
    "odd-products": {"w_matmul", "w_addmm", "w_dot1", "w_dot2", "w_mv"},
    "static-hyper": {"model"},
    "vmap-ensemble": {"stacked.0_weight", "stacked.2_weight"},
    "functional-mha": {"in_proj_weight", "out_proj_weight", "model"},
    "functional-cells": {"lstm_ih", "lstm_hh", "gru_ih", "gru_hh"},
}
# 2-D parameters no product reads: learned positions (added to the embeddings), the static
# hypernetwork's layer code (the mapped Linear's input, quantized at its DACs)
# and the ensemble's stacked biases ((members, features): one bias per member)
_NOT_MATRICES = {"seq2seq-greedy": ("pos",), "kv-cache-lm": ("pos",), "static-hyper": ("z",),
                 "vmap-ensemble": ("stacked.0_bias", "stacked.2_bias")}
# greedy decoding feeds each step's argmax to the next: rram-22nm's conversion noise flips one
# token of the encoder-decoder's second step, and every later logit is another sequence's
# (1.12 relative error); noise-free its tokens are the float model's
_NOISE_FREE = {"seq2seq-greedy"}
# SegNet's unpooling puts each value where its block's maximum was: a maximum the 8-b
# quantization of the encoder moves to a neighbouring pixel moves that value (4.5 % here)
_TOL = {"segnet": 0.06}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO12[name], dtype)


# the deploy (lossless, rram-22nm) and prepare tests of every model
(test_lossless_deploy_is_the_quantized_model_and_near_float,
 test_rram_deploy_runs_reports_and_accounts_for_every_matrix,
 test_prepare_steps_and_the_twin_deploys_to_what_it_computes) = zoo_deploy_tests(
    ZOO12, _build, _DIGITAL, not_matrices=_NOT_MATRICES, noise_free=_NOISE_FREE, tol=_TOL)


# ---------------------------------------------------------------------------------------------
# what it found
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", ["deploy", "prepare"])
def test_weights_through_linalg_matmul_multi_dot_addmv_or_tensor_addmm_are_named(run):
    """``torch.linalg.matmul``, ``torch.linalg.multi_dot`` (both weights), ``torch.addmv`` and
    the method ``bias.addmm(x, W)`` computed in float with their weights unnamed (the watch
    knew ``torch.matmul`` / ``torch.addmm``): each weight is named now, warned about, its
    bias (``addmm``'s and ``addmv``'s first operand) not."""
    model, args = _build("odd-products")
    with pytest.warns(UserWarning, match=r"5 weight\(s\) reach a matrix product"):
        out = (cimsim.deploy if run == "deploy" else prepare)(
            model, lossless_chip("channel"), args)
    assert {d[0] for d in out.digital} == _DIGITAL["odd-products"]


def test_chain_matmul_and_method_forms_name_their_weights():
    """The other spellings the fix adds, each alone: ``torch.chain_matmul``, ``Tensor.addmv``,
    ``Tensor.baddbmm``, ``Tensor.addbmm``."""

    class Spelt(nn.Module):
        def __init__(self, how: str):
            super().__init__()
            self.fc = nn.Linear(4, 5)
            self.w = nn.Parameter(torch.randn(5, 5))
            self.b = nn.Parameter(torch.zeros(5))
            self.how = how

        def forward(self, x):
            h = self.fc(x)
            if self.how == "chain_matmul":
                return torch.stack([torch.chain_matmul(r[None], self.w)[0] for r in h])
            if self.how == "addmv":
                return torch.stack([self.b.addmv(self.w, r) for r in h])
            if self.how == "baddbmm":
                return self.b.baddbmm(h[:, None], self.w.expand(len(h), 5, 5))[:, 0]
            return torch.stack([self.b[None].addbmm(r[None, None], self.w[None])[0] for r in h])

    for how in ("chain_matmul", "addmv", "baddbmm", "addbmm"):
        torch.manual_seed(0)
        sim = _quiet(cimsim.deploy, Spelt(how).eval(), lossless_chip("channel"),
                     torch.randn(3, 4))
        assert [d[:2] for d in sim.digital] == [("w", "parameter")], how


def test_a_vmap_ensembles_stacked_weights_are_named():
    """``torch.vmap(functional_call)`` over weights stacked by ``stack_module_state``: inside
    vmap every operand is a wrapper whose storage torch hides, so the stacked weights
    reaching ``F.linear`` computed in float unnamed; they are named (the biases are no
    factor), the head maps, equal to the integer re-implementation."""
    model, args = _build("vmap-ensemble")
    with pytest.warns(UserWarning, match=r"stacked\.0_weight \(linear\), stacked\.2_weight"):
        sim = cimsim.deploy(model, lossless_chip("channel"), args)
    assert list(sim.sim_layers) == ["head"]
    assert [d[:2] for d in sim.digital] == [("stacked.0_weight", "parameter"),
                                            ("stacked.2_weight", "parameter")]


def test_a_model_that_is_only_a_vmap_ensemble_is_refused_naming_its_weights():
    """Without the head nothing maps: the refusal said only "no Linear, Conv ... layer"; it
    names the stacked parameters now, which the user would move into layers."""
    model, args = _build("vmap-ensemble")
    model.head = nn.Identity()
    with pytest.raises(MappingError, match=r"no layer can be mapped.*outside such layers: "
                       r"stacked\.0_bias \(3x6\), stacked\.0_weight \(3x6x4\)"):
        cimsim.deploy(model, lossless_chip("channel"), args)


def test_a_complex_linear_is_kept_digital_with_the_reason():
    """``nn.Linear(dtype=torch.cfloat)`` was mapped by the real parts of its weights (the
    imaginary ones dropped, 65 % off float here, nothing said): it is kept digital, computing in
    complex float, named with the reason, by deploy and prepare; the real trunk maps."""
    torch.manual_seed(0)
    model, x = ComplexHead().eval(), torch.randn(3, 4)
    with pytest.warns(UserWarning, match="head"):
        sim = cimsim.deploy(model, lossless_chip("channel"), x)
    assert list(sim.sim_layers) == ["fc"]
    ((name, kind, reason),) = sim.digital
    assert (name, kind) == ("head", "Linear") and "complex-valued weights" in reason
    with torch.no_grad():
        want = model(x)
        assert_bitwise(sim(x), reference_model(model, sim)(x))
    assert _rel(sim(x), want) < 0.03
    prep = _quiet(prepare, model, lossless_chip("channel"), x)
    assert [d[:2] for d in prep.digital] == [("head", "Linear")]
    prep.train()(x).pow(2).mean().backward()  # the complex head trains in float
    assert prep.model.head.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(prep.deploy()(x), prep.eval()(x), rtol=1e-5, atol=1e-6)
    # any mappable layer type: a complex Conv1d beside a real Linear
    conv = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (2, 2)), _Complex(),
                         nn.Conv1d(2, 3, 2, dtype=torch.cfloat)).eval()
    sim = _quiet(cimsim.deploy, conv, lossless_chip("channel"), x)
    assert [d[:2] for d in sim.digital] == [("3", "Conv1d")] and list(sim.sim_layers) == ["0"]
    with torch.no_grad():
        assert _rel(sim(x).abs(), conv(x).abs()) < 0.03


class _Complex(nn.Module):
    def forward(self, x):
        return x.to(torch.cfloat)


def test_a_conv_weight_read_by_a_linear_through_view_is_refused_naming_the_conv():
    """``F.linear(pooled, conv.weight.view(out, in))`` beside the conv: its weight is on the
    arrays, so the product cannot be simulated; deploy and prepare name the conv and the way
    out (as the eleventh zoo's tied decoder), and excluding it keeps the model in float."""
    torch.manual_seed(0)
    model, x = ConvWeightAsLinear().eval(), torch.randn(3, 3, 4, 4)
    for run in (cimsim.deploy, prepare):
        with pytest.raises(AttributeError, match=r"conv: the model reads \.weight of a mapped "
                                                 r"layer.*exclude the layer"):
            run(model, lossless_chip("channel"), x)


# ---------------------------------------------------------------------------------------------
# decoding in the forward
# ---------------------------------------------------------------------------------------------
def test_kv_cache_decoding_equals_recomputing_the_sequence_deployed_too():
    """The LM's cached greedy decoding (a list of ``[k, v]`` per block, one new token a step)
    gives the logits of re-running the whole sequence each step, in float and deployed (the
    same tokens chosen; the sums differ in order only)."""
    model, (ids,) = _build("kv-cache-lm")
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), (ids,))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model.full_recompute(ids))
        got = sim(ids)
        full = sim.model.full_recompute(ids)
    assert torch.equal(got.argmax(-1), full.argmax(-1))
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-5)


def test_greedy_seq2seq_picks_the_float_models_tokens():
    """The encoder-decoder's greedy tokens, deployed on ``ideal`` and on ``rram-22nm`` with
    its conversion noise off, are the float model's (each step's logits feed the next
    step's input)."""
    model, (src,) = _build("seq2seq-greedy")
    with torch.no_grad():
        want = model(src).argmax(-1)
    for chip in (lossless_chip("channel"), _rram_noise_free()):
        sim = _quiet(cimsim.deploy, model, chip, (src,))
        assert torch.equal(sim(src).argmax(-1), want)


def test_weights_shared_by_assignment_stay_one_weight_in_the_twin():
    """``self.b.weight = self.mid.weight``: the twin keeps one weight for both layers (one
    gradient step moves both; each layer keeps its own learned weight scale, so their codes
    may differ by one), and the deployed twin computes what the twin does."""
    model, args = _build("tied-linears", torch.float64)
    prep = prepare_step_deploy(model, lossless_chip("channel"), args, 0)
    assert prep.model.b.twins[0].weight is prep.model.mid.twins[0].weight
    assert sum(p is prep.model.mid.twins[0].weight for p in prep.parameters()) == 1


def test_the_audit_script_runs_one_zoo_by_name(capsys):
    """``scripts/audit_models_on_chips.py --zoo zoo12``: the registry's models, none taken by
    an earlier zoo's name (no ``zoo12/`` label), and only those."""
    from scripts.audit_models_on_chips import main

    assert main(["--zoo", "zoo12", "--chips", "ideal", "--list"]) == 0
    models = capsys.readouterr().out.splitlines()[0].split()[1:]
    assert models == list(ZOO12)


@pytest.mark.parametrize("how", ["masked_fill", "where", "mul_bool", "made_in_forward"])
def test_a_weight_masked_by_a_constant_is_still_the_weight(how):
    """A weight masked by a bool buffer (MADE's autoregressive mask, a custom pruning mask:
    ``W.masked_fill(~mask, 0)``, ``torch.where(mask, W, 0)``, ``W * mask``) or by a mask the
    forward builds from factories alone (``torch.ones(...).tril()``) was no weight any more
    after the masking: its product was listed as the module's "activation products" and the
    weight itself was unnamed (check_every_matrix failed). The mask does not depend on the
    input, so the masked tensor is the weight's: named, listed digital."""

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 6))
            self.register_buffer("mask", torch.ones(6, 6).tril().bool())
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            if how == "masked_fill":
                w = self.w.masked_fill(~self.mask, 0.0)
            elif how == "where":
                w = torch.where(self.mask, self.w, 0.0)
            elif how == "mul_bool":
                w = self.w * self.mask
            else:
                w = self.w * torch.ones(6, 6).tril()
            return self.head(torch.relu(x @ w.t()))

    torch.manual_seed(0)
    model = Masked().eval()
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), torch.randn(8, 6))
    assert [d[:2] for d in sim.digital] == [("w", "parameter")]
    check_every_matrix(model, sim, {"w"})


@pytest.mark.parametrize("look_up", ["embedding", "embedding_bag"])
def test_a_table_read_by_a_functional_look_up_is_listed(look_up):
    """``F.embedding(ids, self.table)`` on a Parameter (no nn.Embedding) read the table in
    float with nothing listed (zoo12's report); it is listed digital as a look-up now, like an
    nn.Embedding's row, and the rest maps."""

    class Looked(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(10, 6))
            self.head = nn.Linear(6, 3)

        def forward(self, ids):
            if look_up == "embedding":
                h = torch.nn.functional.embedding(ids, self.table).mean(1)
            else:
                h = torch.nn.functional.embedding_bag(ids, self.table, mode="mean")
            return self.head(h)

    torch.manual_seed(0)
    model = Looked().eval()
    ids = torch.randint(0, 10, (8, 4))
    for run in (cimsim.deploy, prepare):
        out = _quiet(run, model, lossless_chip("channel"), ids)
        assert [d[:2] for d in out.digital] == [("table", "parameter")]
        assert "look-up" in out.digital[0][2]
    check_every_matrix(model, _quiet(cimsim.deploy, model, lossless_chip("channel"), ids),
                       {"table"})


def test_listing_the_audit_leaves_the_process_threads(capsys, monkeypatch):
    """``main([... '--list'])`` in a test process set ``NUMBA_NUM_THREADS`` in its
    environment (and torch's threads): every later Numba compile then failed, "Cannot set
    NUMBA_NUM_THREADS to a different value once the threads have been launched" (four tests
    of the default run, in whatever order followed it). Listing leaves both as they were."""
    import os

    from scripts.audit_models_on_chips import main

    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    assert main(["--zoo", "zoo12", "--chips", "ideal", "--list"]) == 0
    capsys.readouterr()
    assert "NUMBA_NUM_THREADS" not in os.environ
    assert torch.get_num_threads() == threads
