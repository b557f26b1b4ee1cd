"""A sixth zoo of models cimsim was not written for (worktree ``zoo6``, after
``test_new_models.py`` and ``test_zoo2.py`` .. ``test_zoo5.py``): speech, graphs, detection,
segmentation, recommenders, spiking nets and odd control flow, written small (tiny widths, no
torchaudio / torchvision / torch_geometric import) the way their reference code writes them.
A wav2vec2-style convolutional feature extractor (Conv1d + GroupNorm + GELU) into a Conformer
block (macaron half-step FFNs, MHSA, a convolution module: pointwise Conv1d, GLU, depthwise
Conv1d, BatchNorm1d, SiLU); an RNN-T joint network (encoder and predictor broadcast-added);
GraphSAGE and GIN message passing by ``index_add_`` / ``scatter_reduce`` over an edge_index and a
GAT layer (per-edge attention, a softmax over each node's neighbours); an FPN with a
RetinaNet-style head shared by every level, returning a dict of lists; DeepLab's ASPP and a
SegFormer efficient-attention block (a strided-conv spatial reduction); DLRM (EmbeddingBag with
offsets and per_sample_weights, a pairwise dot interaction by ``bmm`` and ``triu_indices``); an
snnTorch-style LIF net stepped over time (a surrogate-gradient ``autograd.Function``); ALBERT's
one layer applied N times (weight_norm'ed, new API); an early-exit net; a model of keyword-only
inputs returning a dataclass; ``nn.ModuleDict`` routing by a string; QuantStub / DeQuantStub /
FakeQuantize left in a float model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.ao import quantization as tq
from torch.nn.utils import parametrizations as P

import cimsim
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    build_seeded,
    check_every_matrix,
    check_lossless_near_float,
    check_lossy_run,
    flat_output,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy
from .test_zoo5 import _quiet, _rram_noise_free


# ---------------------------------------------------------------------------------------------
# speech: wav2vec2 feature extractor -> Conformer block; an RNN-T joint network
# ---------------------------------------------------------------------------------------------
class FeatureExtractor(nn.Module):
    """wav2vec2's conv stack in small: the first conv GroupNorm'ed per channel, GELU after each."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv0 = nn.Conv1d(1, c, 10, stride=5, bias=False)
        self.norm0 = nn.GroupNorm(c, c)
        self.conv1 = nn.Conv1d(c, c, 3, stride=2, bias=False)

    def forward(self, wav):  # (B, L)
        x = F.gelu(self.norm0(self.conv0(wav[:, None])))
        return F.gelu(self.conv1(x))  # (B, C, T)


class ConformerConv(nn.Module):
    def __init__(self, d: int, k: int = 3):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.bn = nn.BatchNorm1d(d)
        self.pw2 = nn.Conv1d(d, d, 1)

    def forward(self, x):  # (B, T, d)
        y = self.pw1(self.norm(x).transpose(1, 2))
        y = F.glu(y, dim=1)
        y = F.silu(self.bn(self.dw(y)))
        return self.pw2(y).transpose(1, 2)


class FFN(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(self.norm(x))))


class Conformer(nn.Module):
    """wav2vec2 features -> feature projection -> one Conformer block -> a CTC head."""

    def __init__(self, c: int = 8, d: int = 16, vocab: int = 6):
        super().__init__()
        self.features = FeatureExtractor(c)
        self.fp_norm, self.fp = nn.LayerNorm(c), nn.Linear(c, d)
        self.ffn1, self.ffn2 = FFN(d), FFN(d)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.conv = ConformerConv(d)
        self.out_norm = nn.LayerNorm(d)
        self.ctc = nn.Linear(d, vocab)

    def forward(self, wav):
        x = self.fp(self.fp_norm(self.features(wav).transpose(1, 2)))
        x = x + 0.5 * self.ffn1(x)
        h = self.attn_norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.conv(x)
        x = self.out_norm(x + 0.5 * self.ffn2(x))
        return self.ctc(x).log_softmax(-1)


