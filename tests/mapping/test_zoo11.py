"""An eleventh zoo (worktree ``zoo11``, after ``test_zoo10.py``): weights used in unusual ways
(models in ``zoo11_models.py``). Stored patterns used as keys and values (a modern Hopfield
layer), a codebook read by ``torch.cdist`` (VQ-VAE), a Gumbel-softmax draw in the forward,
learned queries (a Set Transformer's inducing points and PMA seed), a kNN graph built in the
forward (DGCNN's EdgeConv), one tower on three inputs (triplet), two convolutions called 12
times per forward (ODE-Net's RK4 loop), a keyword string choosing a head from a ModuleDict and
``return_features``, an FFT long convolution with a generated filter (Hyena), a matrix memory
(xLSTM's mLSTM), ALiBi with a sliding window as SDPA's float mask, weights recomputed in the
forward (DoRA, BitNet b1.58, NFNet's standardisation as a parametrization), a decoder tied to
the encoder's transpose, a ParameterList, experts in one 3-D Parameter (Mixtral), embeddings with
``max_norm`` and ``padding_idx``, an LSTM on a PackedSequence, ``.half()`` / ``.double()``
models and ``skip_init``. (An early exit, a Siamese pair, a neural ODE over an MLP and a
forward-overriding standardised conv are earlier zoos'.)

What it found: a weight read by a distance (the VQ-VAE's codebook in ``torch.cdist``) computed
in float unlisted, and expert banks gathered by an index before their product (Mixtral's
``self.w1[idx]``) were listed only as a product of activations, the weights unnamed: both are
named now. An LSTM fed a PackedSequence was refused ("packed sequences are not supported"): it
runs now, each sample to its own length (``test_recurrent.py -k packed`` checks it sample by
sample)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cimsim
from cimsim.errors import MappingError
from cimsim.mapping.loaders import load_model
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    build_seeded,
    check_every_matrix,
    check_lossy_run,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy
from .test_zoo5 import _quiet, _rram_noise_free
from .test_zoo10 import _call  # the global generator seeded first: the Gumbel draw
from .zoo11_models import (
    DGCNN,
    MLSTM,
    VQVAE,
    AlibiLM,
    BatchedExperts,
    BitNet,
    CosinePrototypes,
    DoRANet,
    GumbelNet,
    Hopfield,
    Hyena,
    MaxNormEmbedding,
    MultiTask,
    NFNet,
    ODENet,
    PackedLSTM,
    PaddedEmbedding,
    ParamListMLP,
    SetTransformer,
    SkipInitNet,
    TiedAutoencoder,
    Triplet,
)

flat = flat_output


class BothTasks(nn.Module):
    """The multi-task model with both heads (a string argument each) and its features in one
    forward: the recipes call a model on positional tensors."""

    def __init__(self):
        super().__init__()
        self.model = MultiTask()

    def forward(self, x):
        cls, feats = self.model(x, task="cls", return_features=True)
        return torch.cat([cls, self.model(x, task="reg"), feats], dim=-1)


def _padded_ids():
    return (torch.tensor([[3, 4, 0, 0], [5, 1, 2, 0], [7, 8, 9, 10]]),)


ZOO11 = {
    "hopfield": (Hopfield, lambda: (torch.randn(3, 8),)),
    "vqvae": (VQVAE, lambda: (torch.randn(3, 8),)),
    "prototypes": (CosinePrototypes, lambda: (torch.randn(3, 8),)),
    "gumbel": (GumbelNet, lambda: (torch.randn(3, 6),)),
    "set-transformer": (SetTransformer, lambda: (torch.randn(3, 5, 3),)),
    "dgcnn": (DGCNN, lambda: (torch.randn(3, 3, 7),)),
    "triplet": (Triplet, lambda: (torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8))),
    "ode-net": (ODENet, lambda: (torch.randn(3, 1, 8, 8),)),
    "multitask": (BothTasks, lambda: (torch.randn(3, 8),)),
    "hyena": (Hyena, lambda: (torch.randn(3, 10, 6),)),
    "mlstm": (MLSTM, lambda: (torch.randn(3, 5, 4),)),
    "alibi": (AlibiLM, lambda: (torch.randint(0, 10, (3, 7)),)),
    "dora": (DoRANet, lambda: (torch.randn(3, 8),)),
    "bitnet": (BitNet, lambda: (torch.randn(3, 8),)),
    "nfnet": (NFNet, lambda: (torch.randn(3, 2, 6, 6),)),
    "paramlist": (ParamListMLP, lambda: (torch.randn(3, 8),)),
    "experts": (BatchedExperts, lambda: (torch.randn(3, 8),)),
    "maxnorm-emb": (MaxNormEmbedding, lambda: (torch.randint(0, 12, (3, 5)),)),
    "padded-emb": (PaddedEmbedding, _padded_ids),
    "skip-init": (SkipInitNet, lambda: (torch.randn(3, 8),)),
    "packed-lstm": (lambda: PackedLSTM(bidirectional=True),
                    lambda: (torch.randn(3, 5, 4), torch.tensor([5, 2, 3]))),
}

# what stays digital, by name: the stored patterns, the codebook (read by cdist), the
# prototypes (read by a cosine similarity), the expert
# banks (gathered by the router's index) and the ParameterList's weights (functional weights),
# DoRA's recomputed weight (named by every weight it is computed from), the BitNet and NFNet
# layers overriding their forward, the embeddings, the products of activations (the set
# transformer's attentions, the ALiBi model's SDPA, the mLSTM's matrix memory)
_DIGITAL = {
    "hopfield": {"patterns"},
    "vqvae": {"codebook"},
    "prototypes": {"prototypes"},
    "set-transformer": {"isab.mab1", "isab.mab2", "pma"},
    "mlstm": {"model"},
    "alibi": {"emb", "attn"},
    "dora": {"fc1.lora_a", "fc1.lora_b", "fc1.magnitude", "fc1.weight"},
    "bitnet": {"fc1", "fc2"},
    "paramlist": {"weights.0", "weights.1", "weights.2"},
    "experts": {"w1", "w2"},
    "maxnorm-emb": {"emb"},
    "padded-emb": {"emb"},
}
# parameters of 2+ dimensions no product reads: the set transformer's inducing points and PMA
# seed (learned inputs of the mapped attentions, quantized at their DACs as any activation),
# NFNet's (1, C, 1, 1) gain (element-wise)
_NOT_MATRICES = {"set-transformer": ("isab.inducing", "seed"), "nfnet": ("gain",)}
_SAMPLED = {"gumbel"}
# the integer re-implementation covers Linear / Conv / MHA; the LSTM is not in it
_NOT_EXACT = {"packed-lstm"}  # draws from the global generator in the forward: seeded per call


class Flat(nn.Module):
    """The model's outputs as one tensor; ``sampled``: the global generator seeded first."""

    def __init__(self, model: nn.Module, sampled: bool = False):
        super().__init__()
        self.model, self.sampled = model, sampled

    def forward(self, *args):
        if self.sampled:
            torch.manual_seed(7)
        return flat(self.model(*args))


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO11[name], dtype)


