"""The student's loss of each method, on one micro batch of questions (plain torch: usable on a bare
transformers model as well as through a DeepSpeed engine). ``qcrd_ray.methods`` says which method uses which.

Losses per micro batch of questions (docs/METHOD.md sections 1, 5, 6):
- qcrd: ``a1 * L_pred + a2 * L_cl``, L_cl over the explain-path CE of every positive and negative, weighted
  by the judge's (detached) scores; a3 belongs to the judge's own update (``schedule.judge_lr_scale``).
- dss: ``a * CE(label) + (1 - a) * CE(first positive)``; finetune: ``CE(label)``.
Both rationale terms average over every question of the batch: one without a rationale adds zero.

With ``minmax`` or ``maxmin`` only one positive and one negative per question carry a gradient. Which ones is
decided by their CE, so QCRD first scores the rationales without a gradient (one batched decoder pass over
every negative and the positives of questions with two or more), then runs the differentiable pass on the
chosen two alone. A seq2seq student runs its encoder over the ``explain:`` inputs once, with its graph, and
both passes decode from it (the pick from its detached copy). A chosen negative whose CE is already past the
margin (l > delta) adds nothing to the loss or its gradient (``min(l - delta, 0) = 0``), so it skips that
pass too and enters the loss with its no-grad CE. The loss and gradient are the same as through every
rationale (up to dropout, which draws its masks anew). benchmarks.qcrd_step measures what it saves.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from qcrd_ray.losses import (
    PICKING_AGGREGATIONS,
    SIDE_MODES,
    Slots,
    contrastive_terms,
    dss_loss,
    pick_by_ce,
)
from qcrd_ray.records import TrainItem
from qcrd_ray.scoring import encode_batch, is_seq2seq, rationale_ce
from qcrd_ray.tasks import EXPLAIN, PREDICT

if TYPE_CHECKING:  # config imports the method registry, which imports this module
    from qcrd_ray.config import Config


@dataclass(frozen=True)
class StudentBatch:
    """One micro batch of B questions as every method's loss sees it: the label CE, computed for all, and a way
    to score rationales on the ``explain:`` path."""

    items: list[TrainItem]
    label_ce: torch.Tensor  # [B]: CE of each question's label on the predict: path
    explain_ce: Callable  # rationales [B][R], grad=True -> (ce [B, R], mask [B, R]), 0 / False at empty slots
    cfg: Config
    generator: torch.Generator | None = None  # drives the ``sampling`` aggregation
    choose_first: bool = True  # QCRD picks its rationales without a gradient first (above)


def student_batch(
    model, tokenizer, items: list[TrainItem], cfg: Config, *, generator=None, choose_first: bool = True
) -> StudentBatch:
    """Encode ``items``' labels and score them (the CE every method's loss starts from)."""
    seq2seq = is_seq2seq(model)
    limits = {
        "max_input": cfg.student.max_input_length,
        "max_target": cfg.student.max_target_length,
        "causal": not seq2seq,
    }
    explain_states = None  # [B, S, H]: a seq2seq student's encoder pass over the explain: inputs

    def explain_ce(rationales: list[list[str]], *, grad: bool = True):
        """grad=False scores without a gradient (the pick); the encoder pass keeps its graph either way, for the
        differentiable pass that follows."""
        nonlocal explain_states
        enc = encode_batch(tokenizer, [EXPLAIN + it.input for it in items], rationales, **limits)
        mask, scoring = enc["rationale_mask"], nullcontext() if grad else torch.no_grad()
        if not seq2seq or not mask.any():  # a decoder-only student runs its prompts anew each call
            with scoring:
                return rationale_ce(model, enc), mask
        if explain_states is None:  # every call encodes the same inputs: only the rationales differ
            device = next(model.parameters()).device
            encoder = model.get_encoder()
            explain_states = encoder(
                input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)
            ).last_hidden_state
        with scoring:
            return rationale_ce(model, enc, explain_states if grad else explain_states.detach()), mask

    enc = encode_batch(tokenizer, [PREDICT + it.input for it in items], [[it.label] for it in items], **limits)
    label_ce = rationale_ce(model, enc)[:, 0]
    return StudentBatch(items, label_ce, explain_ce, cfg, generator, choose_first)


def label_loss(b: StudentBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """Fine-tuning: ``CE(label)``."""
    return b.label_ce.mean(), {}


def rationale_loss(b: StudentBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """DSS: ``a * CE(label) + (1 - a) * CE(first positive)``."""
    ce, _ = b.explain_ce([list(it.positives[:1]) for it in b.items])
    loss = dss_loss(b.label_ce, ce[:, 0], b.cfg.loss.dss_alpha)
    return loss, {"loss_rationale": float(ce[:, 0].mean().detach())}


def contrastive_student_loss(b: StudentBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """QCRD: ``a1 * L_pred + a2 * L_cl``, with the contrastive figures of its terms."""
    cfg, batch, silent = b.cfg.loss, b.items, None
    if b.choose_first and cfg.aggregation in PICKING_AGGREGATIONS:
        ce, mask = b.explain_ce([[*c.positives, *c.negatives] for c in map(scored_sides, batch)], grad=False)
        batch, silent = chosen_rationales(batch, ce, mask, cfg.aggregation, cfg.delta)
    ce, mask = b.explain_ce([[*it.positives, *it.negatives] for it in batch])  # [B, R]
    pos_ce, pos_mask, pos_s, neg_ce, neg_mask, neg_s = _split_slots(batch, ce, mask)
    if silent is not None:  # the silent negatives back in, with their no-grad CE: their term is 0 either way
        neg_ce, neg_mask, neg_s = _with_silent(silent, neg_ce, neg_mask, neg_s)
    positives, negatives = Slots(pos_ce, pos_mask, pos_s), Slots(neg_ce, neg_mask, neg_s)
    terms = contrastive_terms(
        positives, negatives, beta=cfg.beta, delta=cfg.delta, aggregation=cfg.aggregation, generator=b.generator
    )
    loss = cfg.alpha_pred * b.label_ce.mean() + cfg.alpha_cl * terms.loss
    return loss, {"loss_cl": float(terms.loss.detach()), **contrastive_figures(terms)}


CONTRASTIVE_FIGURES = (
    "negative_term_active",
    "ce_chosen_positive",
    "ce_chosen_negative",
    "weight_positive",
    "weight_negative",
)


def contrastive_figures(terms) -> dict[str, float]:
    """Whether L_cl's negative side is alive, as floats (NaN where no question of the batch has that side).

    ``negative_term_active``: the share of questions with a negative whose negative term is non-zero;
    ``ce_chosen_positive`` / ``ce_chosen_negative``: the mean CE of the chosen positive / negative;
    ``weight_positive`` / ``weight_negative``: the mean judge weight on them (s, and 1 - s).
    """
    pos, neg = terms.positive, terms.negative
    nan = float("nan")

    def mean(values, valid) -> float:
        return float(values[valid].float().mean()) if bool(valid.any()) else nan

    return {
        "negative_term_active": mean(neg.term.detach() != 0, neg.valid),
        "ce_chosen_positive": mean(pos.ce, pos.valid),
        "ce_chosen_negative": mean(neg.ce, neg.valid),
        "weight_positive": mean(pos.weight, pos.valid),
        "weight_negative": mean(neg.weight, neg.valid),
    }


@dataclass(frozen=True)
class SilentNegative:
    """A chosen negative past the margin (l > delta): its CE from the no-grad pass and its judge score."""

    ce: float
    score: float


def scored_sides(item: TrainItem) -> TrainItem:
    """``item`` with the rationales the no-grad pass scores: its positives when there are two or more to choose
    from (one is its own pick), and every negative (its CE also says whether its term is silent)."""
    pos = len(item.positives) > 1
    return replace(item, positives=item.positives if pos else (), positive_scores=item.positive_scores if pos else ())


def chosen_rationales(
    batch: list[TrainItem], ce, mask, aggregation: str, delta: float
) -> tuple[list[TrainItem], list[SilentNegative | None]]:
    """Each item cut down to the positive and the negative ``aggregation`` picks by their CE, each with its judge
    score (the pick ``contrastive_terms`` makes), but without a chosen negative that is silent (l > delta);
    and, per item, that silent negative, else None. ce, mask: [B, R] over ``scored_sides(item)``'s slots, its
    positives then its negatives; a side with a single positive picks it without a score."""
    pos_mode, neg_mode = SIDE_MODES[aggregation]
    pos_ce, pos_mask, _, neg_ce, neg_mask, _ = _split_slots([scored_sides(it) for it in batch], ce.detach(), mask)
    pos_picks = pick_by_ce(pos_ce, pos_mask, pos_mode).tolist()
    neg_picks = pick_by_ce(neg_ce, neg_mask, neg_mode)
    neg_picked_ce = neg_ce.gather(1, neg_picks[:, None]).squeeze(1).tolist()
    chosen, silent = [], []
    for it, p, n, n_ce in zip(batch, pos_picks, neg_picks.tolist(), neg_picked_ce, strict=True):
        p = [] if not it.positives else [p if len(it.positives) > 1 else 0]
        is_silent = bool(it.negatives) and n_ce > delta
        silent.append(SilentNegative(n_ce, it.negative_scores[n]) if is_silent else None)
        n = [n] if it.negatives and not is_silent else []
        chosen.append(
            replace(
                it,
                positives=tuple(it.positives[j] for j in p),
                positive_scores=tuple(it.positive_scores[j] for j in p),
                negatives=tuple(it.negatives[j] for j in n),
                negative_scores=tuple(it.negative_scores[j] for j in n),
            )
        )
    return chosen, silent


def _with_silent(silent: list[SilentNegative | None], neg_ce, neg_mask, neg_s):
    """[B, 1] negative slots of the differentiable pass (silent ones left out) -> the same with the silent
    negatives in, as constants: their CE from the no-grad pass, valid, with their judge score."""
    device = neg_ce.device
    is_silent = torch.tensor([s is not None for s in silent], device=device)[:, None]  # [B, 1]
    ce = torch.tensor([[s.ce if s else 0.0] for s in silent], dtype=neg_ce.dtype, device=device)
    score = torch.tensor([[s.score if s else 0.0] for s in silent], dtype=neg_s.dtype, device=device)
    return torch.where(is_silent, ce, neg_ce), neg_mask | is_silent, torch.where(is_silent, score, neg_s)


def _split_slots(batch: list[TrainItem], ce, mask):
    """Question i's slots are its positives then its negatives: [B, R] -> [B, P] and [B, M] with masks, scores."""
    mask = mask.to(ce.device)  # encode_batch leaves it on the CPU

    def gather(offsets: list[int], counts: list[int], scores: list[tuple[float, ...]]):
        width = max(max(counts), 1)
        slot = torch.arange(width)[None, :]  # [1, W]
        valid = slot < torch.tensor(counts)[:, None]  # [B, W]
        index = (torch.tensor(offsets)[:, None] + slot).clamp(max=ce.shape[1] - 1).masked_fill(~valid, 0)
        padded = [list(s) + [0.0] * (width - len(s)) for s in scores]
        valid = valid.to(ce.device)
        weight = torch.tensor(padded, dtype=ce.dtype, device=ce.device)
        return ce.gather(1, index.to(ce.device)), valid & mask.gather(1, index.to(ce.device)), weight

    n_pos = [len(it.positives) for it in batch]
    positives = gather([0] * len(batch), n_pos, [it.positive_scores for it in batch])
    negatives = gather(n_pos, [len(it.negatives) for it in batch], [it.negative_scores for it in batch])
    return (*positives, *negatives)
