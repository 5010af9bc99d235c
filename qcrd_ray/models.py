"""Students (seq2seq T5 family or decoder-only), the quality judge D, and batched generation.

A model comes from a hub name or a local directory (the same ``from_pretrained`` path), or, for tests and
the embedded default, is built tiny from a config with random weights. Nothing here reaches the network
unless the user names a hub model.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessorList,
    T5Config,
    T5EncoderModel,
    T5ForConditionalGeneration,
)

from qcrd_ray.config import JudgeConfig, StudentConfig, TinyModelConfig
from qcrd_ray.row_sampling import RowSeededSampler, row_seed
from qcrd_ray.scoring import causal_prompt_ids, is_seq2seq, pad_rows
from qcrd_ray.shipped_student import resolve_student
from qcrd_ray.tokenizer import load_tokenizer, train_tokenizer

JUDGE_WEIGHTS = "judge.safetensors"
JUDGE_CONFIG = "judge.json"
JUDGE_FORMAT = "qcrd-judge/1"


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device | None = None):
    """Run the block with torch's RNG seeded, leaving the caller's RNG state as it was."""
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------------------------------------------------
# students


def build_tokenizer(cfg: StudentConfig, texts: Iterable[str] | None = None):
    """The student's tokenizer: the named model's own, or (tiny models) trained on ``texts``, shipped, or a dir.

    A decoder-only tokenizer without a pad token pads with EOS (every pad is masked anyway).
    """
    if cfg.model is not None:
        tokenizer = load_tokenizer(student_path(cfg.model))
    elif cfg.tokenizer == "train":
        if texts is None:
            raise ValueError("student.tokenizer: 'train' needs the run's texts to train on")
        tokenizer = train_tokenizer(texts)
    else:
        tokenizer = load_tokenizer(cfg.tokenizer)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def student_path(name: str) -> str:
    """What transformers loads for ``student.model``: a hub name or directory as given, and
    ``builtin:arith-student`` as the project's shipped pretrained student (``qcrd_ray.shipped_student``)."""
    return resolve_student(name)


def _special_ids(tokenizer, where: str) -> tuple[int, int]:
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"{where}: the tokenizer needs a pad and an eos token to build a tiny model")
    return tokenizer.pad_token_id, tokenizer.eos_token_id


def _tiny_t5_config(tiny: TinyModelConfig, tokenizer, where: str):
    if tiny.d_model % tiny.num_heads:
        raise ValueError(f"{where}.tiny: d_model {tiny.d_model} is not divisible by num_heads {tiny.num_heads}")
    pad_id, eos_id = _special_ids(tokenizer, where)
    return T5Config(
        vocab_size=len(tokenizer),
        d_model=tiny.d_model,
        d_kv=tiny.d_model // tiny.num_heads,
        d_ff=tiny.d_ff,
        num_layers=tiny.num_layers,
        num_decoder_layers=tiny.num_layers,
        num_heads=tiny.num_heads,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        decoder_start_token_id=pad_id,  # T5's convention: the decoder starts from <pad>
        dropout_rate=0.0,  # tiny models train briefly; dropout would only slow them down
    )


def _tiny_llama_config(cfg: StudentConfig, tokenizer):
    tiny = cfg.tiny
    if tiny.d_model % tiny.num_heads:
        raise ValueError(f"student.tiny: d_model {tiny.d_model} is not divisible by num_heads {tiny.num_heads}")
    pad_id, eos_id = _special_ids(tokenizer, "student")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.d_model,
        intermediate_size=tiny.d_ff,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_heads,
        max_position_embeddings=cfg.max_input_length + cfg.max_target_length,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )


def build_student(cfg: StudentConfig, tokenizer, seed: int = 0):
    """A student: ``from_pretrained(cfg.model)`` (architecture from its config; ``cfg.architecture`` is for tiny
    models only) or a tiny random-init T5 / Llama from ``cfg.tiny``, initialised from ``seed``."""
    if cfg.model is not None:
        path = student_path(cfg.model)
        auto = AutoModelForSeq2SeqLM if is_seq2seq(AutoConfig.from_pretrained(path)) else AutoModelForCausalLM
        model = auto.from_pretrained(path)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise ValueError(
                f"student.model {cfg.model!r}: its vocabulary is smaller than the tokenizer's ({len(tokenizer)})"
            )
        return model
    with _seeded(seed):
        if cfg.architecture == "seq2seq":
            return T5ForConditionalGeneration(_tiny_t5_config(cfg.tiny, tokenizer, "student"))
        return LlamaForCausalLM(_tiny_llama_config(cfg, tokenizer))


def save_student(model, tokenizer, path: str | Path) -> Path:
    """Save in transformers format (safetensors): ``AutoModel*.from_pretrained(path)`` reloads it."""
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_student(path: str | Path):
    """(model, tokenizer) from a directory or hub name, seq2seq or causal by its config."""
    auto = AutoModelForSeq2SeqLM if is_seq2seq(AutoConfig.from_pretrained(str(path))) else AutoModelForCausalLM
    return auto.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))


