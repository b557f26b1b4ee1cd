"""Real HuggingFace ``transformers`` models through cimsim: deploy, cost and train each family.

The test zoos rewrite model families by hand at toy size; users bring the library's own code,
which reads its layers' weights' dtype, builds masks from ``config`` fields, calls
``F.scaled_dot_product_attention`` and wraps outputs in ``ModelOutput`` s. This script builds
about thirty families of ``transformers`` from small random configurations (no download, seed
0 per family): encoders, decoders, encoder-decoders, vision, audio and CLIP. For each family on
each chip (by default ``rram-22nm``, the all-digital SRAM macro ``published/chih-isscc21``,
the 1-b-input macro ``published/wan-nature22`` and the published ``published/yuan-jssc26``;
published macros time-multiplexed, as their capacity error advises) it records, stage by
stage:

* ``deploy`` + forward: ``cimsim.deploy(model, chip, x, seed=0)`` with ``x`` the model's
  keyword inputs, then ``sim(**x)``, every floating output finite; where a 1-b-input chip
  refuses signed activations (:class:`~cimsim.errors.SignedInputError`), deployed again with
  the layers it names excluded, as the error advises (the cell says how many; so too the
  twin);
* ``cost``: ``sim.report()`` and ``cimsim.cost.estimate(sim.work())``: energy, area, latency
  per inference finite and positive;
* ``twin``: ``cimsim.train.prepare(model, chip, x)``, one SGD step on the mean square of the
  first floating output, the loss finite;
* the user's model unchanged: its outputs and ``state_dict`` after all of it equal those
  before.

And once per family, on the ``ideal`` preset (8 b, no noise): the mapped layers, the rows
kept digital and the relative error against the float model (:func:`fidelity`).

A stage ends ``ok``, ``refused`` (a ``CimsimError``: cimsim says why and the way out) or
``ERROR`` (any other exception, with the tail of its traceback: a bug to look at). It prints
the table (family x chip) and, with ``--md FILE``, writes it as markdown with the messages.

``transformers`` is no dependency of cimsim: without it the script says so and exits 0. Run
``PYTHONPATH=.:/path/to/site-packages NUMBA_NUM_THREADS=1 python scripts/audit_transformers.py``
(``--models bert,vit`` / ``--chips rram-22nm`` for a subset, ``--no-twin`` to skip training).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHIPS = ("rram-22nm", "published/chih-isscc21", "published/wan-nature22", "published/yuan-jssc26")
TOTALS = ("energy_pj_per_inference", "area_mm2", "latency_ns_per_inference")
B, L, VOCAB = 2, 8, 100  # batch, sequence length, vocabulary of the text models


# ---------------------------------------------------------------------------------------------
# the families: (build the model, its keyword inputs), each from a small random config
# ---------------------------------------------------------------------------------------------
def _text(**extra: Any) -> Callable[[], dict]:
    def data() -> dict:
        import torch
        x = {"input_ids": torch.randint(3, VOCAB, (B, L)),
             "attention_mask": torch.ones(B, L, dtype=torch.long)}
        x["attention_mask"][1, -2:] = 0  # a padded sample: the masks are built and used
        for k, shape in extra.items():
            x[k] = torch.randint(3, VOCAB, shape)
        return x
    return data


def _pixels(size: int = 32) -> Callable[[], dict]:
    def data() -> dict:
        import torch
        return {"pixel_values": torch.randn(B, 3, size, size)}
    return data


def _audio() -> dict:
    import torch
    return {"input_values": torch.randn(B, 800)}


def families() -> dict[str, tuple[Callable[[], Any], Callable[[], dict]]]:
    """``{family: (build, inputs)}``; each builder imports ``transformers`` (``T``)."""
    import torch
    import transformers as T

    enc = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               vocab_size=VOCAB, max_position_embeddings=64)
    dec = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               vocab_size=VOCAB, max_position_embeddings=64)
    s2s = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
               vocab_size=VOCAB, max_position_embeddings=64)
    vit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               image_size=32, patch_size=8, num_labels=10)
    w2v = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=32)
    dec_ids = {"decoder_input_ids": (B, 6)}

    def clip_data() -> dict:
        return {**_text()(), "pixel_values": torch.randn(B, 3, 32, 32)}

    def whisper_data() -> dict:
        return {"input_features": torch.randn(B, 16, 32),
                "decoder_input_ids": torch.randint(3, VOCAB, (B, 6))}

    return {
        # encoders
        "bert": (lambda: T.BertForSequenceClassification(T.BertConfig(**enc)), _text()),
        "roberta": (lambda: T.RobertaForSequenceClassification(
            T.RobertaConfig(**enc, pad_token_id=1)), _text()),
        "distilbert": (lambda: T.DistilBertForSequenceClassification(T.DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=VOCAB,
            max_position_embeddings=64)), _text()),
        "albert": (lambda: T.AlbertForSequenceClassification(
            T.AlbertConfig(**enc, embedding_size=16)), _text()),
        "deberta-v2": (lambda: T.DebertaV2ForSequenceClassification(T.DebertaV2Config(
            **enc, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"])),
            _text()),
        "electra": (lambda: T.ElectraForSequenceClassification(
            T.ElectraConfig(**enc, embedding_size=16)), _text()),
        # decoders
        "gpt2": (lambda: T.GPT2LMHeadModel(T.GPT2Config(
            n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=64)), _text()),
        "gpt-neox": (lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(**dec)), _text()),
        "llama": (lambda: T.LlamaForCausalLM(T.LlamaConfig(**dec, num_key_value_heads=2)),
                  _text()),
        "mistral": (lambda: T.MistralForCausalLM(T.MistralConfig(**dec, num_key_value_heads=2)),
                    _text()),
        "qwen2": (lambda: T.Qwen2ForCausalLM(T.Qwen2Config(**dec, num_key_value_heads=2)),
                  _text()),
        "phi": (lambda: T.PhiForCausalLM(T.PhiConfig(**dec)), _text()),
        "gemma": (lambda: T.GemmaForCausalLM(T.GemmaConfig(
            **dec, num_key_value_heads=1, head_dim=8)), _text()),
        "opt": (lambda: T.OPTForCausalLM(T.OPTConfig(
            hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=2,
            vocab_size=VOCAB, max_position_embeddings=64, word_embed_proj_dim=32)), _text()),
        "falcon": (lambda: T.FalconForCausalLM(T.FalconConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB)),
            _text()),
        "mixtral": (lambda: T.MixtralForCausalLM(T.MixtralConfig(
            **dec, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)), _text()),
        # encoder-decoders
        "t5": (lambda: T.T5ForConditionalGeneration(T.T5Config(
            d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=VOCAB)),
            _text(**dec_ids)),
        "bart": (lambda: T.BartForConditionalGeneration(T.BartConfig(**s2s)), _text(**dec_ids)),
        "marian": (lambda: T.MarianMTModel(T.MarianConfig(
            **s2s, decoder_vocab_size=VOCAB, pad_token_id=VOCAB - 1,
            decoder_start_token_id=VOCAB - 1)), _text(**dec_ids)),
        "pegasus": (lambda: T.PegasusForConditionalGeneration(T.PegasusConfig(**s2s)),
                    _text(**dec_ids)),
        "whisper": (lambda: T.WhisperForConditionalGeneration(T.WhisperConfig(
            **{k: v for k, v in s2s.items() if k != "max_position_embeddings"},
            num_mel_bins=16, max_source_positions=16, max_target_positions=32, pad_token_id=1,
            bos_token_id=2, eos_token_id=2, decoder_start_token_id=2)), whisper_data),
        # vision
        "vit": (lambda: T.ViTForImageClassification(T.ViTConfig(**vit)), _pixels()),
        "deit": (lambda: T.DeiTForImageClassification(T.DeiTConfig(**vit)), _pixels()),
        "beit": (lambda: T.BeitForImageClassification(T.BeitConfig(
            **vit, use_relative_position_bias=True)), _pixels()),
        "swin": (lambda: T.SwinForImageClassification(T.SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
            window_size=4, num_labels=10)), _pixels()),
        "convnext": (lambda: T.ConvNextForImageClassification(T.ConvNextConfig(
            num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=10)), _pixels()),
        "resnet": (lambda: T.ResNetForImageClassification(T.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
            num_labels=10)), _pixels()),
        "mobilenet-v2": (lambda: T.MobileNetV2ForImageClassification(T.MobileNetV2Config(
            image_size=32, depth_multiplier=0.25, num_labels=10)), _pixels()),
        "segformer": (lambda: T.SegformerForSemanticSegmentation(T.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
            patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
            decoder_hidden_size=32, num_labels=5)), _pixels()),
        "detr": (lambda: T.DetrForObjectDetection(T.DetrConfig(
            use_timm_backbone=False, use_pretrained_backbone=False,
            backbone_config=T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32],
                                           depths=[1, 1, 1, 1], layer_type="basic",
                                           out_features=["stage4"]),
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=5,
            num_labels=5)), _pixels()),
        # audio
        "wav2vec2": (lambda: T.Wav2Vec2ForSequenceClassification(T.Wav2Vec2Config(**w2v)),
                     _audio),
        "hubert": (lambda: T.HubertForSequenceClassification(T.HubertConfig(**w2v)), _audio),
        # multimodal
        "clip": (lambda: T.CLIPModel(T.CLIPConfig(
            text_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                             num_hidden_layers=2, vocab_size=VOCAB, max_position_embeddings=32),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                               num_hidden_layers=2, image_size=32, patch_size=8),
            projection_dim=16)), clip_data),
    }


# ---------------------------------------------------------------------------------------------
# one family on one chip
# ---------------------------------------------------------------------------------------------
@dataclass
class Stage:
    """One stage's outcome: ``ok``, ``refused`` or ``ERROR``, and what it said."""

    status: str = "ok"
    message: str = ""


