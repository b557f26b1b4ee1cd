"""The ninth zoo's models (``tests/mapping/test_zoo9.py``): written small (tiny widths, no
transformers, timm or torchvision import) the way HuggingFace transformers, timm and
torchvision write them, so that their idioms (keyword inputs, ``ModelOutput``, a KV cache,
layer scale, frozen norms, channels_last ...) reach cimsim as they would from those libraries."""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


# ---------------------------------------------------------------------------------------------
# HuggingFace: ModelOutput, a BERT classifier / masked LM, a RoPE + GQA decoder with a cache
# ---------------------------------------------------------------------------------------------
class ModelOutput(OrderedDict):
    """HuggingFace's ``ModelOutput``: a dataclass that is also an OrderedDict of its non-None
    fields, read by attribute, by key or by index (``out[0]``, the first non-None field)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is not None:
                self[f.name] = v

    def __getitem__(self, k):
        if isinstance(k, str):
            return super().__getitem__(k)
        return self.to_tuple()[k]

    def __setattr__(self, name, value):
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self[k] for k in self.keys())


@dataclasses.dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclasses.dataclass
class CausalLMOutputWithPast(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


class BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, d: int, max_pos: int = 16, types: int = 2):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_pos, d)
        self.token_type_embeddings = nn.Embedding(types, d)
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        # HF: a non-persistent buffer, sliced to the sequence length in the forward
        self.register_buffer("position_ids", torch.arange(max_pos).expand((1, -1)),
                             persistent=False)
        self.register_buffer("token_type_ids", torch.zeros(1, max_pos, dtype=torch.long),
                             persistent=False)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        seq = input_ids.shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, :seq]
        if token_type_ids is None:
            token_type_ids = self.token_type_ids[:, :seq].expand(input_ids.shape[0], seq)
        e = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(position_ids))
        return self.dropout(self.LayerNorm(e))


class BertSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, d // heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.dropout = nn.Dropout(0.1)

    def transpose_for_scores(self, x):
        return x.view(*x.shape[:-1], self.num_attention_heads,
                      self.attention_head_size).permute(0, 2, 1, 3)

    def forward(self, hidden, attention_mask=None, head_mask=None):
        q = self.transpose_for_scores(self.query(hidden))
        k = self.transpose_for_scores(self.key(hidden))
        v = self.transpose_for_scores(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask  # the extended additive mask
        probs = self.dropout(F.softmax(scores, dim=-1))
        if head_mask is not None:
            probs = probs * head_mask
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(*ctx.shape[:-2], -1)


class BertLayer(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.attention = BertSelfAttention(d, heads)
        self.attention_output = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d, eps=1e-12)
        self.intermediate = nn.Linear(d, 2 * d)
        self.output = nn.Linear(2 * d, d)
        self.ln2 = nn.LayerNorm(d, eps=1e-12)

    def forward(self, hidden, attention_mask=None, head_mask=None):
        a = self.ln1(hidden + self.attention_output(self.attention(hidden, attention_mask,
                                                                   head_mask)))
        return self.ln2(a + self.output(F.gelu(self.intermediate(a))))


class BertEncoder(nn.Module):
    def __init__(self, d: int, heads: int, layers: int):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(d, heads) for _ in range(layers))
        self.gradient_checkpointing = False

    def forward(self, hidden, attention_mask=None, head_mask=None, output_hidden_states=False):
        states: tuple[torch.Tensor, ...] = ()
        for i, layer in enumerate(self.layer):
            if output_hidden_states:
                states = states + (hidden,)
            hm = None if head_mask is None else head_mask[i]
            if self.gradient_checkpointing and self.training:
                hidden = torch.utils.checkpoint.checkpoint(layer, hidden, attention_mask, hm,
                                                           use_reentrant=False)
            else:
                hidden = layer(hidden, attention_mask, hm)
        return hidden, (states + (hidden,) if output_hidden_states else None)


def get_extended_attention_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """HF's ``ModuleUtilsMixin.get_extended_attention_mask``: (B, S) 1/0 -> (B, 1, 1, S)
    additive, 0 where attended, the dtype's minimum where masked."""
    ext = mask[:, None, None, :].to(dtype)
    return (1.0 - ext) * torch.finfo(dtype).min