class RNNTJoint(nn.Module):
    """An RNN-T: an encoder, a predictor (embedding + LSTM over the labels), the joint network
    ``Linear(tanh(enc[:, :, None] + pred[:, None]))`` over every (t, u) pair."""

    def __init__(self, n_feat: int = 6, vocab: int = 7, d: int = 12, j: int = 10):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_feat, d), nn.ReLU(), nn.Linear(d, d))
        self.embed = nn.Embedding(vocab, d)
        self.predictor = nn.LSTM(d, d, batch_first=True)
        self.enc_proj, self.pred_proj = nn.Linear(d, j), nn.Linear(d, j, bias=False)
        self.out = nn.Linear(j, vocab)

    def forward(self, feats, labels):  # (B, T, F), (B, U)
        enc = self.enc_proj(self.encoder(feats))
        blank = torch.zeros_like(labels[:, :1])
        pred, _ = self.predictor(self.embed(torch.cat([blank, labels], 1)))
        joint = torch.tanh(enc.unsqueeze(2) + self.pred_proj(pred).unsqueeze(1))
        return self.out(joint)  # (B, T, U + 1, V)


# ---------------------------------------------------------------------------------------------
# graphs: GraphSAGE, GIN, GAT over an edge_index (torch_geometric's conventions, no import)
# ---------------------------------------------------------------------------------------------
class SAGEConv(nn.Module):
    """Mean aggregation by ``index_add_`` (messages flow source -> target)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.lin_l, self.lin_r = nn.Linear(c_in, c_out), nn.Linear(c_in, c_out, bias=False)

    def forward(self, x, edge_index):
        src, dst = edge_index
        agg = torch.zeros_like(x).index_add_(0, dst, x[src])
        deg = torch.zeros(x.size(0), dtype=x.dtype).index_add_(0, dst, torch.ones_like(dst,
                                                                                dtype=x.dtype))
        return self.lin_l(agg / deg.clamp(min=1)[:, None]) + self.lin_r(x)


class GINConv(nn.Module):
    """Sum aggregation by ``scatter_reduce``, (1 + eps) x + sum, then an MLP."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.eps = nn.Parameter(torch.tensor(0.1))
        self.mlp = nn.Sequential(nn.Linear(c_in, c_out), nn.ReLU(), nn.Linear(c_out, c_out))

    def forward(self, x, edge_index):
        src, dst = edge_index
        idx = dst[:, None].expand(-1, x.size(1))
        agg = torch.zeros_like(x).scatter_reduce(0, idx, x[src], reduce="sum",
                                                 include_self=False)
        return self.mlp((1 + self.eps) * x + agg)


class GATConv(nn.Module):
    """Per-edge attention: ``a_src . Wh_j + a_dst . Wh_i``, LeakyReLU, a softmax over each
    target's incoming edges (max by ``scatter_reduce('amax')``, sums by ``index_add_``)."""

    def __init__(self, c_in: int, c_out: int, heads: int = 2):
        super().__init__()
        self.heads, self.c = heads, c_out
        self.lin = nn.Linear(c_in, heads * c_out, bias=False)
        self.att_src = nn.Parameter(torch.randn(1, heads, c_out) * 0.3)
        self.att_dst = nn.Parameter(torch.randn(1, heads, c_out) * 0.3)
        self.bias = nn.Parameter(torch.zeros(heads * c_out))

    def forward(self, x, edge_index):
        src, dst = edge_index
        n = x.size(0)
        h = self.lin(x).view(n, self.heads, self.c)
        a_s, a_d = (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1)  # (N, H)
        e = F.leaky_relu(a_s[src] + a_d[dst], 0.2)  # (E, H)
        idx = dst[:, None].expand(-1, self.heads)
        e_max = torch.full((n, self.heads), -math.inf, dtype=x.dtype).scatter_reduce(
            0, idx, e, reduce="amax", include_self=True)
        w = (e - e_max[dst]).exp()
        denom = torch.zeros(n, self.heads, dtype=x.dtype).index_add_(0, dst, w)
        alpha = w / denom[dst]
        out = torch.zeros(n, self.heads, self.c, dtype=x.dtype).index_add_(
            0, dst, alpha[..., None] * h[src])
        return out.reshape(n, -1) + self.bias


