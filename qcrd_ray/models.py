"""Students (seq2seq T5 family or decoder-only), the quality judge D, and batched generation.

A model comes from a hub name or a local directory (the same ``from_pretrained`` path), or, for tests and
the embedded default, is built tiny from a config with random weights. Nothing here reaches the network
unless the user names a hub model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from qcrd_ray.config import DiscriminatorConfig, StudentConfig, TinyModelConfig

# ---------------------------------------------------------------------------------------------------------
# students


def build_tokenizer(cfg: StudentConfig, texts: Iterable[str] | None = None):
    """The student's tokenizer: the named model's own, or (tiny models) trained on ``texts``, shipped, or a dir."""
    from qcrd_ray.tokenizer import load_tokenizer, train_tokenizer

    if cfg.model is not None:
        return load_tokenizer(cfg.model)
    if cfg.tokenizer == "train":
        if texts is None:
            raise ValueError("student.tokenizer: 'train' needs the run's texts to train on")
        return train_tokenizer(texts)
    return load_tokenizer(cfg.tokenizer)


def is_seq2seq(model_or_config) -> bool:
    """True for encoder-decoder models (T5), False for decoder-only ones."""
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def _tiny_t5_config(tiny: TinyModelConfig, tokenizer):
    from transformers import T5Config

    return T5Config(
        vocab_size=len(tokenizer),
        d_model=tiny.d_model,
        d_kv=tiny.d_model // tiny.num_heads,
        d_ff=tiny.d_ff,
        num_layers=tiny.num_layers,
        num_decoder_layers=tiny.num_layers,
        num_heads=tiny.num_heads,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        dropout_rate=0.0,
    )


def build_student(cfg: StudentConfig, tokenizer, seed: int = 0):
    """A student: ``from_pretrained(cfg.model)`` or a tiny random-init T5 / Llama from ``cfg.tiny``."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, LlamaConfig, LlamaForCausalLM
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    if cfg.model is not None:
        config = AutoConfig.from_pretrained(cfg.model)
        auto = AutoModelForSeq2SeqLM if is_seq2seq(config) else AutoModelForCausalLM
        return auto.from_pretrained(cfg.model)
    if cfg.architecture == "seq2seq":
        return T5ForConditionalGeneration(_tiny_t5_config(cfg.tiny, tokenizer))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.tiny.d_model,
        intermediate_size=cfg.tiny.d_ff,
        num_hidden_layers=cfg.tiny.num_layers,
        num_attention_heads=cfg.tiny.num_heads,
        num_key_value_heads=cfg.tiny.num_heads,
        max_position_embeddings=cfg.max_input_length + cfg.max_target_length,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def save_student(model, tokenizer, path: str | Path) -> Path:
    """Save in transformers format (safetensors): ``AutoModel*.from_pretrained(path)`` reloads it."""
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_student(path: str | Path):
    """(model, tokenizer) from a directory or hub name, seq2seq or causal by its config."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    auto = AutoModelForSeq2SeqLM if is_seq2seq(AutoConfig.from_pretrained(str(path))) else AutoModelForCausalLM
    return auto.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, num_return_sequences: int = 1, batch_size: int = 32,
             seed: int | None = None) -> list[list[str]]:
    """Decode ``num_return_sequences`` continuations per prompt, in padded batches with the KV cache.

    Decoder-only models are left-padded and only the continuation is returned. Returns one list per prompt.
    """
    seq2seq = is_seq2seq(model)
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "right" if seq2seq else "left"
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    outputs: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=seq2seq).to(device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling)
        if not seq2seq:
            ids = ids[:, enc["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        outputs += [texts[i : i + num_return_sequences] for i in range(0, len(texts), num_return_sequences)]
    model.train(was_training)
    return outputs


# ---------------------------------------------------------------------------------------------------------
# the quality judge D (METHOD.md section 4)


def judge_text(question: str, rationale: str) -> str:
    """The one text D reads for a (question, rationale) pair."""
    return f"question: {question} rationale: {rationale}"


class Discriminator(nn.Module):
    """D(x, r) in [0, 1]: a T5 encoder, max-pooling over real tokens, two linear layers, a sigmoid."""

    def __init__(self, encoder: nn.Module, hidden_size: int):
        super().__init__()
        self.encoder = encoder
        width = encoder.config.d_model
        self.head = nn.Sequential(nn.Linear(width, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask [B, L] -> scores [B]."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, H]
        hidden = hidden.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)
        pooled = hidden.max(dim=1).values  # [B, H]
        return torch.sigmoid(self.head(pooled).squeeze(-1))


def build_discriminator(cfg: DiscriminatorConfig, tokenizer) -> Discriminator:
    """D on ``cfg.encoder`` (a T5-like hub name or dir) or on a tiny random-init T5 encoder."""
    from transformers import T5EncoderModel

    if cfg.encoder is not None:
        encoder = T5EncoderModel.from_pretrained(cfg.encoder)
    else:
        encoder = T5EncoderModel(_tiny_t5_config(cfg.tiny, tokenizer))
    return Discriminator(encoder, cfg.hidden_size)


def save_discriminator(model: Discriminator, tokenizer, path: str | Path) -> Path:
    """Weights as safetensors, the encoder config and head size as JSON, and the tokenizer (no pickle)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # clone: the encoder ties its embeddings, and safetensors refuses tensors that share memory
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / "judge.safetensors"))
    meta = {"encoder_config": model.encoder.config.to_dict(), "hidden_size": model.head[0].out_features}
    (path / "judge.json").write_text(json.dumps(meta))
    tokenizer.save_pretrained(path)
    return path


def load_discriminator(path: str | Path) -> tuple[Discriminator, object]:
    """(D, tokenizer) saved by ``save_discriminator``."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    path = Path(path)
    meta = json.loads((path / "judge.json").read_text())
    model = Discriminator(T5EncoderModel(T5Config.from_dict(meta["encoder_config"])), meta["hidden_size"])
    model.load_state_dict(load_file(str(path / "judge.safetensors")))
    return model, AutoTokenizer.from_pretrained(str(path))