def get_head_mask(head_mask, layers: int, dtype: torch.dtype):
    """HF's ``get_head_mask``: (heads,) or (layers, heads) -> (layers, 1, heads, 1, 1)."""
    if head_mask is None:
        return None
    if head_mask.dim() == 1:
        head_mask = head_mask[None].expand(layers, -1)
    return head_mask[:, None, :, None, None].to(dtype)


class BertForSequenceClassification(nn.Module):
    """input_ids / attention_mask / token_type_ids / position_ids / head_mask / labels /
    return_dict / output_hidden_states as HF's; the loss first when labels are given."""

    def __init__(self, vocab: int = 24, d: int = 8, heads: int = 2, layers: int = 2,
                 classes: int = 3, checkpointing: bool = False):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab, d)
        self.encoder = BertEncoder(d, heads, layers)
        self.encoder.gradient_checkpointing = checkpointing
        self.pooler = nn.Linear(d, d)
        self.classifier = nn.Linear(d, classes)
        self.num_layers = layers

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                position_ids=None, head_mask=None, labels=None, output_hidden_states=None,
                return_dict=None):
        return_dict = True if return_dict is None else return_dict
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.embeddings(input_ids, token_type_ids, position_ids)
        ext = get_extended_attention_mask(attention_mask, h.dtype)
        hm = get_head_mask(head_mask, self.num_layers, h.dtype)
        h, states = self.encoder(h, ext, hm, bool(output_hidden_states))
        logits = self.classifier(torch.tanh(self.pooler(h[:, 0])))
        loss = None if labels is None else F.cross_entropy(logits, labels)
        if not return_dict:
            out = (logits,) + ((states,) if states is not None else ())
            return ((loss,) + out) if loss is not None else out
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=states)


class BertForMaskedLM(nn.Module):
    """The encoder with an MLM head whose decoder is tied to the word embeddings (HF's
    ``tie_weights`` through ``get_output_embeddings`` / ``get_input_embeddings``)."""

    def __init__(self, vocab: int = 24, d: int = 8):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab, d)
        self.encoder = BertEncoder(d, 2, 1)
        self.transform = nn.Linear(d, d)
        self.transform_ln = nn.LayerNorm(d, eps=1e-12)
        self.decoder = nn.Linear(d, vocab)
        self.tie_weights()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def get_output_embeddings(self):
        return self.decoder

    def tie_weights(self):
        self.get_output_embeddings().weight = self.get_input_embeddings().weight

    def forward(self, input_ids, attention_mask):
        h = self.embeddings(input_ids)
        h, _ = self.encoder(h, get_extended_attention_mask(attention_mask, h.dtype))
        return self.decoder(self.transform_ln(F.gelu(self.transform(h))))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """LLaMA's: ``inv_freq`` a buffer, cos / sin computed for the given position ids."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids):
        freqs = position_ids[:, :, None].to(x.dtype) * self.inv_freq.to(x.dtype)[None, None]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class GQAttention(nn.Module):
    """LLaMA / Mistral attention: RoPE on q and k, ``kv_heads`` < ``heads`` shared by groups
    (SDPA's ``enable_gqa`` or ``repeat_interleave`` of K / V), a (k, v) cache per layer."""

    def __init__(self, d: int, heads: int, kv_heads: int, sdpa: bool):
        super().__init__()
        self.heads, self.kv_heads, self.hd, self.sdpa = heads, kv_heads, d // heads, sdpa
        self.q_proj = nn.Linear(d, heads * self.hd, bias=False)
        self.k_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(d, kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(heads * self.hd, d, bias=False)

    def forward(self, x, cos, sin, past=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        present = (k, v)
        causal = t > 1  # one new token attends to the whole cache
        if past is not None and t > 1:
            raise NotImplementedError("chunked prefill with a cache")
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        else:
            rep = self.heads // self.kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            s = q @ k.transpose(-1, -2) / math.sqrt(self.hd)
            if causal:
                s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
            out = s.softmax(-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1)), present


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, kv_heads: int, sdpa: bool):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(d), RMSNorm(d)
        self.self_attn = GQAttention(d, heads, kv_heads, sdpa)
        self.gate_proj = nn.Linear(d, 2 * d, bias=False)
        self.up_proj = nn.Linear(d, 2 * d, bias=False)
        self.down_proj = nn.Linear(2 * d, d, bias=False)

    def forward(self, x, cos, sin, past=None):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, past)
        x = x + a
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)), present


