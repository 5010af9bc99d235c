"""QCRD's losses as pure tensor functions (METHOD.md sections 1, 4 and 5).

Shapes: N questions, P positive and M negative rationale slots per question (ragged counts are padded and
masked), B sequences, T tokens, V vocabulary. Every loss returns a scalar, averaged over questions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AGGREGATIONS = ("minmax", "maxmin", "sampling", "mean", "weighted_mean")


def sequence_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean token cross-entropy per sequence: logits [B, T, V], labels [B, T] -> [B]."""
    token_ce = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=ignore_index, reduction="none")  # [B, T]
    mask = (labels != ignore_index).to(token_ce.dtype)
    return (token_ce * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def dss_loss(label_ce: torch.Tensor, rationale_ce: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Distilling step-by-step: ``alpha * CE(label) + (1 - alpha) * CE(rationale)``; inputs [B] -> scalar."""
    return alpha * label_ce.mean() + (1.0 - alpha) * rationale_ce.mean()


def _pick(values: torch.Tensor, mask: torch.Tensor, how: str, generator: torch.Generator | None) -> torch.Tensor:
    """Index [N] of one valid slot per row: the min, the max, or a uniformly random one."""
    if how == "sample":
        noise = torch.rand(values.shape, generator=generator, device="cpu").to(values.device)
        return noise.masked_fill(~mask, -1.0).argmax(-1)
    fill = float("inf") if how == "min" else float("-inf")
    masked = values.detach().masked_fill(~mask, fill)
    return masked.argmin(-1) if how == "min" else masked.argmax(-1)


def _aggregate(values: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor, how: str,
               generator: torch.Generator | None) -> torch.Tensor:
    """Per question, the weighted term of one side: values, weights, mask [N, K] -> [N] (0 where no valid slot)."""
    maskf = mask.to(values.dtype)
    if how in ("min", "max", "sample"):
        index = _pick(values, mask, how, generator).unsqueeze(-1)  # [N, 1]
        term = weights.gather(-1, index).squeeze(-1) * values.gather(-1, index).squeeze(-1)
    elif how == "mean":
        term = (weights * values * maskf).sum(-1) / maskf.sum(-1).clamp(min=1.0)
    else:  # weighted_mean: the judge's scores decide how much each rationale counts
        w = weights * maskf
        term = (w * values).sum(-1) / w.sum(-1).clamp(min=1e-8)
    return term * mask.any(-1).to(values.dtype)


_SIDES = {"minmax": ("min", "max"), "maxmin": ("max", "min"), "sampling": ("sample", "sample"),
          "mean": ("mean", "mean"), "weighted_mean": ("weighted", "weighted")}


def contrastive_loss(pos_ce: torch.Tensor, pos_mask: torch.Tensor, pos_scores: torch.Tensor,
                     neg_ce: torch.Tensor, neg_mask: torch.Tensor, neg_scores: torch.Tensor,
                     beta: float = 0.2, delta: float = 3.0, aggregation: str = "minmax",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The many-to-one contrastive loss L_cl = mean_i [ P_i - beta * N_i ].

    pos_ce, pos_mask, pos_scores: [N, P]; neg_ce, neg_mask, neg_scores: [N, M]; student CE per rationale and the
    judge's score s in [0, 1] of each. ``P_i = s * agg_pos l(r)`` and ``N_i = (1 - s) * agg_neg min(l(r) - delta, 0)``.
    minmax (default): the easiest positive and the hardest negative, with the s of the chosen rationale.

    The margin clip ``min(l - delta, 0)`` is applied to each negative before aggregating. For max this equals
    clipping after (the clip is monotone); for the means it lets each negative stop pushing on its own, once the
    student already finds it unlikely (CE above delta): such a negative contributes no gradient.
    Scores are detached: the judge weights the terms but gets no gradient through them.
    """
    if aggregation not in _SIDES:
        raise ValueError(f"loss.aggregation: expected one of {AGGREGATIONS}, got {aggregation!r}")
    pos_how, neg_how = _SIDES[aggregation]
    pos_mask, neg_mask = pos_mask.bool(), neg_mask.bool()
    pos_scores, neg_scores = pos_scores.detach().to(pos_ce.dtype), neg_scores.detach().to(neg_ce.dtype)
    positive = _aggregate(pos_ce, pos_scores, pos_mask, pos_how, generator)  # [N]
    clipped = torch.clamp(neg_ce - delta, max=0.0)  # [N, M]
    negative = _aggregate(clipped, 1.0 - neg_scores, neg_mask, neg_how, generator)  # [N]
    return (positive - beta * negative).mean()


def discriminator_loss(pos_scores: torch.Tensor, pos_mask: torch.Tensor, neg_scores: torch.Tensor,
                       neg_mask: torch.Tensor, form: str = "infonce") -> torch.Tensor:
    """The judge's loss L_D (Eq. 2) over questions with at least one positive and one negative.

    pos_scores, pos_mask [N, P]; neg_scores, neg_mask [N, M]. ``infonce`` (default):
    ``-log(sum_pos e^s / (sum_pos e^s + sum_neg e^s))``; ``paper_printed``: ``-log(sum_pos e^s / sum_neg e^s)``.
    """
    if form not in ("infonce", "paper_printed"):
        raise ValueError(f"discriminator.loss_form: expected 'infonce' or 'paper_printed', got {form!r}")
    pos_mask, neg_mask = pos_mask.bool(), neg_mask.bool()
    pos = torch.logsumexp(pos_scores.masked_fill(~pos_mask, float("-inf")), dim=-1)  # [N]
    neg = torch.logsumexp(neg_scores.masked_fill(~neg_mask, float("-inf")), dim=-1)  # [N]
    denominator = torch.logaddexp(pos, neg) if form == "infonce" else neg
    valid = pos_mask.any(-1) & neg_mask.any(-1)
    if not valid.any():
        return pos_scores.sum() * 0.0  # keeps the graph: nothing to learn from this batch
    return (denominator - pos)[valid].mean()