def input_limit(model, max_new_tokens: int, max_input_length: int) -> int:
    """The longest prompt, in tokens, ``generate`` gives ``model``: ``max_input_length``, less for a decoder-only
    model whose position table (``max_position_embeddings``) cannot hold it and ``max_new_tokens`` more."""
    positions = getattr(model.config, "max_position_embeddings", None)
    limit = (
        min(max_input_length, positions - max_new_tokens) if positions and not is_seq2seq(model) else max_input_length
    )
    if limit < 1:
        raise ValueError(
            f"generate: no room for a prompt (max_input_length {max_input_length}, {positions} positions, "
            f"max_new_tokens {max_new_tokens})"
        )
    return limit


def _prompt_ids(tokenizer, prompts: list[str], seq2seq: bool, max_input_length: int) -> list[list[int]]:
    """Token ids as the student trains on them (``scoring.encode_batch``): seq2seq with EOS, causal text only."""
    if not seq2seq:
        return [causal_prompt_ids(tokenizer, p, max_input_length) for p in prompts]
    return [tokenizer(p, truncation=True, max_length=max_input_length)["input_ids"] for p in prompts]


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    num_return_sequences: int = 1,
    batch_size: int = 32,
    seed: int | None = None,
    prompt_seeds: list[int] | None = None,
    max_input_length: int,
) -> list[list[str]]:
    """Decode ``num_return_sequences`` continuations per prompt, in padded batches with the KV cache.

    Seq2seq prompts are right-padded; decoder-only ones are left-padded (their text's tokens only, as the
    student trains: ``scoring.causal_prompt_ids``) and only the continuation is returned. ``top_k = 0`` samples from the whole temperature / top-p
    distribution (transformers would otherwise cut it at 50). Prompts are batched by length (less padding);
    ``seed`` makes the result reproducible without touching the caller's RNG; ``prompt_seeds`` (one per
    prompt, sampling only) gives each returned sequence its own seed, so that no sample depends on the other
    prompts of its batch (``qcrd_ray.row_sampling``). A prompt longer than
    ``input_limit(model, max_new_tokens, max_input_length)`` tokens is truncated (an 8,000-character prompt
    once needed 5 GB). Returns one list per prompt.
    """
    if max_new_tokens < 1 or batch_size < 1 or num_return_sequences < 1:
        raise ValueError("generate: max_new_tokens, batch_size and num_return_sequences must be >= 1")
    if num_return_sequences > 1 and not do_sample:
        raise ValueError("generate: several return sequences need do_sample=True (greedy decoding repeats itself)")
    if prompt_seeds is not None and (not do_sample or seed is not None or len(prompt_seeds) != len(prompts)):
        raise ValueError("generate: prompt_seeds needs do_sample=True, no seed, and one seed per prompt")
    seq2seq = is_seq2seq(model)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = _prompt_ids(tokenizer, prompts, seq2seq, input_limit(model, max_new_tokens, max_input_length))
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
    decoding = {"num_return_sequences": num_return_sequences, "do_sample": do_sample}
    if do_sample:
        decoding.update(temperature=temperature, top_p=top_p, top_k=top_k)
    was_training = model.training
    model.eval()
    results: list[list[str]] = [[] for _ in prompts]
    try:
        with _seeded(seed, device):
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                rows = [ids[i] for i in chunk]
                input_ids = pad_rows(rows, pad_id, left=not seq2seq).to(device)
                attention_mask = pad_rows([[1] * len(r) for r in rows], 0, left=not seq2seq).to(device)
                batch_decoding = decoding
                if prompt_seeds is not None:  # one row per returned sequence, decoded greedily through its seed's noise
                    input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
                    attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
                    seeds = [row_seed(prompt_seeds[i], k) for i in chunk for k in range(num_return_sequences)]
                    sampler = RowSeededSampler(seeds, temperature=temperature, top_p=top_p, top_k=top_k)
                    batch_decoding = {"do_sample": False, "logits_processor": LogitsProcessorList([sampler])}
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id,
                    eos_token_id=tokenizer.eos_token_id,
                    use_cache=True,
                    **batch_decoding,
                )
                if not seq2seq:
                    out = out[:, input_ids.shape[1] :]  # the continuation only
                texts = tokenizer.batch_decode(out, skip_special_tokens=True)
                for j, i in enumerate(chunk):
                    results[i] = texts[j * num_return_sequences : (j + 1) * num_return_sequences]
    finally:
        model.train(was_training)
    return results


# ---------------------------------------------------------------------------------------------------------
# the quality judge D (docs/METHOD.md section 4)


def judge_text(question: str, rationale: str) -> str:
    """The one text D reads for a (question, rationale) pair."""
    return f"question: {question} rationale: {rationale}"