class LlamaForCausalLM(nn.Module):
    """``forward(input_ids, past_key_values=None, use_cache=False)``: positions continue after
    the cache; returns logits, and the updated cache when ``use_cache``."""

    def __init__(self, vocab: int = 24, d: int = 16, heads: int = 4, kv_heads: int = 2,
                 layers: int = 2, sdpa: bool = True):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(DecoderLayer(d, heads, kv_heads, sdpa)
                                    for _ in range(layers))
        self.rotary_emb = RotaryEmbedding(d // heads)
        self.norm = RMSNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False,
                return_dict=False):
        b, t = input_ids.shape
        start = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        position_ids = torch.arange(start, start + t, device=input_ids.device)[None].expand(b, t)
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(x, position_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, cos, sin,
                               None if past_key_values is None else past_key_values[i])
            presents.append(present)
        logits = self.lm_head(self.norm(x))
        cache = tuple(presents) if use_cache else None
        if return_dict:
            return CausalLMOutputWithPast(logits=logits, past_key_values=cache)
        return (logits, cache) if use_cache else logits


def greedy_generate(model, input_ids: torch.Tensor, steps: int) -> tuple[torch.Tensor, list]:
    """HF's greedy search with a cache: the prompt once, then one token at a time fed back with
    ``past_key_values``. Returns the sequences and each step's logits."""
    out = model(input_ids=input_ids, use_cache=True, return_dict=True)
    ids, logits = input_ids, [out.logits[:, -1]]
    for _ in range(steps):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True,
                    return_dict=True)
        logits.append(out.logits[:, -1])
    return ids, logits


# ---------------------------------------------------------------------------------------------
# DiT (adaLN-Zero), Whisper (Conv1d stem, sinusoidal positions, cross-attention)
# ---------------------------------------------------------------------------------------------
def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None].to(t.device)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class DiTBlock(nn.Module):
    """DiT's block: LayerNorms without affine whose shift / scale / gate come from
    ``adaLN_modulation`` (SiLU, Linear(d, 6d)) of the conditioning."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(approximate="tanh"),
                                 nn.Linear(2 * d, d))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        h = modulate(self.norm1(x), sh1, sc1)
        x = x + g1.unsqueeze(1) * self.attn(h, h, h, need_weights=False)[0]
        return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sh2, sc2))


class DiT(nn.Module):
    """Patchify conv, a frequency embedding of the timestep through an MLP, a class label
    table, one block, the adaLN final layer, unpatchify."""

    def __init__(self, c: int = 2, p: int = 2, d: int = 8, classes: int = 5):
        super().__init__()
        self.p, self.c = p, c
        self.x_embedder = nn.Conv2d(c, d, p, stride=p)
        self.t_embedder = nn.Sequential(nn.Linear(8, d), nn.SiLU(), nn.Linear(d, d))
        self.y_embedder = nn.Embedding(classes, d)
        self.block = DiTBlock(d, 2)
        self.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_mod = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.final = nn.Linear(d, p * p * c)

    def forward(self, x, t, y):
        b, _, hh, ww = x.shape
        h = self.x_embedder(x).flatten(2).transpose(1, 2)
        cond = self.t_embedder(timestep_embedding(t, 8).to(x.dtype)) + self.y_embedder(y)
        h = self.block(h, cond)
        shift, scale = self.final_mod(cond).chunk(2, dim=1)
        h = self.final(modulate(self.norm_final(h), shift, scale))
        gh, gw = hh // self.p, ww // self.p
        h = h.reshape(b, gh, gw, self.p, self.p, self.c)
        return torch.einsum("nhwpqc->nchpwq", h).reshape(b, self.c, hh, ww)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's sinusoidal position table."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class WhisperAttention(nn.Module):
    """Whisper's: q / k (no bias) / v / out Linears, self- or cross-attention, an optional
    causal mask (a buffer), SDPA."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key = nn.Linear(d, d), nn.Linear(d, d, bias=False)
        self.value, self.out = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, xa=None, mask=None):
        src = x if xa is None else xa
        b, t, d = x.shape

        def split(z):
            return z.view(z.shape[0], z.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(src)), split(self.value(src))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None
                                           else mask[:t, :t])
        return self.out(o.transpose(1, 2).reshape(b, t, d))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d: int, heads: int, cross: bool):
        super().__init__()
        self.attn, self.attn_ln = WhisperAttention(d, heads), nn.LayerNorm(d)
        self.cross_attn = WhisperAttention(d, heads) if cross else None
        self.cross_attn_ln = nn.LayerNorm(d) if cross else None
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.mlp_ln = nn.LayerNorm(d)

    def forward(self, x, xa=None, mask=None):
        x = x + self.attn(self.attn_ln(x), mask=mask)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_attn_ln(x), xa)
        return x + self.mlp(self.mlp_ln(x))