class GNN(nn.Module):
    """SAGE -> GIN -> GAT -> node classifier; one graph (N, F) and its edge_index (2, E)."""

    def __init__(self, c_in: int = 5, c: int = 8, classes: int = 3):
        super().__init__()
        self.sage, self.gin, self.gat = SAGEConv(c_in, c), GINConv(c, c), GATConv(c, c // 2)
        self.cls = nn.Linear(c, classes)

    def forward(self, x, edge_index):
        x = F.relu(self.sage(x, edge_index))
        x = F.relu(self.gin(x, edge_index))
        x = F.elu(self.gat(x, edge_index))
        return self.cls(x)


def _graph(n: int = 12, e: int = 30):
    src, dst = torch.randint(0, n, (e,)), torch.randint(0, n, (e,))
    loops = torch.arange(n)  # self-loops: every node has a neighbour (GAT's convention)
    return torch.randn(n, 5), torch.stack([torch.cat([src, loops]), torch.cat([dst, loops])])


# ---------------------------------------------------------------------------------------------
# detection: FPN + a RetinaNet head shared by every level
# ---------------------------------------------------------------------------------------------
class RetinaHead(nn.Module):
    def __init__(self, c: int, anchors: int = 2, classes: int = 3):
        super().__init__()
        self.cls_tower = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.box_tower = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.cls_logits = nn.Conv2d(c, anchors * classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(c, anchors * 4, 3, padding=1)

    def forward(self, f):
        return self.cls_logits(self.cls_tower(f)), self.bbox_pred(self.box_tower(f))


class RetinaFPN(nn.Module):
    def __init__(self, c: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(6, 8, 3, 2, 1), nn.ReLU())
        self.c4 = nn.Sequential(nn.Conv2d(8, 12, 3, 2, 1), nn.ReLU())
        self.c5 = nn.Sequential(nn.Conv2d(12, 16, 3, 2, 1), nn.ReLU())
        self.lateral = nn.ModuleList([nn.Conv2d(ch, c, 1) for ch in (8, 12, 16)])
        self.output = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(3)])
        self.head = RetinaHead(c)

    def forward(self, x):
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        lat = [m(f) for m, f in zip(self.lateral, (c3, c4, c5), strict=True)]
        td = [lat[2]]
        for f in (lat[1], lat[0]):
            td.insert(0, f + F.interpolate(td[0], size=f.shape[-2:], mode="nearest"))
        feats = [m(f) for m, f in zip(self.output, td, strict=True)]
        out: dict[str, list[torch.Tensor]] = {"cls_logits": [], "bbox_regression": []}
        for f in feats:  # one head, called once per level
            cls, box = self.head(f)
            out["cls_logits"].append(cls)
            out["bbox_regression"].append(box)
        return out


# ---------------------------------------------------------------------------------------------
# segmentation: DeepLab ASPP; SegFormer efficient attention + Mix-FFN
# ---------------------------------------------------------------------------------------------
class ASPP(nn.Module):
    def __init__(self, c_in: int, c: int, rates=(2, 3)):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(nn.Conv2d(c_in, c, 1, bias=False),
                                                     nn.BatchNorm2d(c), nn.ReLU())])
        for r in rates:
            self.branches.append(nn.Sequential(
                nn.Conv2d(c_in, c, 3, padding=r, dilation=r, bias=False), nn.BatchNorm2d(c),
                nn.ReLU()))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c, 1, bias=False),
                                  nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(c * (len(rates) + 2), c, 1, bias=False),
                                     nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        outs.append(F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear",
                                  align_corners=False))
        return self.project(torch.cat(outs, dim=1))