class Judge(nn.Module):
    """D(x, r) in [0, 1]: an encoder (a T5 encoder, or a decoder-only model's transformer), max-pooling over real
    tokens, Linear -> tanh -> Linear, a sigmoid.

    The head's last layer starts at zero, so a fresh D scores every rationale 0.5 on every seed: the level of
    QCRD's weights then comes from training, never from where a random initialisation happened to put it."""

    def __init__(self, encoder: nn.Module, hidden_size: int):
        super().__init__()
        self.encoder = encoder
        width = encoder.config.hidden_size
        self.head = nn.Sequential(nn.Linear(width, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, L] -> scores [B] in [0, 1]."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, H]
        hidden = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
        pooled = hidden.max(dim=1).values  # [B, H]: padding never wins the max
        return torch.sigmoid(self.head(pooled).squeeze(-1))


def judge_encoder(encoder: str | None, student_dir: str | Path) -> str | None:
    """What D's encoder loads for ``judge.encoder``: ``student`` is the run's initial student (``student_dir``),
    ``builtin:`` names resolve as the student's do, a relative path that exists becomes absolute (an actor's
    working directory is not the driver's), a hub name stays as given; None (a tiny random-init encoder) stays."""
    if encoder is None:
        return None
    if encoder == "student":
        return str(Path(student_dir).resolve())
    encoder = resolve_student(encoder)
    return str(Path(encoder).resolve()) if Path(encoder).exists() else encoder


def _pretrained_encoder(path: str) -> nn.Module:
    """A seq2seq model's encoder (T5's, alone), or a decoder-only model's transformer without its LM head:
    its hidden states, max-pooled, are what D reads (as reward models on causal LMs are built)."""
    if AutoConfig.from_pretrained(path).is_encoder_decoder:
        return T5EncoderModel.from_pretrained(path)
    return AutoModel.from_pretrained(path)


def build_judge(cfg: JudgeConfig, tokenizer, seed: int | None = None, encoder: str | None = None) -> Judge:
    """D on a pretrained ``encoder`` (``judge_encoder``'s answer: a directory or hub name, read with its own
    tokenizer) or, when None, on a tiny random-init T5 encoder over ``tokenizer``'s vocabulary. The head (and a
    tiny encoder) start from ``seed`` when given."""
    with _seeded(seed):
        if encoder is None:
            return Judge(T5EncoderModel(_tiny_t5_config(cfg.tiny, tokenizer, "judge")), cfg.hidden_size)
        model = _pretrained_encoder(encoder)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            raise ValueError(
                f"judge.encoder {encoder!r}: its vocabulary is smaller than the tokenizer's "
                f"({len(tokenizer)}); give D the encoder's own tokenizer"
            )
        return Judge(model, cfg.hidden_size)


def save_judge(model: Judge, tokenizer, path: str | Path) -> Path:
    """Weights as safetensors, the encoder config and head size as JSON, and the tokenizer (no pickle)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # clone: the encoder ties its embeddings, and safetensors refuses tensors that share memory
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / JUDGE_WEIGHTS))
    encoder_config = model.encoder.config.to_dict()
    # where the encoder was loaded from is not the judge's state, and would tie two equal judges to their run dirs
    encoder_config.pop("_name_or_path", None)
    meta = {
        "format": JUDGE_FORMAT,
        "hidden_size": model.head[0].out_features,
        "encoder_class": type(model.encoder).__name__,
        "encoder_config": encoder_config,
    }
    (path / JUDGE_CONFIG).write_text(json.dumps(meta, indent=1))
    tokenizer.save_pretrained(path)
    return path


def load_judge(path: str | Path) -> tuple[Judge, object]:
    """(D, tokenizer) saved by ``save_judge``."""
    path = Path(path)
    if not (path / JUDGE_CONFIG).is_file():
        raise FileNotFoundError(f"{path / JUDGE_CONFIG}: not a saved judge (save_judge writes it)")
    meta = json.loads((path / JUDGE_CONFIG).read_text())
    if meta.get("format") != JUDGE_FORMAT:
        raise ValueError(f"{path / JUDGE_CONFIG}: format {meta.get('format')!r}, expected {JUDGE_FORMAT!r}")
    encoder_config = meta["encoder_config"]
    if meta.get("encoder_class", "T5EncoderModel") == "T5EncoderModel":
        encoder = T5EncoderModel(T5Config.from_dict(encoder_config))
    else:
        config_class = AutoConfig.for_model(encoder_config["model_type"]).__class__
        encoder = AutoModel.from_config(config_class.from_dict(encoder_config))
    model = Judge(encoder, int(meta["hidden_size"]))
    model.load_state_dict(load_file(str(path / JUDGE_WEIGHTS)))
    return model, AutoTokenizer.from_pretrained(str(path))
