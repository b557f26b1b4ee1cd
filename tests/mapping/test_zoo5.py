"""A fifth zoo of models cimsim was not written for (worktree ``zoo5``, after
``test_new_models.py`` and ``test_zoo2.py`` .. ``test_zoo4.py``): language, generative,
sequence, point-cloud and recommender families, written small (tiny widths, no transformers /
torchvision import) the way their reference code writes them. A GPT-2 block as HuggingFace
writes it (``Conv1D`` projections by ``torch.addmm``, q/k/v by ``split``, a causal-mask
*buffer* with ``torch.where``, ``layer_past`` / ``use_cache`` presents, ``gelu_new``); a BERT
encoder (word + position + token-type embeddings, an extended additive mask (B, 1, 1, T), a
tanh pooler on the first token); a T5 block (T5LayerNorm, a bucketed relative-position bias
from an ``nn.Embedding``, bias-free linears, gated-GELU); a diffusion U-Net (sinusoidal
timestep embedding, ResBlocks with GroupNorm / SiLU / the time embedding added per channel,
self-attention over H*W, strided-conv down and nearest-interpolate up, skip concatenation;
inputs x and t); a seq2seq with Bahdanau attention (bidirectional GRU encoder, an LSTMCell
decoder stepped in a loop, teacher forcing); PointNet (Conv1d(k=1) MLPs, a T-Net's 3x3
transform by ``torch.bmm``, global max pooling); a Perceiver cross-attention (a learned latent
array into ``nn.MultiheadAttention`` with kdim/vdim); a Mamba block (in_proj, depthwise causal
Conv1d, a selective scan in a Python loop with A_log and D element-wise, out_proj); a Deep &
Cross Network; a NeRF MLP; a hypernetwork (``F.linear(x, W(x))``).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.train import prepare

from .conftest import (
    assert_bitwise,
    build_seeded,
    check_every_matrix,
    check_lossless_near_float,
    check_lossy_run,
    lossless_chip,
    reference_model,
)
from .test_new_models import _rram, prepare_step_deploy


# ---------------------------------------------------------------------------------------------
# GPT-2 as HuggingFace writes it (modeling_gpt2.py, pytorch_utils.Conv1D)
# ---------------------------------------------------------------------------------------------
def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU (HuggingFace's NewGELUActivation)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class HFConv1D(nn.Module):
    """HuggingFace's Conv1D: a Linear with its weight stored (in, out), by ``torch.addmm``."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.2)
        nn.init.normal_(self.bias, std=0.02)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_pos: int):
        super().__init__()
        self.register_buffer("bias", torch.tril(torch.ones((n_pos, n_pos), dtype=torch.bool))
                             .view(1, 1, n_pos, n_pos), persistent=False)
        self.n_head, self.head_dim, self.split_size = n_head, n_embd // n_head, n_embd
        self.c_attn = HFConv1D(3 * n_embd, n_embd)
        self.c_proj = HFConv1D(n_embd, n_embd)
        self.attn_dropout, self.resid_dropout = nn.Dropout(0.1), nn.Dropout(0.1)

    def _split_heads(self, t):
        return t.view(t.size()[:-1] + (self.n_head, self.head_dim)).permute(0, 2, 1, 3)

    def _attn(self, query, key, value, attention_mask=None):
        w = torch.matmul(query, key.transpose(-1, -2))
        w = w / torch.full([], value.size(-1) ** 0.5, dtype=w.dtype, device=w.device)
        q_len, k_len = query.size(-2), key.size(-2)
        causal = self.bias[:, :, k_len - q_len:k_len, :k_len]
        mask_value = torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype, device=w.device)
        w = torch.where(causal, w.to(w.dtype), mask_value)
        if attention_mask is not None:
            w = w + attention_mask
        w = self.attn_dropout(F.softmax(w, dim=-1))
        return torch.matmul(w, value)

    def forward(self, hidden, layer_past=None, attention_mask=None, use_cache=False):
        query, key, value = self.c_attn(hidden).split(self.split_size, dim=2)
        query, key, value = (self._split_heads(t) for t in (query, key, value))
        if layer_past is not None:
            past_key, past_value = layer_past
            key, value = torch.cat((past_key, key), dim=-2), torch.cat((past_value, value), -2)
        present = (key, value) if use_cache else None
        a = self._attn(query, key, value, attention_mask)
        a = a.permute(0, 2, 1, 3).contiguous()
        a = a.view(a.size()[:-2] + (self.n_head * self.head_dim,))
        return self.resid_dropout(self.c_proj(a)), present