class DeepLab(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 12, 3, 2, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.aspp = ASPP(12, 8)
        self.classifier = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        y = self.classifier(self.aspp(self.backbone(x)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class EfficientSelfAttention(nn.Module):
    """SegFormer's attention: keys and values from a sequence shrunk by a strided conv."""

    def __init__(self, d: int, heads: int, sr: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.sr = nn.Conv2d(d, d, sr, stride=sr)
        self.norm = nn.LayerNorm(d)

    def forward(self, x, h, w):
        b, n, d = x.shape
        hd = d // self.heads
        q = self.q(x).reshape(b, n, self.heads, hd).permute(0, 2, 1, 3)
        xr = self.sr(x.permute(0, 2, 1).reshape(b, d, h, w)).reshape(b, d, -1).permute(0, 2, 1)
        kv = self.kv(self.norm(xr)).reshape(b, -1, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = (q @ k.transpose(-2, -1)) * hd ** -0.5
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class MixFFN(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.dwconv = nn.Conv2d(2 * d, 2 * d, 3, padding=1, groups=2 * d)

    def forward(self, x, h, w):
        y = self.fc1(x)
        b, n, c = y.shape
        y = self.dwconv(y.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(y))


class SegFormer(nn.Module):
    def __init__(self, d: int = 16, classes: int = 4):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 3, stride=2, padding=1)  # overlapping patch embedding
        self.patch_norm, self.norm1, self.norm2 = (nn.LayerNorm(d) for _ in range(3))
        self.attn = EfficientSelfAttention(d, 2, sr=2)
        self.ffn = MixFFN(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        f = self.patch(x)
        b, d, h, w = f.shape
        t = self.patch_norm(f.flatten(2).transpose(1, 2))
        t = t + self.attn(self.norm1(t), h, w)
        t = t + self.ffn(self.norm2(t), h, w)
        return self.head(t).transpose(1, 2).reshape(b, -1, h, w)


# ---------------------------------------------------------------------------------------------
# recommenders: DLRM
# ---------------------------------------------------------------------------------------------
class DLRM(nn.Module):
    """facebookresearch/dlrm in small: EmbeddingBags (sum, offsets, per_sample_weights), a
    bottom MLP on the dense features, pairwise dot products (bmm, upper triangle), a top MLP."""

    def __init__(self, n_dense: int = 4, vocabs=(10, 7), d: int = 6):
        super().__init__()
        self.embs = nn.ModuleList([nn.EmbeddingBag(v, d, mode="sum") for v in vocabs])
        self.bot = nn.Sequential(nn.Linear(n_dense, 8), nn.ReLU(), nn.Linear(8, d), nn.ReLU())
        n = len(vocabs) + 1
        self.top = nn.Sequential(nn.Linear(d + n * (n - 1) // 2, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, dense, indices, offsets, weights):  # indices, weights: (tables, L)
        x = self.bot(dense)
        ly = [emb(indices[k], offsets[k], per_sample_weights=weights[k])
              for k, emb in enumerate(self.embs)]
        t = torch.cat([x] + ly, dim=1).view(x.size(0), -1, x.size(1))
        z = torch.bmm(t, t.transpose(1, 2))
        li, lj = torch.triu_indices(t.size(1), t.size(1), offset=1)
        return torch.sigmoid(self.top(torch.cat([x, z[:, li, lj]], dim=1)))


def _dlrm_data(b: int = 3, per: int = 2):
    # every sample looks up ``per`` rows of each table: offsets (tables, B)
    idx = torch.stack([torch.randint(0, v, (b * per,)) for v in (10, 7)])
    offsets = torch.arange(0, b * per, per).expand(2, -1).contiguous()
    return torch.randn(b, 4), idx, offsets, torch.rand(2, b * per)


# ---------------------------------------------------------------------------------------------
# spiking: an snnTorch-style LIF network
# ---------------------------------------------------------------------------------------------
class SpikeFn(torch.autograd.Function):
    """Heaviside forward, a fast-sigmoid surrogate backward (snnTorch's default slope 25)."""

    @staticmethod
    def forward(ctx, mem):
        ctx.save_for_backward(mem)
        return (mem > 0).to(mem.dtype)

    @staticmethod
    def backward(ctx, grad):
        (mem,) = ctx.saved_tensors
        return grad / (25.0 * mem.abs() + 1.0) ** 2


class Leaky(nn.Module):
    def __init__(self, beta: float = 0.9, threshold: float = 1.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, cur, mem):
        reset = SpikeFn.apply(mem - self.threshold).detach()  # reset by subtraction
        mem = self.beta * mem + cur - reset * self.threshold
        return SpikeFn.apply(mem - self.threshold), mem


class SNN(nn.Module):
    """fc1 -> LIF -> fc2 -> LIF over ``steps`` steps of the same input; the output layer's
    membrane potentials summed over time (the rate-coded readout) and the spike counts."""

    def __init__(self, n_in: int = 10, hidden: int = 16, n_out: int = 4, steps: int = 5):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(n_in, hidden), nn.Linear(hidden, n_out)
        self.lif1, self.lif2 = Leaky(), Leaky()
        self.steps, self.widths = steps, (hidden, n_out)

    def forward(self, x):
        mem1, mem2 = (torch.zeros(x.size(0), n, dtype=x.dtype) for n in self.widths)
        mems = []
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(self.fc1(x), mem1)
            _, mem2 = self.lif2(self.fc2(spk1), mem2)
            mems.append(mem2)
        return torch.stack(mems).mean(0)


# ---------------------------------------------------------------------------------------------
# control flow and structure
# ---------------------------------------------------------------------------------------------
class AlbertLayer(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = P.weight_norm(nn.Linear(d, 2 * d))  # the new parametrization API
        self.ffn_out = P.weight_norm(nn.Linear(2 * d, d))

    def forward(self, x):
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.ffn_out(F.gelu(self.ffn(x))))


class Albert(nn.Module):
    """ALBERT: a factorised embedding (vocab x 8, projected to 16) and one layer applied
    ``n_layers`` times with the same weights."""

    def __init__(self, vocab: int = 20, e: int = 8, d: int = 16, n_layers: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, e)
        self.proj = nn.Linear(e, d)
        self.layer = AlbertLayer(d, 2)
        self.n_layers = n_layers
        self.cls = nn.Linear(d, 3)

    def forward(self, ids):
        x = self.proj(self.embed(ids))
        for _ in range(self.n_layers):
            x = self.layer(x)
        return self.cls(x[:, 0])


class EarlyExit(nn.Module):
    """BranchyNet: an exit after the first block, taken when every sample is confident."""

    def __init__(self, d: int = 8, classes: int = 3, threshold: float = 0.9):
        super().__init__()
        self.block1 = nn.Sequential(nn.Linear(d, 16), nn.ReLU())
        self.exit1 = nn.Linear(16, classes)
        self.block2 = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.exit2 = nn.Linear(16, classes)
        self.threshold = threshold

    def forward(self, x):
        h = self.block1(x)
        logits = self.exit1(h)
        if bool((logits.softmax(-1).amax(-1) > self.threshold).all()):
            return logits
        return self.exit2(self.block2(h))


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    hidden: torch.Tensor


class KeywordOnly(nn.Module):
    """HuggingFace's calling convention: ``model(input_ids=..., attention_mask=...)`` only,
    a dataclass returned."""

    def __init__(self, vocab: int = 20, d: int = 8, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.enc = nn.Linear(d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, *, input_ids, attention_mask):
        h = torch.tanh(self.enc(self.embed(input_ids)))
        m = attention_mask[..., None].to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        return ClassifierOutput(self.head(pooled), h)


class Routed(nn.Module):
    """A trunk and one head per task in an ``nn.ModuleDict``, chosen by a string argument."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d, 12), nn.ReLU())
        self.heads = nn.ModuleDict({"sentiment": nn.Linear(12, 2), "topic": nn.Linear(12, 5)})

    def forward(self, x, task: str = "sentiment"):
        return self.heads[task](self.trunk(x))


class QuantStubbed(nn.Module):
    """Eager-mode quantization scaffolding left in a float model: QuantStub / DeQuantStub
    (identities until converted) and a FakeQuantize module (it observes and rounds)."""

    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fq = tq.FakeQuantize()
        self.fc = nn.Linear(6, 4)

    def freeze(self):
        """One observing pass, then the observer off: a QAT model as it ships (an observing
        FakeQuantize moves its range on every call, so the float model is no function)."""
        with torch.no_grad():
            self(torch.randn(4, 3, 6, 6))
        self.apply(tq.disable_observer)
        return self

    def forward(self, x):
        x = self.quant(x)
        x = self.fq(F.relu(self.conv(x)))
        return self.fc(self.dequant(x).mean((2, 3)))


# ---------------------------------------------------------------------------------------------
# The zoo
# ---------------------------------------------------------------------------------------------
def _tokens(vocab: int, b: int = 3, t: int = 6):
    return lambda: (torch.randint(0, vocab, (b, t)),)


ZOO6 = {
    "conformer": (Conformer, lambda: (torch.randn(3, 80),)),
    "rnnt": (RNNTJoint, lambda: (torch.randn(3, 5, 6), torch.randint(1, 7, (3, 4)))),
    "gnn": (GNN, _graph),
    "retina-fpn": (RetinaFPN, lambda: (torch.randn(2, 3, 32, 32),)),
    "deeplab": (DeepLab, lambda: (torch.randn(3, 3, 16, 16),)),
    "segformer": (SegFormer, lambda: (torch.randn(3, 3, 8, 8),)),
    "dlrm": (DLRM, _dlrm_data),
    "snn": (SNN, lambda: (torch.rand(3, 10) * 2,)),
    "albert": (Albert, _tokens(20)),
    "early-exit": (EarlyExit, lambda: (torch.randn(3, 8),)),
    "quant-stubs": (lambda: QuantStubbed().freeze(), lambda: (torch.randn(3, 3, 6, 6),)),
}


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO6[name], dtype)


_flat = flat_output  # the detector's dict of lists: one tensor


def _rel(got, want) -> float:
    got, want = _flat(got), _flat(want)
    return float((got - want).norm() / want.norm())


# what each model keeps digital, by name: every weight matrix is mapped or listed here
_DIGITAL = {
    "conformer": {"attn"},
    "rnnt": {"embed"},
    "segformer": {"attn"},
    "dlrm": {"embs.0", "embs.1", "model"},
    "albert": {"embed", "layer.attn"},
    # GAT's attention vectors, multiplied element-wise with the projected features and summed
    # per head: a per-head dot product computed in float, listed (unnamed before the
    # thirteenth zoo's fix)
    "gnn": {"gat.att_src", "gat.att_dst"},
}
_NOT_MATRICES: tuple[str, ...] = ()
# the LSTM predictor: no recurrent layer in the conftest's integer re-implementation
_EXACT = [n for n in ZOO6 if n != "rnnt"]


# ---------------------------------------------------------------------------------------------
# deploy: lossless, rram-22nm
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", _EXACT)
def test_lossless_deploy_equals_the_quantized_model(name):
    """Bit-exact against the integer re-implementation: every projection and conv on the arrays
    (the shared head at every level, the shared ALBERT layer at every depth, the weight_norm'ed
    linears), the rest (scatters, per-edge softmax, spikes, bags, interpolation) in torch."""
    model, args = _build(name)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    with torch.no_grad():
        want = reference_model(model, sim)(*args)
    got = sim(*args)
    if isinstance(got, dict):
        assert got.keys() == want.keys() and all(len(got[k]) == 3 for k in got)
        for k in got:
            for g, w in zip(got[k], want[k], strict=True):
                assert_bitwise(g, w)
    else:
        assert_bitwise(got, want)


@pytest.mark.parametrize("name", list(ZOO6))
def test_lossless_deploy_is_within_8_bit_quantization_of_float(name):
    check_lossless_near_float(*_build(name), _DIGITAL.get(name, set()))


@pytest.mark.parametrize("name", list(ZOO6))
def test_rram_deploy_runs_reports_and_accounts_for_every_matrix(name):
    model, args = _build(name)
    with torch.no_grad():
        want = _flat(model(*args))
    sim = _quiet(cimsim.deploy, model, _rram(), args)
    check_lossy_run(_flat(sim(*args)), want, sim)
    check_every_matrix(model, sim, _DIGITAL.get(name, set()), _NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# prepare -> one step -> deploy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", list(ZOO6))
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    model, args = _build(name, torch.float64)
    chip_cfg = lossless_chip("channel") if chip == "ideal" else _rram_noise_free()
    prep = prepare_step_deploy(model, chip_cfg, args, 0, main=_flat)  # the detector's dict
    assert {d[0] for d in prep.digital} == _DIGITAL.get(name, set())


# ---------------------------------------------------------------------------------------------
# routing by a string, an exit not taken, keyword-only inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_a_string_argument_routes_and_the_head_not_calibrated_is_named(run):
    """(x, "topic") used to be read as a DataLoader: its string was called as the model's
    input ('str' object has no attribute 'dim', deep in the trunk). Now the string is passed
    as the argument it is; the head it does not route to saw no data and is named."""
    torch.manual_seed(0)
    model, x = Routed().eval(), torch.randn(3, 8)
    with pytest.raises(cimsim.errors.MappingError, match=r"'heads\.sentiment' saw no calib"):
        run(model, lossless_chip("channel"), (x, "topic"))
    sim = run(model, lossless_chip("channel"), (x, "topic"), exclude=["heads.sentiment"])
    if run is prepare:
        sim = sim.deploy()
    with torch.no_grad():
        assert_bitwise(sim(x, "topic"), reference_model(model, sim)(x, "topic"))
        assert _rel(sim(x, "sentiment"), model(x, "sentiment")) < 0.03
    assert [d[0] for d in sim.digital] == ["heads.sentiment"]


def test_an_early_exit_not_taken_in_calibration_is_named():
    """Inputs every sample of which the first exit is confident about never reach block2: its
    layers are named, not deployed uncalibrated."""
    model, _ = _build("early-exit")
    model.threshold = 0.0  # every sample exits early
    with pytest.raises(cimsim.errors.MappingError, match=r"'block2\.0' saw no calibration"):
        cimsim.deploy(model, lossless_chip("channel"), (torch.randn(3, 8),))


def test_keyword_only_inputs_deploy_from_a_dict_calibration():
    """HuggingFace's convention: a dict batch is the model's keyword arguments (``model(**batch)``);
    it used to be refused with a request to wrap the model."""
    torch.manual_seed(0)
    model = KeywordOnly().eval()
    ids, mask = torch.randint(0, 20, (3, 6)), (torch.rand(3, 6) > 0.3).long()
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"),
                 {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        want = reference_model(model, sim)(input_ids=ids, attention_mask=mask)
    got = sim(input_ids=ids, attention_mask=mask)
    assert isinstance(got, ClassifierOutput)
    assert_bitwise(got.logits, want.logits)
    assert_bitwise(got.hidden, want.hidden)
    assert [d[0] for d in sim.digital] == ["embed"]
    assert sim.n_inferences == 3


def test_an_observing_fake_quantize_is_named():
    """eval() leaves a FakeQuantize observing: the deployed model moved its range on every
    call (the same input twice gave two outputs) without a word. Named now; frozen, the
    deployed model is a function of its input."""

    def twice(sim):  # x, another input, x again
        first = sim(x)
        sim(3 * x)
        return first, sim(x)

    torch.manual_seed(0)
    x = torch.randn(3, 3, 6, 6)
    with pytest.warns(UserWarning, match=r"deploy: fq \(FakeQuantize\) observe.*disable_observer"):
        sim = cimsim.deploy(QuantStubbed().eval(), lossless_chip("channel"), (x,))
    assert not torch.equal(*twice(sim))  # the model's own behaviour, named above
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = cimsim.deploy(QuantStubbed().freeze().eval(), lossless_chip("channel"), (x,))
    assert torch.equal(*twice(sim))


def test_the_twin_trains_through_spikes_and_a_dataclass_output():
    """The surrogate gradient reaches the first layer of the SNN through its spikes (the twin
    keeps the custom autograd.Function); a keyword-only model's dataclass comes back from the
    twin and its deployed model alike."""
    model, args = _build("snn", torch.float64)
    prep = _quiet(prepare, model, lossless_chip("channel"), args)
    prep(*args).pow(2).mean().backward()
    (twin,) = prep.twin_layers["fc1"].matrices()
    assert twin.weight.grad is not None and twin.weight.grad.abs().sum() > 0

    torch.manual_seed(0)
    model = KeywordOnly().eval().double()
    ids, mask = torch.randint(0, 20, (3, 6)), (torch.rand(3, 6) > 0.3).long()
    batch = {"input_ids": ids, "attention_mask": mask}
    prep = _quiet(prepare, model, lossless_chip("channel"), batch)
    opt = torch.optim.SGD(prep.parameters(), lr=0.1)
    out = prep(**batch)
    assert isinstance(out, ClassifierOutput)
    out.logits.pow(2).mean().backward()
    opt.step()
    prep.eval()
    with torch.no_grad():
        want = prep(**batch)
    got = prep.deploy()(**batch)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got.hidden, want.hidden, rtol=1e-9, atol=1e-9)


def test_a_dlrm_batch_above_batch_size_names_its_uncuttable_inputs():
    """The dense features are cut into batches of 256, an EmbeddingBag's flat indices and
    offsets cannot be: the error in the interaction's cat notes the cut, naming bags."""
    torch.manual_seed(0)
    model, args = DLRM().eval(), _dlrm_data(b=300)
    with pytest.raises(RuntimeError) as info:
        _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    assert "EmbeddingBag's flat indices and offsets, pass batch_size=300" in " ".join(
        getattr(info.value, "__notes__", []))
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args, batch_size=300)
    assert sim(*args).shape == (300, 1)


def test_a_qat_prepared_model_is_refused_naming_its_fake_quantized_layers():
    """torch.ao.quantization.prepare_qat swaps in qat.Conv2d / qat.Linear, whose forward
    fake-quantizes the weight: not mapped silently with the raw weight, named."""
    torch.manual_seed(0)
    model = QuantStubbed()
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation, reduce_range's
        warnings.simplefilter("ignore")
        model.qconfig = tq.get_default_qat_qconfig("x86")
        qat = tq.prepare_qat(model.train()).eval()
    with pytest.raises(cimsim.errors.MappingError, match=r"conv \(Conv2d: .*fake-quantized"):
        _quiet(cimsim.deploy, qat, lossless_chip("channel"), (torch.randn(3, 3, 6, 6),))
