"""The losses of QCRD as pure tensor functions (docs/METHOD.md sections 1, 4 and 5).

Shapes: N questions, P positive and M negative rationale slots per question (ragged lists padded to the
widest question, with a boolean mask saying which slots hold a rationale), B sequences, T tokens, V vocab.
Every function returns a scalar (or a per-sequence vector for ``sequence_ce``) and never looks at masked
slots, whatever they hold.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
AGGREGATIONS = ("minmax", "maxmin", "sampling", "mean", "weighted_mean")
JUDGE_LOSS_FORMS = ("infonce", "paper_printed")


def sequence_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy of each sequence: logits [B,T,V], labels [B,T] (-100 = ignore) -> [B].

    ``logits[:, t]`` predicts ``labels[:, t]`` (causal models shift before calling). A sequence without any
    labelled token gets 0.
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"sequence_ce: logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # a softmax over a large vocabulary in half precision loses the small terms
    token_ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    counts = (labels != IGNORE_INDEX).sum(dim=1)
    return token_ce.sum(dim=1) / counts.clamp(min=1)


def dss_loss(label_ce: torch.Tensor, rationale_ce: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Distilling step-by-step: ``alpha * mean(label_ce) + (1 - alpha) * mean(rationale_ce)``; inputs [B]."""
    return alpha * label_ce.mean() + (1.0 - alpha) * rationale_ce.mean()


