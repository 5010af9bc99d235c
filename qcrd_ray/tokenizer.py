"""Tokenizers that need no network: trained here on the run's own text.

Real users give a hub name or directory and get that model's own tokenizer (``AutoTokenizer``); tiny
models in tests and the embedded default use a small byte-level BPE trained on the task's text, which
keeps sequences short (fast on a CPU) and never meets an unknown character.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "bos_token": "<s>"}


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512, split_digits: bool = False):
    """Train a byte-level BPE on ``texts``; returns a ``PreTrainedTokenizerFast`` with pad/eos/unk/bos set.

    The pad token has id 0 (what T5's ``decoder_start_token_id`` expects); every encoding ends in ``</s>``.
    ``split_digits``: every digit is a token of its own, so "57" and "75" share what a model computes with.
    """
    specials = list(SPECIAL_TOKENS.values())
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    digits = pre_tokenizers.Split(Regex(r" ?\d"), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if split_digits else byte_level
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos_id = tok.token_to_id(SPECIAL_TOKENS["eos_token"])
    # Append </s> to every encoded sequence, as T5's tokenizer does.
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {SPECIAL_TOKENS['eos_token']}",
        special_tokens=[(SPECIAL_TOKENS["eos_token"], eos_id)],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def load_tokenizer(name_or_path: str | Path):
    """A tokenizer from a local directory or hub name (``AutoTokenizer``)."""
    return AutoTokenizer.from_pretrained(str(name_or_path))
