"""The methods a run can train, in one registry: what each trains on, its loss, what it reports, its name.

- fine-tuning: the label alone (``predict:``), no rationale.
- DSS: the label and ONE teacher rationale, the first sample as the teacher wrote it, whatever answer it
  reached (Distilling Step-by-Step has no self-consistency); DSS-greedy the teacher's greedy answer instead, its
  best single one (sampled by a teacher phase of its own, K = 1 at T = 0).
- QCRD: the label, the voted positives, and the negatives: the student's own samples from snapshot t - j
  first, then the teacher's minority, at most ``negatives.max_per_question``. Its component ablations are
  ``run`` flags read here (``self_consistency``: DSS's raw sample instead of the vote; ``student_negatives``;
  ``use_judge``).

Every other module asks this one (``METHODS[name]``) instead of testing a method's name; adding a method or an
ablation variant is one ``Method`` entry. Judge scores s weight the contrastive terms: a positive by s, a
negative by 1 - s. Items leave ``build_items`` with the neutral scores (1 for positives, 0 for negatives), so
that every term weighs 1 when the judge is ablated; ``with_scores`` puts the judge's in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from qcrd_ray.records import Example, Group, TrainItem, Vote
from qcrd_ray.student_loss import (
    CONTRASTIVE_FIGURES,
    StudentBatch,
    contrastive_student_loss,
    label_loss,
    rationale_loss,
    student_batch,
)

if TYPE_CHECKING:  # config imports this module for its list of methods
    from qcrd_ray.config import Config, RunConfig

Rationales = tuple[tuple[str, ...], tuple[str, ...]]  # (positives, negatives) of one question


@dataclass(frozen=True)
class Method:
    """One method a run can train.

    ``rationales(cfg, vote, student_samples)`` -> the question's (positives, negatives), ``student_samples``
    being the snapshot's samples for it (empty unless the method is ``contrastive``); ``targets(item)`` -> the
    texts its loss encodes for an item beside the input; ``loss(batch)`` -> (scalar loss, its parts beside
    ``loss`` and ``loss_pred``: exactly ``metrics``).
    """

    name: str  # run.method, its directory in a seed's run directory, its key in the summary
    label: str  # how the report names it
    explains: bool  # learns the explain: path, so it is also scored from its own rationale (METHOD.md section 9)
    contrastive: bool  # trains on negatives: each iteration samples the snapshot ring and asks the judge
    rationales: Callable[[Config, Vote, Sequence[str]], Rationales]
    targets: Callable[[TrainItem], tuple[str, ...]]
    loss: Callable[[StudentBatch], tuple]
    metrics: tuple[str, ...]
    teacher: Literal["sampled", "greedy"] = "sampled"  # whose votes it reads: the K samples, or the greedy answer


# The greedy teacher phase's settings, over the run's teacher section.
GREEDY_TEACHER = {"teacher.num_samples": 1, "teacher.temperature": 0.0}


def dss_rationale(vote: Vote) -> tuple[str, ...]:
    """DSS's single teacher rationale: sample 0 as sampled, whatever its answer; the first sample that parses
    when sample 0 does not; the vote's fallback positive (a gold rationale) when none parses."""
    parsed = [s for s in vote.samples if s.answer is not None]
    if parsed:
        return (parsed[0].text,)
    return (vote.positives[0].text,) if vote.positives else ()


def _no_rationales(cfg: Config, vote: Vote, student_samples: Sequence[str]) -> Rationales:
    return (), ()


def _first_sample(cfg: Config, vote: Vote, student_samples: Sequence[str]) -> Rationales:
    return dss_rationale(vote), ()


def _voted_and_negatives(cfg: Config, vote: Vote, student_samples: Sequence[str]) -> Rationales:
    if not cfg.run.self_consistency:  # the ablation: DSS's raw sample, so no teacher minority either
        positives, minority = dss_rationale(vote), ()
    else:
        positives = tuple(r.text for r in vote.positives)
        minority = tuple(r.text for r in vote.negatives) if cfg.negatives.include_teacher_minority else ()
    return positives, (*student_samples, *minority)[: cfg.negatives.max_per_question]