@pytest.mark.parametrize("name", list(ZOO11))
def test_lossless_deploy_is_the_quantized_model_and_near_float(name):
    model, args = _build(name)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    with torch.no_grad():
        ref = _call(model, args)
        want = None if name in _NOT_EXACT else _call(reference_model(model, sim), args)
    got = _call(sim, args)
    if name not in _NOT_EXACT:
        assert_bitwise(flat(got), flat(want))
    assert float((flat(got) - flat(ref)).norm() / flat(ref).norm()) < 0.03
    assert sim.n_inferences == args[0].shape[0]
    assert {d[0] for d in sim.digital} == _DIGITAL.get(name, set())


@pytest.mark.parametrize("name", list(ZOO11))
def test_rram_deploy_runs_reports_and_accounts_for_every_matrix(name):
    model, args = _build(name)
    with torch.no_grad():
        want = flat(_call(model, args))
    # the experts' top-2 routing flips under rram-22nm's conversion noise (another expert's
    # output, beyond the zoos' bound); noise-free it stays within it
    chip = _rram_noise_free() if name == "experts" else _rram()
    sim = _quiet(cimsim.deploy, model, chip, args)
    check_lossy_run(flat(_call(sim, args)), want, sim)
    check_every_matrix(model, sim, _DIGITAL.get(name, set()), _NOT_MATRICES.get(name, ()))


@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", list(ZOO11))
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    model, args = _build(name, torch.float64)
    chip_cfg = lossless_chip("channel") if chip == "ideal" else _rram_noise_free()
    prep = prepare_step_deploy(Flat(model, name in _SAMPLED), chip_cfg, args, 0)
    assert {d[0] for d in prep.digital} == {"model." + d if d != "model" else "model"
                                            for d in _DIGITAL.get(name, set())}


# ---------------------------------------------------------------------------------------------
# a string choosing the head; data-dependent depth: what calibration reaches
# ---------------------------------------------------------------------------------------------
def test_a_head_chosen_by_a_keyword_string_is_calibrated_by_one_keyword_batch_per_task():
    """``forward(x, task="cls", return_features=False)``: a list of keyword batches, one per
    task (the sixth zoo routes a positional string and excludes the head not calibrated),
    calibrates every head; each call's string picks its head and ``return_features`` adds the
    trunk's features, both equal to the integer re-implementation."""
    torch.manual_seed(0)
    model = MultiTask().eval()
    x = torch.randn(4, 8)
    sim = cimsim.deploy(model, lossless_chip("channel"),
                        [{"x": x, "task": "cls"}, {"x": x, "task": "reg"}])
    assert set(sim.sim_layers) == {"trunk.0", "trunk.2", "heads.cls", "heads.reg.0",
                                   "heads.reg.2"}
    assert sim.digital == []
    ref = reference_model(model, sim)
    with torch.no_grad():
        for task in ("cls", "reg"):
            got, feats = sim(x, task=task, return_features=True)
            want, want_feats = ref(x, task=task, return_features=True)
            assert_bitwise(got, want)
            assert_bitwise(feats, want_feats)
            assert_bitwise(sim(x, task=task), want)