def _check_slots(name: str, ce: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor) -> None:
    if ce.dim() != 2 or mask.shape != ce.shape or scores.shape != ce.shape:
        raise ValueError(
            f"contrastive_loss: {name} cross-entropy, mask and scores must share one [N, slots] shape, got "
            f"{tuple(ce.shape)}, {tuple(mask.shape)}, {tuple(scores.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"contrastive_loss: {name}_mask must be a bool tensor, got {mask.dtype}")


def _pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values [N,R], index [N] -> values[i, index[i]] as [N]."""
    return values.gather(1, index[:, None]).squeeze(1)


class Aggregate(NamedTuple):
    """One side of L_cl per question, each [N]: the term, and the CE and judge weight it was made of."""

    term: torch.Tensor  # weight * loss of the chosen slot (or the mean over slots); 0 where no slot is valid
    ce: torch.Tensor  # the raw CE l(r) of the chosen slot (the mean for the means), detached
    weight: torch.Tensor  # the judge weight of the chosen slot (the mean for the means), detached
    valid: torch.Tensor  # bool: the question has at least one valid slot


def pick_by_ce(ce: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The slot of least (``mode="min"``) or greatest (``"max"``) CE among each row's valid ones: [N,R] -> [N].

    Ties go to the first such slot; a row without a valid slot gets some index, which callers mask out."""
    ranked = ce.detach().masked_fill(~mask, float("inf") if mode == "min" else float("-inf"))
    return ranked.argmin(dim=1) if mode == "min" else ranked.argmax(dim=1)


def _aggregate(
    ce: torch.Tensor,
    loss: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    *,
    mode: str,
    generator: torch.Generator | None,
) -> Aggregate:
    """Per question, the aggregate of ``loss`` (``ce`` or its margin-clipped form) over its valid slots, [N,R] -> [N].

    ``mode``: "min", "max" or "sampling" pick one slot (and take its weight); "mean" is the plain mean of
    ``loss`` (the paper's unweighted Mean ablation); "weighted_mean" is sum(w * loss) / sum(w).
    """
    has_any = mask.any(dim=1)
    count = mask.sum(dim=1).clamp(min=1)

    def mean(values: torch.Tensor) -> torch.Tensor:
        return values.masked_fill(~mask, 0.0).sum(dim=1) / count

    if mode in ("min", "max", "sampling"):
        if mode == "sampling":
            # A uniform draw among the valid slots: the valid slot with the largest random key.
            keys = torch.rand(loss.shape, generator=generator, device="cpu" if generator is None else generator.device)
            keys = keys.to(loss.device).masked_fill(~mask, -1.0)
            index = keys.argmax(dim=1)
        else:
            index = pick_by_ce(ce, mask, mode)
        chosen = _pick(weight, index) * _pick(loss, index)
        term = torch.where(has_any, chosen, torch.zeros_like(chosen))
        return Aggregate(term, _pick(ce.detach(), index), _pick(weight, index), has_any)
    if mode == "mean":
        term = mean(loss)
    elif mode == "weighted_mean":
        # A question whose weights are all 0 has nothing to push: its numerator is 0 as well.
        total = weight.masked_fill(~mask, 0.0).sum(dim=1)
        term = (weight * loss).masked_fill(~mask, 0.0).sum(dim=1) / total.clamp(min=1e-12)
    else:
        raise ValueError(f"unknown aggregation mode {mode!r}")
    return Aggregate(term, mean(ce.detach()), mean(weight), has_any)


# Aggregations that pick one positive and one negative by their CE: only those two carry a gradient.
PICKING_AGGREGATIONS = ("minmax", "maxmin")
SIDE_MODES = {  # aggregation -> (over positives, over negatives)
    "minmax": ("min", "max"),
    "maxmin": ("max", "min"),
    "sampling": ("sampling", "sampling"),
    "mean": ("mean", "mean"),
    "weighted_mean": ("weighted_mean", "weighted_mean"),
}


class ContrastiveTerms(NamedTuple):
    """L_cl and what it was made of, per question ([N] each) for the positive and the negative side."""

    loss: torch.Tensor  # scalar
    positive: Aggregate
    negative: Aggregate  # negative.term is min(l - delta, 0) aggregated and weighted: 0 = the term is silent


class Slots(NamedTuple):
    """One side of L_cl for N questions, each [N, R]: the student's CE l(r) of each rationale slot, whether the
    slot holds a rationale, and the judge's score s of it."""

    ce: torch.Tensor
    mask: torch.Tensor
    scores: torch.Tensor


def contrastive_terms(
    positives: Slots,
    negatives: Slots,
    *,
    beta: float = 0.2,
    delta: float = 3.0,
    aggregation: str = "minmax",
    generator: torch.Generator | None = None,
) -> ContrastiveTerms:
    """QCRD's many-to-one contrastive loss L_cl (docs/METHOD.md section 5) with its per-question parts.

    positives: [N,P] slots, the student's cross-entropy l(r), validity and judge score s of each positive;
    negatives: [N,M] the same for negatives.

    Per question i: ``P_i = s * agg_pos l(r)`` and ``N_i = (1 - s) * agg_neg min(l(r) - delta, 0)``;
    ``L_cl = (1/N) sum_i (P_i - beta * N_i)``, N counting every question of the batch.

    Aggregations: ``minmax`` (default; the easiest positive, the hardest-to-push negative, each with its own
    weight), ``maxmin`` (the reverse), ``sampling`` (one uniformly drawn valid positive and negative, from
    ``generator``), ``mean`` (the plain, unweighted mean of l over positives and of the clipped l over
    negatives: the paper's Mean ablation, where the judge plays no part) and ``weighted_mean``
    (sum(w * l) / sum(w), with w = s for positives and w = 1 - s for negatives).

    The choice of min / max is made on the raw l. The margin clip ``min(l - delta, 0)`` is applied to each
    negative before aggregation; for max (and min) that is the same as clipping after, since the clip is
    monotone; for the means it lets each negative stop pushing on its own once the student finds it unlikely
    enough (l >= delta gives it zero gradient). So with minmax one negative whose l is above delta silences
    its whole question's negative term.

    Scores are weights only: they are detached, so no gradient reaches the judge. A question with no valid
    positive adds no positive term, one with no valid negative no negative term.
    """
    if aggregation not in SIDE_MODES:
        raise ValueError(f"contrastive_loss: aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    _check_slots("pos", *positives)
    _check_slots("neg", *negatives)
    if positives.ce.shape[0] != negatives.ce.shape[0]:
        raise ValueError(
            f"contrastive_loss: {positives.ce.shape[0]} questions of positives but {negatives.ce.shape[0]} of negatives"
        )
    pos_mode, neg_mode = SIDE_MODES[aggregation]
    pos_ce, neg_ce = positives.ce, negatives.ce
    positive = _aggregate(pos_ce, pos_ce, positives.scores.detach(), positives.mask, mode=pos_mode, generator=generator)
    clipped = torch.clamp(neg_ce - delta, max=0.0)
    negative = _aggregate(
        neg_ce, clipped, 1.0 - negatives.scores.detach(), negatives.mask, mode=neg_mode, generator=generator
    )
    return ContrastiveTerms((positive.term - beta * negative.term).mean(), positive, negative)


def contrastive_loss(*args, **kwargs) -> torch.Tensor:
    """L_cl alone (a scalar): ``contrastive_terms(...).loss``, same arguments."""
    return contrastive_terms(*args, **kwargs).loss


def judge_loss(
    pos_scores: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_scores: torch.Tensor,
    neg_mask: torch.Tensor,
    form: str = "infonce",
) -> torch.Tensor:
    """The judge's loss L_D (docs/METHOD.md section 4, Eq. 2) over scores in [0, 1] -> scalar.

    pos_scores / pos_mask: [N,P]; neg_scores / neg_mask: [N,M].
    ``infonce``: ``-log(sum_pos e^s / (sum_pos e^s + sum_neg e^s))``;
    ``paper_printed``: ``-log(sum_pos e^s / sum_neg e^s)`` (the equation as printed).
    The mean over questions having at least one positive and one negative; the others are skipped. With no
    such question the loss is a zero that still backpropagates (into nothing).
    """
    if form not in JUDGE_LOSS_FORMS:
        raise ValueError(f"judge_loss: form must be one of {JUDGE_LOSS_FORMS}, got {form!r}")
    if pos_scores.shape != pos_mask.shape or neg_scores.shape != neg_mask.shape:
        raise ValueError("judge_loss: scores and masks must have the same shapes")
    if pos_scores.shape[0] != neg_scores.shape[0]:
        raise ValueError("judge_loss: positives and negatives must cover the same questions")
    usable = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    zero = pos_scores.masked_fill(~pos_mask, 0.0).sum() * 0.0 + neg_scores.masked_fill(~neg_mask, 0.0).sum() * 0.0
    if not bool(usable.any()):
        return zero
    pos = pos_scores[usable].masked_fill(~pos_mask[usable], float("-inf"))
    neg = neg_scores[usable].masked_fill(~neg_mask[usable], float("-inf"))
    log_pos = torch.logsumexp(pos, dim=1)
    log_denominator = (
        torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1) if form == "infonce" else torch.logsumexp(neg, dim=1)
    )
    return (log_denominator - log_pos).mean()


def judge_level_loss(
    pos_scores: torch.Tensor,
    pos_mask: torch.Tensor,
    neg_scores: torch.Tensor,
    neg_mask: torch.Tensor,
) -> torch.Tensor:
    """Binary cross-entropy of the judge's scores against 1 for positives and 0 for negatives -> scalar.

    pos_scores / pos_mask: [N,P]; neg_scores / neg_mask: [N,M], scores in [0, 1]. Both forms of L_D see only
    differences of scores, so nothing in them pins their level, which QCRD uses as its weights (s, 1 - s);
    this term does. The mean of the positives' and the negatives' mean, so the classes weigh alike however
    many of each there are; a class with no slot contributes nothing.
    """
    terms = []
    for scores, mask, target in ((pos_scores, pos_mask, 1.0), (neg_scores, neg_mask, 0.0)):
        chosen = scores[mask].float()
        if chosen.numel():
            terms.append(F.binary_cross_entropy(chosen, torch.full_like(chosen, target)))
    if not terms:
        return pos_scores.sum() * 0.0 + neg_scores.sum() * 0.0
    return torch.stack(terms).mean()