class GPT2MLP(nn.Module):
    def __init__(self, inner: int, n_embd: int):
        super().__init__()
        self.c_fc, self.c_proj = HFConv1D(inner, n_embd), HFConv1D(n_embd, inner)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        return self.dropout(self.c_proj(gelu_new(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_pos: int):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = GPT2Attention(n_embd, n_head, n_pos)
        self.mlp = GPT2MLP(4 * n_embd, n_embd)

    def forward(self, hidden, layer_past=None, use_cache=False):
        a, present = self.attn(self.ln_1(hidden), layer_past=layer_past, use_cache=use_cache)
        hidden = hidden + a
        return hidden + self.mlp(self.ln_2(hidden)), present


class GPT2(nn.Module):
    """GPT2LMHeadModel in small: wte / wpe, two blocks, ln_f, the head tied to wte."""

    def __init__(self, vocab: int = 24, n_embd: int = 16, n_head: int = 2, n_pos: int = 12):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(n_pos, n_embd)
        self.drop = nn.Dropout(0.1)
        self.h = nn.ModuleList([GPT2Block(n_embd, n_head, n_pos) for _ in range(2)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as HuggingFace ties them

    def forward(self, input_ids, past_key_values=None, use_cache=False):
        past_len = 0 if past_key_values is None else past_key_values[0][0].size(-2)
        pos = torch.arange(past_len, past_len + input_ids.size(-1), device=input_ids.device)
        hidden = self.drop(self.wte(input_ids) + self.wpe(pos)[None])
        presents = []
        for i, block in enumerate(self.h):
            past = None if past_key_values is None else past_key_values[i]
            hidden, present = block(hidden, layer_past=past, use_cache=use_cache)
            presents.append(present)
        logits = self.lm_head(self.ln_f(hidden))
        return (logits, tuple(presents)) if use_cache else logits


# ---------------------------------------------------------------------------------------------
# BERT (modeling_bert.py in small)
# ---------------------------------------------------------------------------------------------
class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.dropout = nn.Dropout(0.1)

    def _t(self, x):
        return x.view(x.size()[:-1] + (self.heads, self.head_dim)).permute(0, 2, 1, 3)

    def forward(self, hidden, extended_mask):
        q, k, v = (self._t(m(hidden)) for m in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = self.dropout(F.softmax(scores + extended_mask, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size()[:-2] + (self.heads * self.head_dim,))


class BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.attention = BertSelfAttention(hidden, heads)
        self.attn_out, self.attn_norm = nn.Linear(hidden, hidden), nn.LayerNorm(hidden, 1e-12)
        self.intermediate = nn.Linear(hidden, 4 * hidden)
        self.output, self.out_norm = nn.Linear(4 * hidden, hidden), nn.LayerNorm(hidden, 1e-12)

    def forward(self, hidden, extended_mask):
        hidden = self.attn_norm(self.attn_out(self.attention(hidden, extended_mask)) + hidden)
        return self.out_norm(self.output(F.gelu(self.intermediate(hidden))) + hidden)


class Bert(nn.Module):
    def __init__(self, vocab: int = 30, hidden: int = 16, heads: int = 2, n_pos: int = 16):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(n_pos, hidden)
        self.token_type_embeddings = nn.Embedding(2, hidden)
        self.emb_norm, self.emb_drop = nn.LayerNorm(hidden, 1e-12), nn.Dropout(0.1)
        self.register_buffer("position_ids", torch.arange(n_pos)[None], persistent=False)
        self.layer = nn.ModuleList([BertLayer(hidden, heads) for _ in range(2)])
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, 3)

    def forward(self, input_ids, token_type_ids, attention_mask):
        t = input_ids.size(1)
        emb = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
               + self.position_embeddings(self.position_ids[:, :t]))
        hidden = self.emb_drop(self.emb_norm(emb))
        dtype = hidden.dtype
        extended = attention_mask[:, None, None, :].to(dtype)  # (B, 1, 1, T)
        extended = (1.0 - extended) * torch.finfo(dtype).min
        for layer in self.layer:
            hidden = layer(hidden, extended)
        pooled = torch.tanh(self.pooler(hidden[:, 0]))
        return self.classifier(pooled)


def _bert_data(b: int = 3, t: int = 7):
    ids = torch.randint(1, 30, (b, t))
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    ids = ids * mask  # padding tokens are id 0
    types = torch.zeros(b, t, dtype=torch.long)
    types[:, 4:] = 1
    return ids, types, mask


# ---------------------------------------------------------------------------------------------
# T5 (modeling_t5.py in small)
# ---------------------------------------------------------------------------------------------
class T5LayerNorm(nn.Module):
    """RMS norm: no mean subtracted, no bias."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d) + 0.1 * torch.randn(d)), eps

    def forward(self, x):
        var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps)).to(x.dtype)


def relative_position_bucket(rel: torch.Tensor, num_buckets: int = 8,
                             max_distance: int = 16) -> torch.Tensor:
    """T5's bidirectional bucketing: exact near, logarithmic far."""
    num_buckets //= 2
    buckets = (rel > 0).to(torch.long) * num_buckets
    rel = torch.abs(rel)
    max_exact = num_buckets // 2
    is_small = rel < max_exact
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, rel, large)


class T5Attention(nn.Module):
    def __init__(self, d: int, heads: int, num_buckets: int = 8):
        super().__init__()
        self.heads, self.dk, self.num_buckets = heads, d // heads, num_buckets
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (m(x).view(b, t, self.heads, self.dk).transpose(1, 2)
                   for m in (self.q, self.k, self.v))
        scores = torch.matmul(q, k.transpose(3, 2))  # T5: no 1/sqrt(d) (folded in the init)
        ctx = torch.arange(t, device=x.device)
        bucket = relative_position_bucket(ctx[None, :] - ctx[:, None], self.num_buckets)
        bias = self.relative_attention_bias(bucket).permute(2, 0, 1)[None]  # (1, H, T, T)
        w = F.softmax((scores + bias).float(), dim=-1).type_as(scores)
        out = torch.matmul(w, v).transpose(1, 2).reshape(b, t, -1)
        return self.o(out)


class T5Block(nn.Module):
    def __init__(self, d: int = 16, heads: int = 2):
        super().__init__()
        self.ln1, self.attn = T5LayerNorm(d), T5Attention(d, heads)
        self.ln2 = T5LayerNorm(d)
        self.wi_0, self.wi_1 = nn.Linear(d, 2 * d, bias=False), nn.Linear(d, 2 * d, bias=False)
        self.wo = nn.Linear(2 * d, d, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        h = self.ln2(x)
        return x + self.wo(gelu_new(self.wi_0(h)) * self.wi_1(h))  # gated-GELU (T5 v1.1)


class T5(nn.Module):
    def __init__(self, vocab: int = 20, d: int = 16):
        super().__init__()
        self.shared = nn.Embedding(vocab, d)
        self.block = T5Block(d)
        self.final_layer_norm = T5LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, input_ids):
        return self.lm_head(self.final_layer_norm(self.block(self.shared(input_ids))))


# ---------------------------------------------------------------------------------------------
# A diffusion U-Net (guided-diffusion / DDPM in small)
# ---------------------------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None].to(t.device)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(4, c_in), nn.SiLU(),
                                       nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, c_out))
        self.out_layers = nn.Sequential(nn.GroupNorm(4, c_out), nn.SiLU(), nn.Dropout(0.1),
                                        nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[..., None, None]  # per channel
        return self.skip(x) + self.out_layers(h)


class SpatialAttention(nn.Module):
    """guided-diffusion's AttentionBlock: qkv as a Conv1d(k=1) over the H*W tokens."""

    def __init__(self, c: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(4, c)
        self.qkv, self.proj_out = nn.Conv1d(c, 3 * c, 1), nn.Conv1d(c, c, 1)

    def forward(self, x):
        b, c, *spatial = x.shape
        h = self.qkv(self.norm(x.reshape(b, c, -1)))  # (B, 3C, T)
        bh, t = b * self.heads, h.shape[-1]
        q, k, v = h.reshape(bh, 3 * c // self.heads, t).split(c // self.heads, dim=1)
        scale = 1 / math.sqrt(math.sqrt(c // self.heads))
        w = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, t)
        return (x.reshape(b, c, -1) + self.proj_out(a)).reshape(b, c, *spatial)


class DiffusionUNet(nn.Module):
    def __init__(self, c: int = 8, emb: int = 16):
        super().__init__()
        self.c = c
        self.time_embed = nn.Sequential(nn.Linear(c, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.inp = nn.Conv2d(3, c, 3, padding=1)
        self.down_res = ResBlock(c, c, emb)
        self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.mid_res = ResBlock(c, 2 * c, emb)
        self.mid_attn = SpatialAttention(2 * c)
        self.up_conv = nn.Conv2d(2 * c, c, 3, padding=1)
        self.up_res = ResBlock(2 * c, c, emb)  # after the skip concatenation
        self.out = nn.Sequential(nn.GroupNorm(4, c), nn.SiLU(), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, x, t):
        emb = self.time_embed(timestep_embedding(t, self.c).to(x.dtype))
        h0 = self.down_res(self.inp(x), emb)
        h = self.mid_attn(self.mid_res(self.down(h0), emb))
        h = self.up_conv(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(self.up_res(torch.cat([h, h0], dim=1), emb))


# ---------------------------------------------------------------------------------------------
# Seq2seq with additive (Bahdanau) attention
# ---------------------------------------------------------------------------------------------
class Bahdanau(nn.Module):
    def __init__(self, vocab: int = 16, emb: int = 8, hidden: int = 12, attn: int = 10):
        super().__init__()
        self.src_emb, self.tgt_emb = nn.Embedding(vocab, emb), nn.Embedding(vocab, emb)
        self.encoder = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.W_a = nn.Linear(hidden, attn, bias=False)
        self.U_a = nn.Linear(2 * hidden, attn)
        self.v_a = nn.Linear(attn, 1, bias=False)
        self.decoder = nn.LSTMCell(emb + 2 * hidden, hidden)
        self.out = nn.Linear(hidden + 2 * hidden, vocab)

    def forward(self, src, tgt):
        enc, h_n = self.encoder(self.src_emb(src))  # (B, S, 2H), (2, B, H)
        h = torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], -1)))
        c = torch.zeros_like(h)
        keys = self.U_a(enc)  # (B, S, A), once
        logits = []
        for step in range(tgt.size(1)):  # teacher forcing: the target token, not the argmax
            score = self.v_a(torch.tanh(self.W_a(h)[:, None] + keys)).squeeze(-1)  # (B, S)
            alpha = torch.softmax(score, -1)
            ctx = torch.bmm(alpha[:, None], enc).squeeze(1)  # (B, 2H)
            h, c = self.decoder(torch.cat([self.tgt_emb(tgt[:, step]), ctx], -1), (h, c))
            logits.append(self.out(torch.cat([h, ctx], -1)))
        return torch.stack(logits, 1)


# ---------------------------------------------------------------------------------------------
# PointNet
# ---------------------------------------------------------------------------------------------
class TNet(nn.Module):
    def __init__(self, k: int = 3):
        super().__init__()
        self.k = k
        self.conv1, self.conv2 = nn.Conv1d(k, 16, 1), nn.Conv1d(16, 32, 1)
        self.bn1, self.bn2 = nn.BatchNorm1d(16), nn.BatchNorm1d(32)
        self.fc1, self.fc2 = nn.Linear(32, 16), nn.Linear(16, k * k)

    def forward(self, x):
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        x = torch.max(x, 2, keepdim=True)[0].view(-1, 32)
        x = self.fc2(F.relu(self.fc1(x)))
        iden = torch.eye(self.k, dtype=x.dtype, device=x.device).flatten()[None]
        return (x + iden).view(-1, self.k, self.k)


class PointNet(nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        self.stn = TNet(3)
        self.conv1, self.conv2 = nn.Conv1d(3, 16, 1), nn.Conv1d(16, 32, 1)
        self.bn1, self.bn2 = nn.BatchNorm1d(16), nn.BatchNorm1d(32)
        self.fc = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x):  # (B, 3, N)
        trans = self.stn(x)
        x = torch.bmm(x.transpose(2, 1), trans).transpose(2, 1)  # activation x activation
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(torch.max(x, 2)[0])


def _bn_stats(model: nn.Module) -> nn.Module:
    """BatchNorm running statistics away from (0, 1), so eval BN is no identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return model


# ---------------------------------------------------------------------------------------------
# Perceiver-style cross-attention
# ---------------------------------------------------------------------------------------------
class Perceiver(nn.Module):
    def __init__(self, d_in: int = 6, d: int = 8, n_latents: int = 4, classes: int = 3):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(n_latents, d))
        self.cross = nn.MultiheadAttention(d, 2, kdim=d_in, vdim=d_in, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, classes)

    def forward(self, x):  # (B, N, d_in)
        q = self.latents[None].expand(x.size(0), -1, -1)
        z, _ = self.cross(q, x, x, need_weights=False)
        z = z + self.mlp(self.norm(z))
        return self.head(z.mean(1))


# ---------------------------------------------------------------------------------------------
# A Mamba (S6) block, as mamba-minimal writes its reference scan
# ---------------------------------------------------------------------------------------------
class Mamba(nn.Module):
    def __init__(self, d: int = 8, d_state: int = 4, d_conv: int = 4, expand: int = 2):
        super().__init__()
        di = expand * d
        self.di, self.d_state, self.dt_rank = di, d_state, math.ceil(d / 16)
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di)
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(di, 1)
        self.A_log = nn.Parameter(torch.log(a))  # (di, d_state): used element-wise
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=False)

    def forward(self, x):  # (B, L, d)
        b, seq, _ = x.shape
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv1d(u.transpose(1, 2))[:, :, :seq].transpose(1, 2))  # causal
        dbc = self.x_proj(u)
        delta, bm, cm = dbc.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(delta))  # (B, L, di)
        a = -torch.exp(self.A_log.to(x.dtype))
        state = x.new_zeros(b, self.di, self.d_state)
        ys = []
        for t in range(seq):  # the selective scan: element-wise, state (B, di, N)
            da = torch.exp(delta[:, t, :, None] * a)
            dbu = delta[:, t, :, None] * bm[:, t, None, :] * u[:, t, :, None]
            state = da * state + dbu
            ys.append((state * cm[:, t, None, :]).sum(-1))
        y = torch.stack(ys, 1) + u * self.D
        return self.out_proj(y * F.silu(z))


# ---------------------------------------------------------------------------------------------
# Deep & Cross Network, NeRF
# ---------------------------------------------------------------------------------------------
class DCN(nn.Module):
    """DCN (Wang et al. 2017) with v2's full-matrix cross: x_{l+1} = x0 * (W x_l + b) + x_l."""

    def __init__(self, n_dense: int = 4, vocabs=(10, 7, 5), emb: int = 4, layers: int = 2):
        super().__init__()
        self.embs = nn.ModuleList([nn.Embedding(v, emb) for v in vocabs])
        d = n_dense + emb * len(vocabs)
        self.cross = nn.ModuleList([nn.Linear(d, d) for _ in range(layers)])
        self.deep = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())
        self.out = nn.Linear(d + 8, 1)

    def forward(self, dense, sparse):
        x0 = torch.cat([dense, *(e(sparse[:, i]) for i, e in enumerate(self.embs))], -1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.out(torch.cat([x, self.deep(x0)], -1))


def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    out = [x]
    for k in range(n_freqs):
        out += [torch.sin(2.0 ** k * x), torch.cos(2.0 ** k * x)]
    return torch.cat(out, -1)


class NeRF(nn.Module):
    def __init__(self, width: int = 24, n_xyz: int = 4, n_dir: int = 2):
        super().__init__()
        self.n_xyz, self.n_dir = n_xyz, n_dir
        c_xyz, c_dir = 3 + 6 * n_xyz, 3 + 6 * n_dir
        self.pts = nn.ModuleList(
            [nn.Linear(c_xyz, width)] +
            [nn.Linear(width + (c_xyz if i == 2 else 0), width) for i in range(1, 4)])
        self.sigma, self.feature = nn.Linear(width, 1), nn.Linear(width, width)
        self.views = nn.Linear(width + c_dir, width // 2)
        self.rgb = nn.Linear(width // 2, 3)

    def forward(self, pts, dirs):
        enc = positional_encoding(pts, self.n_xyz)
        h = enc
        for i, layer in enumerate(self.pts):
            h = F.relu(layer(h))
            if i == 1:
                h = torch.cat([enc, h], -1)  # the skip: the encoding concatenated back
        sigma = F.relu(self.sigma(h))
        h = F.relu(self.views(torch.cat([self.feature(h), positional_encoding(dirs, self.n_dir)],
                                        -1)))
        return torch.cat([torch.sigmoid(self.rgb(h)), sigma], -1)


# ---------------------------------------------------------------------------------------------
# A hypernetwork: weights computed from the input
# ---------------------------------------------------------------------------------------------
class HyperNet(nn.Module):
    """Each sample's layer weight is generated from the sample (F.linear(x, W(x))): a product
    of two activations, no weight to program."""

    def __init__(self, d: int = 8, n_out: int = 5, classes: int = 3):
        super().__init__()
        self.d, self.n_out = d, n_out
        self.embed = nn.Linear(d, d)
        self.hyper = nn.Linear(d, n_out * d)
        self.head = nn.Linear(n_out, classes)

    def forward(self, x):
        h = F.relu(self.embed(x))
        w = self.hyper(h).view(-1, self.n_out, self.d)
        y = torch.stack([F.linear(h[i], w[i]) for i in range(x.size(0))])
        return self.head(torch.tanh(y))


# ---------------------------------------------------------------------------------------------
# The zoo
# ---------------------------------------------------------------------------------------------
def _tokens(vocab: int, b: int = 3, t: int = 6):
    return lambda: (torch.randint(0, vocab, (b, t)),)


ZOO5 = {
    "gpt2": (GPT2, _tokens(24)),
    "bert": (Bert, _bert_data),
    "t5": (T5, _tokens(20, t=7)),
    "diffusion-unet": (DiffusionUNet, lambda: (torch.randn(3, 3, 8, 8),
                                               torch.tensor([3, 250, 999]))),
    "seq2seq-attention": (Bahdanau, lambda: (torch.randint(0, 16, (3, 6)),
                                              torch.randint(0, 16, (3, 4)))),
    "pointnet": (lambda: _bn_stats(PointNet()), lambda: (torch.randn(3, 3, 20),)),
    "perceiver": (Perceiver, lambda: (torch.randn(3, 7, 6),)),
    "mamba": (Mamba, lambda: (torch.randn(3, 6, 8),)),
    "dcn": (DCN, lambda: (torch.randn(3, 4), torch.stack([torch.randint(0, v, (3,))
                                                          for v in (10, 7, 5)], 1))),
    "nerf": (NeRF, lambda: (torch.rand(3, 3) * 2 - 1, F.normalize(torch.randn(3, 3), dim=-1))),
    "hypernet": (HyperNet, lambda: (torch.randn(3, 8),)),
}
# no RNN in the conftest's integer re-implementation
_EXACT = [n for n in ZOO5 if n != "seq2seq-attention"]


def _build(name: str, dtype=torch.float32):
    return build_seeded(*ZOO5[name], dtype)


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # embeddings, products: listed digital
        return fn(*a, **k)


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def _rram_noise_free():
    """rram-22nm (small arrays) with its variation, its conversion noise off: what the twin in
    eval mode computes (it draws no noise)."""
    return _rram().replace(noise=_rram().noise.replace(thermal_sigma_lsb=0.0))


# what each model keeps digital, by name: every weight matrix is mapped or listed here. The
# embeddings (a look-up, no product); the attention products of the module whose forward
# computes them (GPT-2's and BERT's matmuls, the U-Net's einsums, the seq2seq's and PointNet's
# torch.bmm, the hypernetwork's per-sample F.linear: "model", the root, computes those)
_DIGITAL = {
    "gpt2": {"wte", "wpe", "h.0.attn", "h.1.attn"},
    "bert": {"word_embeddings", "position_embeddings", "token_type_embeddings",
             "layer.0.attention", "layer.1.attention"},
    "t5": {"shared", "block.attn.relative_attention_bias", "block.attn"},
    "diffusion-unet": {"mid_attn"},
    "seq2seq-attention": {"src_emb", "tgt_emb", "model"},
    "pointnet": {"model"},
    "perceiver": {"cross"},
    "dcn": {"embs.0", "embs.1", "embs.2"},
    "hypernet": {"model"},
    # A = -exp(A_log) multiplies the step sizes element-wise in the scan (exp(delta * A)): a
    # weight matrix computing with activations in float, listed (the thirteenth zoo's fix)
    "mamba": {"A_log"},
}
# 2-D parameters in no product: the Perceiver's latents are the input of its (mapped) query
# projection
_NOT_MATRICES = ("latents",)


# ---------------------------------------------------------------------------------------------
# deploy: lossless, rram-22nm
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", _EXACT)
def test_lossless_deploy_equals_the_quantized_model(name):
    """Bit-exact against the integer re-implementation: every projection on the arrays (GPT-2's
    Conv1Ds too, square ones included), the rest (masks, buckets, scans, pooling) in torch."""
    model, args = _build(name)
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    with torch.no_grad():
        want = reference_model(model, sim)(*args)
    assert_bitwise(sim(*args), want)


@pytest.mark.parametrize("name", list(ZOO5))
def test_lossless_deploy_is_within_8_bit_quantization_of_float(name):
    check_lossless_near_float(*_build(name), _DIGITAL.get(name, set()))


# rram-22nm's thermal noise (0.5 cell-LSB per conversion) alone moves a single Linear(8, 32)'s
# outputs by 27-51 % (2-6 % without it): Mamba's in_proj (8 rows) errs 50 %, and the gating
# y * silu(z) multiplies two such outputs: the block's output errs 1.28 relative to float (0.11
# with thermal noise off; 0.87-1.38 at widths 8-32 and other seeds). Lossy as the chip is,
# not garbage: it is held near float with its thermal noise off
_NOISE_AMPLIFIED = ("mamba",)


@pytest.mark.parametrize("name", list(ZOO5))
def test_rram_deploy_runs_reports_and_accounts_for_every_matrix(name):
    model, args = _build(name)
    with torch.no_grad():
        want = model(*args)
    sim = _quiet(cimsim.deploy, model, _rram(), args)
    got = sim(*args)
    if name in _NOISE_AMPLIFIED:
        assert got.shape == want.shape and torch.isfinite(got).all()
        sim = _quiet(cimsim.deploy, model,
                     _rram_noise_free(), args)
        got = sim(*args)
    check_lossy_run(got, want, sim)
    check_every_matrix(model, sim, _DIGITAL.get(name, set()), _NOT_MATRICES)


# ---------------------------------------------------------------------------------------------
# prepare -> one step -> deploy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chip", ["ideal", "rram"])
@pytest.mark.parametrize("name", list(ZOO5))
def test_prepare_steps_and_the_twin_deploys_to_what_it_computes(name, chip):
    model, args = _build(name, torch.float64)
    chip_cfg = lossless_chip("channel") if chip == "ideal" else _rram_noise_free()
    prep = prepare_step_deploy(model, chip_cfg, args, 0)
    assert {d[0] for d in prep.digital} == _DIGITAL.get(name, set())


# ---------------------------------------------------------------------------------------------
# GPT-2's presents; weights computed from the input
# ---------------------------------------------------------------------------------------------
def test_gpt2_presents_decode_the_next_token_as_the_full_sequence():
    """``use_cache=True`` returns the presents (keys and values in float, computed by the
    mapped c_attn); fed back as ``past_key_values`` the next token's logits equal the full
    sequence's last row (the causal-mask buffer sliced at the cache's offset). The twin too."""
    model, (idx,) = _build("gpt2")
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), (idx,))
    prep = _quiet(prepare, model, lossless_chip("channel"), (idx,))
    for run in (sim, prep.eval()):
        with torch.no_grad():
            full = run(idx)
            prefix, presents = run(idx[:, :4], use_cache=True)
            step = run(idx[:, 4:], past_key_values=presents)
        assert len(presents) == 2 and presents[0][0].shape == (3, 2, 4, 8)
        assert_bitwise(prefix, full[:, :4])
        assert _rel(step, full[:, 4:]) < 0.02


class DynamicLinear(nn.Module):
    """A leaf holding a 2-D ``weight`` and ``bias`` whose forward modulates the weight by the
    input (a FiLM-style dynamic filter): ``F.linear(x, W * g(x))`` is no Linear."""

    def __init__(self, d: int = 8):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(d, d)), nn.Parameter(torch.randn(d))

    def forward(self, x):
        gain = 1.0 + torch.tanh(x.mean(-1, keepdim=True)).mean()
        return F.linear(x, self.weight * gain, self.bias)


class Dynamic(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.dyn, self.out = nn.Linear(8, 8), DynamicLinear(), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.relu(self.dyn(self.inp(x))))


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_weights_computed_from_the_input_are_no_mapped_weight_and_are_named(run):
    """The hypernetwork's per-sample F.linear(h, W(h)) and a weight modulated by the input: no
    layer is made of them; their products are listed digital (activation x activation, by the
    module computing them), and no weight of theirs is claimed simulated."""
    for model, args, layers, digital in (
            (*_build("hypernet"), ["embed", "hyper", "head"], "model"),
            (Dynamic().eval(), (torch.randn(3, 8),), ["inp", "out"], "dyn")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing to warn: nothing was claimed simulated
            out = run(model, lossless_chip("channel"), args)
        assert list(getattr(out, "sim_layers", None) or out.twin_layers) == layers
        assert [d[:2] for d in out.digital] == [(digital, "activation products")]


# ---------------------------------------------------------------------------------------------
# Exported (.pt2) models
# ---------------------------------------------------------------------------------------------
def _exported(name: str, path):
    from cimsim.mapping.loaders import load_model

    model, args = _build(name)
    dims = ({0: torch.export.Dim("b", min=2)},)
    torch.export.save(torch.export.export(model, args, dynamic_shapes=dims), path / "m.pt2")
    return model, load_model(str(path / "m.pt2"), args[0]), args


@pytest.mark.parametrize("name", ["gpt2", "mamba", "perceiver"])
def test_an_exported_model_deploys_as_the_module(name, tmp_path):
    """GPT-2's Conv1Ds as aten.addmm, Mamba's depthwise causal convolution, the Perceiver's
    nn.MultiheadAttention (rebuilt from its inlined calls): under their module names, on
    rram-22nm bit for bit as the module."""
    model, loaded, args = _exported(name, tmp_path)
    chip = cimsim.load_chip("rram-22nm")
    a = _quiet(cimsim.deploy, model, chip, args, seed=3)
    b = _quiet(cimsim.deploy, loaded, chip, args, seed=3)
    assert list(b.sim_layers) == list(a.sim_layers)
    with torch.no_grad():
        assert torch.equal(a(*args), b(*args))


def test_an_exported_attention_with_kdim_loads_and_maps_its_projections(tmp_path):
    """The Perceiver's cross-attention (kdim/vdim: separate q/k/v weights) exports its biases
    as ``aten.chunk(in_proj_bias, 3)`` read by ``getitem``: the loader refused the model,
    "weight chunk is computed from the model's inputs" (it is computed from a constant). It
    is rebuilt as the module (``cimsim.mapping.graph_attention``): its four projections
    mapped, the attention products listed, within 8-bit of float."""
    model, loaded, args = _exported("perceiver", tmp_path)
    sim = _quiet(cimsim.deploy, loaded, lossless_chip("channel"), args)
    assert list(sim.sim_layers) == ["cross", "mlp.0", "mlp.2", "head"]
    assert len(sim.sim_layers["cross"].cores) == 4  # q, k, v, out
    assert [d[1] for d in sim.digital] == ["attention products"]
    with torch.no_grad():
        assert _rel(sim(*args), model(*args)) < 0.03


# ---------------------------------------------------------------------------------------------
# Zero weights: pruned channels, zero-initialised layers
# ---------------------------------------------------------------------------------------------
def _pruned_pointnet(dtype=torch.float32):
    """PointNet with half the output channels of four layers pruned by
    ``torch.nn.utils.prune.ln_structured`` (rows of zeros), the pruning made permanent."""
    from torch.nn.utils import prune

    model, args = _build("pointnet", dtype)
    for name in ("conv1", "conv2", "stn.conv2", "fc.0"):
        layer = model.get_submodule(name)
        prune.ln_structured(layer, "weight", amount=0.5, n=2, dim=0)
        prune.remove(layer, "weight")
    return model, args


def test_pruned_channels_err_as_their_neighbours_do():
    """An all-zero output channel had the weight scale 1.0 ("any scale is exact"): its codes
    are 0, but its cells' programming variation was dequantized at 1.0, so each pruned channel
    read ~1 where its neighbours err by steps of ~max|w|/127. On rram-22nm (variation on,
    thermal noise off) the pruned PointNet erred 0.24 against 0.026 for the dense one; a zero
    channel now takes its tensor's scale. Lossless, bit-exact as before."""
    chip = _rram_noise_free()
    errors = []
    for model, args in (_build("pointnet"), _pruned_pointnet()):
        with torch.no_grad():
            want = model(*args)
        errors.append(_rel(_quiet(cimsim.deploy, model, chip, args)(*args), want))
    dense, pruned = errors
    assert pruned < 2 * dense, (dense, pruned)
    model, args = _pruned_pointnet()
    sim = _quiet(cimsim.deploy, model, lossless_chip("channel"), args)
    with torch.no_grad():
        assert_bitwise(sim(*args), reference_model(model, sim)(*args))


def test_a_pruned_model_trains_and_deploys_to_its_twin():
    chip = _rram_noise_free()
    model, args = _pruned_pointnet(torch.float64)
    prepare_step_deploy(model, chip, args, 0)


@pytest.mark.parametrize("granularity", ["channel", "column"])
def test_a_pruned_channel_of_binary_weights_outputs_its_bias(granularity):
    """1-b weights are sign(w) (0 -> +1) times mean|w|: an all-zero group took the scale 1.0,
    so a pruned channel computed the sum of its inputs on the lossless chip (here 2.4 off its
    bias, its float output). Its scale is mean|w| = 0 now, as the XNOR-Net formula gives; the
    twin computes and trains it (its scale learns) and deploys to what it computes."""
    from tests.arrays.test_binary import binary_chip

    chip = binary_chip(input_bits=8, n_rows=4, n_cols=16)
    chip = chip.replace(quant=chip.quant.replace(weight_granularity=granularity))
    model, args = _pruned_pointnet(torch.float64)
    with torch.no_grad():
        model.fc[2].weight[1].zero_()
    sim = _quiet(cimsim.deploy, model, chip, args)
    with torch.no_grad():
        want = model(*args)
    got = sim(*args)
    torch.testing.assert_close(got[:, 1], want[:, 1], rtol=0, atol=1e-12)  # the bias alone
    prepare_step_deploy(model, chip, args, 0)


_ZEROED = ["down_res.out_layers.3", "mid_res.out_layers.3", "up_res.out_layers.3",
           "mid_attn.proj_out"]


def _zero_module_unet():
    """guided-diffusion's ``zero_module``: each ResBlock's last convolution and the attention's
    output projection start at zero (weights and biases)."""
    model, args = _build("diffusion-unet")
    with torch.no_grad():
        for name in _ZEROED:
            for p in model.get_submodule(name).parameters():
                p.zero_()
    return model, args


@pytest.mark.parametrize("run", [cimsim.deploy, prepare])
def test_an_all_zero_layer_is_named_with_what_to_do(run):
    """An all-zero matrix has no scale: on rram-22nm (thermal noise off) such a layer's cells'
    variation read as outputs of ~3 where its output is 0, the zero-initialised U-Net erring
    1.2 against 0.18 for the trained-like one, without a word. Now warned, naming each layer;
    excluded, they compute their bias exactly, digitally."""
    model, args = _zero_module_unet()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(model, lossless_chip("channel"), args)
    zero = [str(w.message) for w in caught if "its weights are all zero" in str(w.message)]
    assert sorted(m.split("'")[1] for m in zero) == sorted(_ZEROED)
    assert all("exclude it (exclude=[...])" in m for m in zero)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = run(model, lossless_chip("channel"), args, exclude=_ZEROED)
    assert {d[0] for d in out.digital} == {*_ZEROED, "mid_attn"}


def test_an_excluded_all_zero_layer_leaves_the_rest_near_float():
    chip = _rram_noise_free()
    model, args = _zero_module_unet()
    with torch.no_grad():
        want = model(*args)
    sim = _quiet(cimsim.deploy, model, chip, args, exclude=_ZEROED)
    assert _rel(sim(*args), want) < 0.3