class Whisper(nn.Module):
    """``forward(mel, tokens)``: the audio encoder (two Conv1d + GELU, the second strided,
    sinusoidal positions a buffer), the text decoder (learned positions, causal self-attention,
    cross-attention) and logits by the token embedding's transpose, as Whisper computes them
    (``x @ token_embedding.weight.T``: a weight used without a module)."""

    def __init__(self, mels: int = 4, d: int = 8, frames: int = 12, vocab: int = 20,
                 ctx: int = 8):
        super().__init__()
        self.conv1 = nn.Conv1d(mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(frames // 2, d))
        self.enc = ResidualAttentionBlock(d, 2, cross=False)
        self.ln_post = nn.LayerNorm(d)
        self.token_embedding = nn.Embedding(vocab, d)
        self.dec_positional_embedding = nn.Parameter(0.1 * torch.randn(ctx, d))
        self.dec = ResidualAttentionBlock(d, 2, cross=True)
        self.ln = nn.LayerNorm(d)
        self.register_buffer("mask", torch.empty(ctx, ctx).fill_(-math.inf).triu_(1),
                             persistent=False)

    def forward(self, mel, tokens):
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).permute(0, 2, 1)
        xa = self.ln_post(self.enc(x + self.positional_embedding.to(x.dtype)))
        t = tokens.shape[1]
        h = self.token_embedding(tokens) + self.dec_positional_embedding[:t]
        h = self.ln(self.dec(h, xa, self.mask.to(h.dtype)))
        return h @ torch.transpose(self.token_embedding.weight.to(h.dtype), 0, 1)


# ---------------------------------------------------------------------------------------------
# timm / torchvision
# ---------------------------------------------------------------------------------------------
class FrozenBatchNorm2d(nn.Module):
    """torchvision.ops.FrozenBatchNorm2d: weight, bias, running stats all buffers."""

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x):
        w, b = self.weight.reshape(1, -1, 1, 1), self.bias.reshape(1, -1, 1, 1)
        rv, rm = self.running_var.reshape(1, -1, 1, 1), self.running_mean.reshape(1, -1, 1, 1)
        scale = w * (rv + self.eps).rsqrt()
        return x * scale + (b - rm * scale)