@dataclass
class Pair:
    family: str
    chip: str
    stages: dict[str, Stage] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0

    @property
    def status(self) -> str:
        worst = [s.status for s in self.stages.values()]
        return "ERROR" if "ERROR" in worst else "refused" if "refused" in worst else "ok"


def _outcome(exc: BaseException) -> Stage:
    from cimsim.errors import CimsimError

    if isinstance(exc, CimsimError):
        return Stage("refused", f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}")
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
    return Stage("ERROR", tail.strip()[-700:])


def floats(out: Any) -> list[Any]:
    """The floating tensors of a model's output (a ``ModelOutput``, tuple, tensor), in
    order."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in floats(o)]
    return []


def _snapshot(model: Any, x: dict) -> tuple[list[Any], dict[str, Any]]:
    import torch

    with torch.no_grad():
        outs = [t.clone() for t in floats(model(**x))]
    return outs, {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: tuple[list[Any], dict[str, Any]], b: tuple[list[Any], dict[str, Any]]) -> bool:
    import torch

    return (len(a[0]) == len(b[0])
            and all(torch.equal(u, v) for u, v in zip(a[0], b[0], strict=True))
            and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1]))


def user_chip(name: str) -> Any:
    """A preset as a user loads it; a published macro time-multiplexed (its capacity error's
    advice: a model needs more arrays than one macro has)."""
    import cimsim

    chip = cimsim.load_chip(name)
    if name.startswith("published/"):
        chip = chip.replace(array=chip.array.replace(allow_time_multiplexing=True))
    return chip


def as_advised(run: Callable[..., Any], model: Any, chip: Any, x: dict) -> tuple[Any, list[str]]:
    """``run(model, chip, x)`` (deploy or prepare) as a user following cimsim's errors would:
    a 1-b-input chip refusing signed activations -> again with the layers it names
    excluded."""
    from cimsim.errors import SignedInputError

    exclude: list[str] = []
    while True:
        try:
            return run(model, chip, x, seed=0, exclude=exclude), exclude
        except SignedInputError as exc:
            new = [n for n in exc.layers if n not in exclude]
            if not new:
                raise
            exclude += new


def audit_pair(family: str, build: Callable[[], Any], data: Callable[[], dict], chip_name: str,
               *, twin: bool = True) -> Pair:
    import torch

    import cimsim
    from cimsim.cost import estimate
    from cimsim.train import prepare

    pair, start = Pair(family, chip_name), time.perf_counter()
    torch.manual_seed(0)
    try:
        model, x = build().eval(), data()
        chip = user_chip(chip_name)
    except Exception as exc:  # noqa: BLE001 - the library's build: recorded
        pair.stages["build"] = _outcome(exc)
        return pair
    before = _snapshot(model, x)
    sim = None
    try:
        sim, excluded = as_advised(cimsim.deploy, model, chip, x)
        with torch.no_grad():
            out = floats(sim(**x))
        if not out or not all(bool(torch.isfinite(t).all()) for t in out):
            raise AssertionError(f"non-finite or no floating output ({len(out)} tensors)")
        pair.stages["deploy"] = Stage()
        if excluded:
            pair.note = f"{len(excluded)} signed-input layers excluded"
    except Exception as exc:  # noqa: BLE001 - every failure is a row of the table
        pair.stages["deploy"] = _outcome(exc)
        sim = None
    if sim is not None:
        try:
            report, cost = sim.report(), estimate(sim.work())
            for key in TOTALS:
                for v in (report.totals[key], cost.totals[key]):
                    if not (math.isfinite(v) and v > 0):
                        raise AssertionError(f"{key} = {v}")
            pair.stages["cost"] = Stage()
        except Exception as exc:  # noqa: BLE001
            pair.stages["cost"] = _outcome(exc)
    if twin:
        try:
            prep, _ = as_advised(prepare, model, chip, x)
            opt = torch.optim.SGD([p for p in prep.parameters() if p.requires_grad], lr=1e-3)
            prep.train()
            loss = floats(prep(**x))[0].float().pow(2).mean()
            loss.backward()
            opt.step()
            if not math.isfinite(float(loss)):
                raise AssertionError(f"loss {float(loss)}")
            pair.stages["twin"] = Stage()
        except Exception as exc:  # noqa: BLE001
            pair.stages["twin"] = _outcome(exc)
    try:
        if not _same(before, _snapshot(model, x)):
            pair.stages["user model"] = Stage("ERROR", "the user's model changed")
    except Exception as exc:  # noqa: BLE001
        pair.stages["user model"] = _outcome(exc)
    pair.seconds = time.perf_counter() - start
    return pair


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
def fidelity(build: Callable[[], Any], data: Callable[[], dict]) -> str:
    """On the ``ideal`` preset (8-b inputs and weights, no noise): the mapped layers, the
    rows kept digital and ``|y - y_float| / |y_float|`` over every floating output: a
    wrong result shows here, where noise hides nothing."""
    import torch

    import cimsim

    torch.manual_seed(0)
    try:
        model, x = build().eval(), data()
        sim = cimsim.deploy(model, "ideal", x, seed=0)
        with torch.no_grad():
            want = torch.cat([t.double().flatten() for t in floats(model(**x))])
            got = torch.cat([t.double().flatten() for t in floats(sim(**x))])
        rel = float((got - want).norm() / want.norm())
        return f"| {len(sim.sim_layers)} | {len(sim.digital)} | {rel:.4f} |"
    except Exception as exc:  # noqa: BLE001
        return f"| {_outcome(exc).status} | | |"


def cell(pair: Pair) -> str:
    bad = [f"{name} {s.status}" for name, s in pair.stages.items() if s.status != "ok"]
    text = "; ".join(bad) if bad else "ok"
    return f"{text} ({pair.note})" if pair.note else text


def table(pairs: list[Pair], chips: list[str]) -> str:
    by = {(p.family, p.chip): p for p in pairs}
    families = list(dict.fromkeys(p.family for p in pairs))
    lines = ["| family | " + " | ".join(chips) + " |", "|---" * (len(chips) + 1) + "|"]
    for f in families:
        lines.append(f"| {f} | " + " | ".join(cell(by[f, c]) if (f, c) in by else ""
                                              for c in chips) + " |")
    return "\n".join(lines)


def messages(pairs: list[Pair]) -> str:
    """Every stage that did not end ``ok``, with its message (one line each)."""
    out = []
    for p in pairs:
        for name, s in p.stages.items():
            if s.status != "ok":
                msg = " ".join(s.message.split())
                out.append(f"- {p.family} on {p.chip}, {name}: {s.status}: {msg}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated families (default: all)")
    parser.add_argument("--chips", default=",".join(CHIPS),
                        help="comma-separated chip names (default: %(default)s)")
    parser.add_argument("--no-twin", action="store_true", help="skip cimsim.train.prepare")
    parser.add_argument("--md", type=Path, help="write the table and messages as markdown")
    args = parser.parse_args(argv)
    try:
        import transformers
    except ImportError:
        print("audit_transformers needs the `transformers` library (not a cimsim dependency): "
              "install it, or put its site-packages on PYTHONPATH")
        return 0
    import torch

    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    zoo = families()
    names = args.models.split(",") if args.models else list(zoo)
    unknown = [n for n in names if n not in zoo]
    if unknown:
        parser.error(f"unknown --models {unknown}; known: {', '.join(zoo)}")
    chips = args.chips.split(",")
    pairs = []
    for name in names:
        for chip in chips:
            pair = audit_pair(name, *zoo[name], chip, twin=not args.no_twin)
            pairs.append(pair)
            print(f"{name:14s} {chip:26s} {pair.seconds:6.1f} s  {cell(pair)}", flush=True)
    ideal = ["| family | mapped layers | rows kept digital | rel. error on ideal |",
             "|---|---|---|---|"]
    for name in names:
        ideal.append(f"| {name} " + fidelity(*zoo[name]))
        print(ideal[-1], flush=True)
    text = (table(pairs, chips) + "\n\n" + "\n".join(ideal) + "\n\n" + messages(pairs))
    print()
    print(text)
    if args.md:
        command = "python scripts/audit_transformers.py " + " ".join(argv or sys.argv[1:])
        from cimsim._atomic import write_text  # (cimsim imported late, as elsewhere here)

        write_text(
            args.md,
            f"Made by `{command.strip()}` on {time.strftime('%Y-%m-%d')} with transformers "
            f"{transformers.__version__}, torch {torch.__version__}.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