FINETUNE = Method(
    name="finetune",
    label="fine-tuning",
    explains=False,
    contrastive=False,
    rationales=_no_rationales,
    targets=lambda item: (item.label,),
    loss=label_loss,
    metrics=(),
)
DSS = Method(
    name="dss",
    label="DSS",
    explains=True,
    contrastive=False,
    rationales=_first_sample,
    targets=lambda item: item.positives[:1],
    loss=rationale_loss,
    metrics=("loss_rationale",),
)
DSS_GREEDY = replace(DSS, name="dss_greedy", label="DSS (greedy teacher)", teacher="greedy")
QCRD = Method(
    name="qcrd",
    label="QCRD",
    explains=True,
    contrastive=True,
    rationales=_voted_and_negatives,
    targets=lambda item: (*item.positives, *item.negatives),
    loss=contrastive_student_loss,
    metrics=("loss_cl", *CONTRASTIVE_FIGURES),
)
# The report's order: the baselines first.
METHODS: dict[str, Method] = {m.name: m for m in (FINETUNE, DSS, DSS_GREEDY, QCRD)}


def get_method(name: str) -> Method:
    """The registry's entry for ``name``; ValueError naming the valid ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]


def methods_of(run: RunConfig) -> list[str]:
    """The methods a run trains: the configured one, after the baselines it is compared with (a contrastive
    method's ``run.baselines``, in the registry's order)."""
    if not METHODS[run.method].contrastive:
        return [run.method]
    return [*(name for name in METHODS if name in run.baselines), run.method]


def build_items(
    cfg: Config, method: str, train: Sequence[Example], votes: Sequence[Vote], student_samples: dict[str, list[str]]
) -> list[TrainItem]:
    """One iteration's items for ``method``: label, positives, negatives per question, neutral scores.

    ``student_samples``: question id -> the student snapshot's samples (QCRD's negatives; empty otherwise).
    """
    rationales = get_method(method).rationales
    items = []
    for ex, vote in zip(train, votes, strict=True):
        label = vote.majority if cfg.voting.use_voted_label and vote.majority is not None else ex.label
        positives, negatives = rationales(cfg, vote, student_samples.get(ex.id, ()))
        items.append(
            TrainItem(ex.id, ex.input, label, positives, (1.0,) * len(positives), negatives, (0.0,) * len(negatives))
        )
    return items


def student_loss(
    model, tokenizer, batch: list[TrainItem], method: str, cfg: Config, *, generator=None, choose_first: bool = True
):
    """``method``'s loss on one micro batch of B questions -> (scalar loss, its parts as floats: ``loss``,
    ``loss_pred`` and the method's ``metrics``).

    ``model`` is a transformers student (or ``EngineView``); ``generator`` drives the ``sampling`` aggregation;
    ``choose_first=False`` backpropagates QCRD's loss through every rationale (``student_loss`` module).
    """
    loss_of = get_method(method).loss
    inputs = student_batch(model, tokenizer, batch, cfg, generator=generator, choose_first=choose_first)
    loss, parts = loss_of(inputs)
    return loss, {"loss_pred": float(inputs.label_ce.mean().detach()), **parts, "loss": float(loss.detach())}


def encoded_length(item: TrainItem, method: str) -> int:
    """How long (in characters) the longest text ``method`` encodes for ``item`` is: the input and its longest
    target (the padding a batch of it would set)."""
    return len(item.input) + max(map(len, get_method(method).targets(item)), default=0)


def pretrain_groups(cfg: Config, train: Sequence[Example], votes: Sequence[Vote]) -> list[Group]:
    """The judge's pretraining data: per question with a positive, what ``run.method`` trains on before any
    student sample. With self-consistency, the teacher's positives against its minority; without it (the
    ablation), DSS's raw sample alone, so the judge sees no vote and learns from corrupted copies of it."""
    rationales = get_method(cfg.run.method).rationales
    groups = []
    for ex, vote in zip(train, votes, strict=True):
        positives, negatives = rationales(cfg, vote, ())
        if positives:
            groups.append((ex.input, list(positives), list(negatives)))
    return groups


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
    scored = []
    for it in items:
        positive_scores = tuple(next(rest) for _ in it.positives)
        negative_scores = tuple(next(rest) for _ in it.negatives)
        scored.append(replace(it, positive_scores=positive_scores, negative_scores=negative_scores))
    return scored


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