# ---------------------------------------------------------------------------------------------
# a decoder tied to the encoder's transpose
# ---------------------------------------------------------------------------------------------
def test_a_decoder_tied_to_the_encoders_transpose_is_named():
    """``F.linear(h, self.encoder.weight.t())``: the encoder's weight is on the arrays, so the
    decoder's product cannot be simulated: deploy and prepare name the layer and the way out
    (compute through the layer, or exclude it)."""
    torch.manual_seed(0)
    model = TiedAutoencoder().eval()
    x = torch.randn(3, 10)
    for run in (cimsim.deploy, prepare):
        with pytest.raises(AttributeError, match=r"encoder: the model reads \.weight of a mapped "
                                                 r"layer.*exclude the layer"):
            run(model, lossless_chip("channel"), x)
    # excluded, nothing is left to map: said so, the encoder named as kept digital
    with pytest.raises(MappingError, match=r"no layer can be mapped.*kept digital: encoder "
                                           r"\(Linear: excluded by the user\)"):
        cimsim.deploy(model, lossless_chip("channel"), x, exclude=["encoder"])


# ---------------------------------------------------------------------------------------------
# .half() / .double(), a PackedSequence
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
@pytest.mark.parametrize("name", ["skip-init", "nfnet", "hopfield"])
def test_a_half_or_double_model_deploys_in_its_dtype(name, dtype):
    """A model converted with ``.half()`` / ``.double()`` and fed that dtype: outputs in it,
    equal to the integer re-implementation on ``ideal``, finite on ``rram-22nm``."""
    model, args = _build(name, dtype)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    with torch.no_grad():
        want, ref = model(*args), reference_model(model, sim)(*args)
    got = sim(*args)
    assert got.dtype == dtype
    assert_bitwise(got, ref)
    assert float((got.double() - want.double()).norm() / want.double().norm()) < 0.03
    lossy = _quiet(cimsim.deploy, model, _rram(), args)(*args)
    assert lossy.dtype == dtype and torch.isfinite(lossy).all()


def test_embedding_max_norm_renormalises_the_deployed_copy_not_the_model():
    """``nn.Embedding(max_norm=...)`` rewrites the rows it looks up in place: deploy's
    calibration renormalises its own copy; the user's model is left as it was."""
    model, args = _build("maxnorm-emb")
    before = model.emb.weight.detach().clone()
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    assert torch.equal(model.emb.weight, before)
    rows = sim.model.emb.weight[args[0].unique()]
    assert float(rows.detach().norm(dim=-1).max()) <= 1.0 + 1e-6


def test_padding_idx_row_stays_zero_and_untrained_in_the_twin():
    """``nn.Embedding(padding_idx=0)``: the twin keeps the embedding digital, its padding row
    zero and without gradient after a step."""
    model, args = _build("padded-emb", torch.float64)
    prep = _quiet(prepare, model, lossless_chip("channel"), args)
    prep.train()(*args).pow(2).mean().backward()
    emb = prep.model.emb
    assert torch.equal(emb.weight.grad[0], torch.zeros_like(emb.weight.grad[0]))
    assert emb.weight.grad[1:].abs().sum() > 0


@pytest.mark.parametrize("make, weight", [(VQVAE, "codebook"), (CosinePrototypes, "prototypes")])
def test_an_exported_codebook_or_prototype_read_by_a_distance_is_named(make, weight, tmp_path):
    """The same models through ``torch.export`` (``.pt2``): their ``aten.cdist`` /
    ``aten.cosine_similarity`` calls name the weight as the Python model's calls do."""
    torch.manual_seed(0)
    model, x = make().eval(), torch.randn(3, 8)
    dims = ({0: torch.export.Dim("b", min=2, max=25)},)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dims), tmp_path / "m.pt2")
    loaded = load_model(str(tmp_path / "m.pt2"), x)
    with pytest.warns(UserWarning, match=rf"reach a matrix product .*: {weight} \("):
        sim = cimsim.deploy(loaded, lossless_chip("channel"), x)
    assert [d[:2] for d in sim.digital] == [(weight, "parameter")]
    with torch.no_grad():
        assert torch.equal(sim(x), _quiet(cimsim.deploy, model, lossless_chip("channel"), x)(x))
