"""What each method trains on (docs/METHOD.md sections 1-5): the decisions that make the comparison fair.

- fine-tuning: the label alone (``predict:``), no rationale.
- DSS: the label and ONE teacher rationale, the first sample as the teacher wrote it, whatever answer it
  reached (Distilling Step-by-Step has no self-consistency). QCRD with ``run.self_consistency=false`` trains
  on the same raw sample.
- QCRD: the label, the voted positives, and the negatives: the student's own samples from snapshot t - j
  first, then the teacher's minority, at most ``negatives.max_per_question``.

Judge scores s weight the contrastive terms: a positive by s, a negative by 1 - s. Items leave
``build_items`` with the neutral scores (1 for positives, 0 for negatives), so that every term weighs 1
when the judge is ablated; ``with_scores`` puts the judge's in.
"""

from __future__ import annotations

from collections.abc import Sequence

from qcrd_ray.config import Config
from qcrd_ray.records import Example, TrainItem, Vote

Group = tuple[str, list[str], list[str]]  # (question, positives, negatives): what the judge trains on


def dss_rationale(vote: Vote) -> tuple[str, ...]:
    """DSS's single teacher rationale: sample 0 as sampled, whatever its answer; the first sample that parses
    when sample 0 does not; the vote's fallback positive (a gold rationale) when none parses."""
    parsed = [s for s in vote.samples if s.answer is not None]
    if parsed:
        return (parsed[0].text,)
    return (vote.positives[0].text,) if vote.positives else ()


def build_items(
    cfg: Config, method: str, train: Sequence[Example], votes: Sequence[Vote], student_samples: dict[str, list[str]]
) -> list[TrainItem]:
    """One iteration's items for ``method``: label, positives, negatives per question, neutral scores.

    ``student_samples``: question id -> the student snapshot's samples (QCRD's negatives; empty otherwise).
    """
    if method not in ("qcrd", "dss", "finetune"):
        raise ValueError(f"build_items: method must be qcrd, dss or finetune, got {method!r}")
    items = []
    for ex, vote in zip(train, votes, strict=True):
        label = vote.majority if cfg.voting.use_voted_label and vote.majority is not None else ex.label
        positives: tuple[str, ...] = ()
        negatives: tuple[str, ...] = ()
        if method == "dss" or (method == "qcrd" and not cfg.run.self_consistency):
            positives = dss_rationale(vote)
        elif method == "qcrd":
            positives = tuple(r.text for r in vote.positives)
            if cfg.negatives.include_teacher_minority:
                negatives = tuple(r.text for r in vote.negatives)
        if method == "qcrd":
            negatives = (*student_samples.get(ex.id, ()), *negatives)[: cfg.negatives.max_per_question]
        items.append(
            TrainItem(ex.id, ex.input, label, positives, (1.0,) * len(positives), negatives, (0.0,) * len(negatives))
        )
    return items


def pretrain_groups(train: Sequence[Example], votes: Sequence[Vote]) -> list[Group]:
    """The judge's pretraining data: the teacher's positives against its minority, per question with a positive."""
    return [
        (ex.input, [r.text for r in v.positives], [r.text for r in v.negatives])
        for ex, v in zip(train, votes, strict=True)
        if v.positives
    ]


def update_groups(items: Sequence[TrainItem]) -> list[Group]:
    """The judge's online-update data: an iteration's positives against its real negatives."""
    return [(it.input, list(it.positives), list(it.negatives)) for it in items if it.positives]


def judge_pairs(items: Sequence[TrainItem]) -> list[tuple[str, str]]:
    """Every (question, rationale) the judge scores for ``items``: each item's positives, then its negatives."""
    return [(it.input, text) for it in items for text in (*it.positives, *it.negatives)]


def with_scores(items: Sequence[TrainItem], scores: Sequence[float]) -> list[TrainItem]:
    """``items`` with the judge's scores, given in ``judge_pairs`` order."""
    if len(scores) != sum(len(it.positives) + len(it.negatives) for it in items):
        raise ValueError(f"with_scores: {len(scores)} scores for the items' {len(judge_pairs(items))} rationales")
    rest = iter(scores)
    return [
        TrainItem(
            it.id,
            it.input,
            it.label,
            it.positives,
            tuple(next(rest) for _ in it.positives),
            it.negatives,
            tuple(next(rest) for _ in it.negatives),
        )  # fmt: skip
        for it in items
    ]


def scores_by_kind(items: Sequence[TrainItem], student_samples: dict[str, list[str]]) -> dict[str, list[float]]:
    """Judge scores split into positives, student negatives and teacher negatives (the paper's Fig. 6).

    ``build_items`` puts a question's student negatives before its teacher negatives."""
    positives, student, teacher = [], [], []
    for it in items:
        positives += it.positive_scores
        n_student = min(len(student_samples.get(it.id, ())), len(it.negatives))
        student += it.negative_scores[:n_student]
        teacher += it.negative_scores[n_student:]
    return {"positives": positives, "student_negatives": student, "teacher_negatives": teacher}