class Conv2dNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation: a Sequential of conv, norm, activation (the conv
    without bias when a norm follows), padding from the kernel and dilation."""

    def __init__(self, c_in, c_out, kernel_size=3, stride=1, groups=1, norm_layer=nn.BatchNorm2d,
                 activation_layer=nn.ReLU, dilation=1):
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size, stride, padding,
                                             dilation=dilation, groups=groups,
                                             bias=norm_layer is None)]
        if norm_layer is not None:
            layers.append(norm_layer(c_out))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True) if activation_layer in
                          (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU) else activation_layer())
        super().__init__(*layers)
        self.out_channels = c_out


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: 1x1 convs fc1 / fc2, ``activation`` and
    ``scale_activation`` arguments (MobileNetV3 passes Hardsigmoid)."""

    def __init__(self, c, squeeze, activation=nn.ReLU, scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, squeeze, 1), nn.Conv2d(squeeze, c, 1)
        self.activation, self.scale_activation = activation(), scale_activation()

    def forward(self, x):
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


def stochastic_depth(x, p: float, mode: str, training: bool = True):
    """torchvision.ops.stochastic_depth: identity in eval."""
    if not training or p == 0.0:
        return x
    shape = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p)
    return x * noise.div_(1 - p)


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        return stochastic_depth(x, self.p, self.mode, self.training)


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV3 block: expand, depthwise, SE (Hardsigmoid), project, the
    residual through StochasticDepth (EfficientNet's), norms frozen (detection backbones)."""

    def __init__(self, c: int, e: int):
        super().__init__()
        norm = FrozenBatchNorm2d
        self.block = nn.Sequential(
            Conv2dNormActivation(c, e, 1, norm_layer=norm, activation_layer=nn.Hardswish),
            Conv2dNormActivation(e, e, 3, groups=e, norm_layer=norm,
                                 activation_layer=nn.Hardswish),
            SqueezeExcitation(e, 4, scale_activation=nn.Hardsigmoid),
            Conv2dNormActivation(e, c, 1, norm_layer=norm, activation_layer=None))
        self.stochastic_depth = StochasticDepth(0.2, "row")

    def forward(self, x):
        return x + self.stochastic_depth(self.block(x))


class TorchvisionNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            Conv2dNormActivation(3, 8, 3, stride=2, norm_layer=FrozenBatchNorm2d,
                                 activation_layer=nn.Hardswish),
            InvertedResidual(8, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(8, 12), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2, inplace=True), nn.Linear(12, classes))
        for m in self.modules():  # frozen stats that are not the identity
            if isinstance(m, FrozenBatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class DropPath(nn.Module):
    """timm's DropPath (``drop_path`` with ``scale_by_keep``)."""

    def __init__(self, p: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob, self.scale_by_keep = p, scale_by_keep

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep) if self.scale_by_keep else x * mask


class LayerNorm2d(nn.LayerNorm):
    """timm's LayerNorm2d: a channels-first LayerNorm by permuting."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """timm's ConvNeXt block: depthwise 7x7, LayerNorm, MLP (Linears on channels-last), layer
    scale ``gamma`` times the branch, DropPath."""

    def __init__(self, c: int, ls_init: float = 0.5, drop_path: float = 0.1):
        super().__init__()
        self.conv_dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.act, self.fc2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(ls_init * torch.ones(c))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        shortcut = x
        x = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        x = self.fc2(self.act(self.fc1(x)))
        x = x.mul(self.gamma).permute(0, 3, 1, 2)
        return self.drop_path(x) + shortcut


class TimmConvNeXt(nn.Module):
    """timm's model API: ``forward_features`` then ``forward_head(x, pre_logits=...)``, a
    ``features_only`` variant returning the stage outputs; run channels_last."""

    def __init__(self, classes: int = 4, features_only: bool = False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 2, stride=2), LayerNorm2d(8, eps=1e-6))
        self.stages = nn.ModuleList([
            nn.Sequential(ConvNeXtBlock(8)),
            nn.Sequential(LayerNorm2d(8, eps=1e-6), nn.Conv2d(8, 12, 2, stride=2),
                          ConvNeXtBlock(12))])
        self.features_only = features_only
        if not features_only:  # timm builds no head for a feature extractor
            self.head_norm = nn.LayerNorm(12)
            self.head_drop = nn.Dropout(0.1)
            self.head_fc = nn.Linear(12, classes)

    def forward_features(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x, pre_logits: bool = False):
        x = self.head_drop(self.head_norm(x.mean((2, 3))))
        return x if pre_logits else self.head_fc(x)

    def forward(self, x):
        if self.features_only:
            feats = [self.stem(x)]
            for stage in self.stages:
                feats.append(stage(feats[-1]))
            return feats[1:]
        return self.forward_head(self.forward_features(x))


class PreLogits(nn.Module):
    """A model used through ``forward_head(pre_logits=True)``: embeddings, no classifier."""

    def __init__(self, model: TimmConvNeXt):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


# ---------------------------------------------------------------------------------------------
# DETR
# ---------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """DETR's box head: ReLU between ``num_layers`` Linears."""

    def __init__(self, d_in, d_hidden, d_out, num_layers):
        super().__init__()
        h = [d_hidden] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([d_in] + h, h + [d_out],
                                                                    strict=True))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


class DETRDecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.multihead_attn = nn.MultiheadAttention(d, heads)
        self.linear1, self.linear2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, tgt, memory, pos, query_pos):
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, k, value=tgt)[0])
        tgt = self.norm2(tgt + self.multihead_attn(query=tgt + query_pos, key=memory + pos,
                                                   value=memory)[0])
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class DETREncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads)
        self.linear1, self.linear2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, src, pos):
        q = k = src + pos
        src = self.norm1(src + self.self_attn(q, k, value=src)[0])
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DETR(nn.Module):
    """A conv backbone, ``input_proj``, a sine position encoding, one encoder and one decoder
    layer (sequence-first, as DETR's), ``query_embed.weight`` as the object queries, class and
    box heads: ``{"pred_logits", "pred_boxes"}``."""

    def __init__(self, classes: int = 3, queries: int = 4, d: int = 8):
        super().__init__()
        self.backbone = nn.Sequential(
            Conv2dNormActivation(3, 6, 3, stride=2, norm_layer=FrozenBatchNorm2d),
            Conv2dNormActivation(6, 12, 3, stride=2, norm_layer=FrozenBatchNorm2d))
        self.input_proj = nn.Conv2d(12, d, 1)
        self.encoder = DETREncoderLayer(d, 2)
        self.decoder = DETRDecoderLayer(d, 2)
        self.query_embed = nn.Embedding(queries, d)
        self.class_embed = nn.Linear(d, classes + 1)
        self.bbox_embed = MLP(d, d, 4, 3)
        self.d = d

    def position_embedding(self, h: int, w: int, dtype) -> torch.Tensor:
        """DETR's PositionEmbeddingSine (normalized), (H·W, 1, d)."""
        y = torch.arange(1, h + 1, dtype=dtype)[:, None].expand(h, w) / h * 2 * math.pi
        x = torch.arange(1, w + 1, dtype=dtype)[None, :].expand(h, w) / w * 2 * math.pi
        npf = self.d // 2
        dim_t = torch.arange(npf, dtype=dtype)
        dim_t = 10000 ** (2 * (dim_t // 2) / npf)
        px, py = x[..., None] / dim_t, y[..., None] / dim_t
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=3).flatten(2)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=3).flatten(2)
        return torch.cat((py, px), dim=2).flatten(0, 1)[:, None]

    def forward(self, samples):
        src = self.input_proj(self.backbone(samples))
        b, d, h, w = src.shape
        src = src.flatten(2).permute(2, 0, 1)  # (HW, B, d)
        pos = self.position_embedding(h, w, src.dtype).expand(-1, b, -1)
        memory = self.encoder(src, pos)
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)
        tgt = torch.zeros_like(query_pos)
        hs = self.decoder(tgt, memory, pos, query_pos).transpose(0, 1)  # (B, Q, d)
        return {"pred_logits": self.class_embed(hs),
                "pred_boxes": self.bbox_embed(hs).sigmoid()}
