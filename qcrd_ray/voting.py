"""Self-consistency voting over a question's K teacher samples (docs/METHOD.md section 2).

The majority answer's rationales become the positives S_pos; the parsed minority becomes the LLM-side
negatives. Pure Python: the voter actor calls these functions on batches.

Choices this module makes (they are written down in the project's notes):

- Answers are grouped with ``is_correct(answer, representative)``, the same predicate that scores accuracy,
  so the vote agrees with evaluation (SVAMP: two equations of equal value are one vote). With the default
  ``str.__eq__`` grouping is plain string equality of the parser's normalised answers.
- Unparsed samples (``answer is None``) never vote and are neither positive nor negative: a sample without a
  parsable answer is most often a truncated generation whose reasoning may be sound, and pushing sound
  reasoning away hurts more than losing one negative (the student's own samples supply bad text in plenty).
  They still count in ``num_samples``, so they lower ``agreement``.
- Without ``require_gold`` (the paper's pure self-consistency) negatives are the parsed samples outside the
  majority group; with no majority there is no minority, hence no negatives.
- With ``require_gold`` the gold label is the arbiter: negatives are all parsed samples whose answer is wrong
  w.r.t. gold, so when the majority itself is wrong its rationales join the negatives (they argue for a wrong
  answer), and a gold-correct minority sample is never pushed away.
- The ``gold_rationale`` fallback picks one rationale: the first gold-correct teacher sample, else the first
  of the example's own ``source == "gold"`` rationales whose answer is correct or absent.
- Deduplication keeps the first of each whitespace-normalised text and also removes from the negatives any
  text that is a positive (a text cannot be both pulled towards and pushed away from).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qcrd_ray.config import VotingConfig
from qcrd_ray.records import Example, Rationale, Vote

AnswerMatch = Callable[[str, str], bool]


def _group_answers(parsed: Sequence[Rationale], is_correct: AnswerMatch) -> list[tuple[str, list[Rationale]]]:
    """Group parsed samples into (representative answer, members), in order of first appearance."""
    groups: list[tuple[str, list[Rationale]]] = []
    for sample in parsed:
        assert sample.answer is not None
        for representative, members in groups:
            if sample.answer == representative or is_correct(sample.answer, representative):
                members.append(sample)
                break
        else:
            groups.append((sample.answer, [sample]))
    return groups


def _pick_majority(
    groups: list[tuple[str, list[Rationale]]], gold: str, tie_policy: str, is_correct: AnswerMatch
) -> tuple[str, list[Rationale]] | None:
    if not groups:
        return None
    top = max(len(members) for _, members in groups)
    tied = [g for g in groups if len(g[1]) == top]  # first-seen order is kept
    if len(tied) == 1 or tie_policy == "first":
        return tied[0]
    if tie_policy == "gold":
        return next((g for g in tied if is_correct(g[0], gold)), tied[0])
    return None  # "drop": a tie is no majority


def _normalise_text(text: str) -> str:
    return " ".join(text.split())


def _deduplicate(rationales: Sequence[Rationale], exclude: set[str] = frozenset()) -> tuple[Rationale, ...]:
    seen = set(exclude)
    kept = []
    for r in rationales:
        key = _normalise_text(r.text)
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return tuple(kept)


def _gold_fallback(example: Example, samples: Sequence[Rationale], is_correct: AnswerMatch) -> Rationale | None:
    for sample in samples:
        if sample.answer is not None and is_correct(sample.answer, example.label):
            return sample
    for r in example.rationales:
        if r.source == "gold" and (r.answer is None or is_correct(r.answer, example.label)):
            return r
    return None


def vote(
    example: Example,
    samples: Sequence[Rationale],
    cfg: VotingConfig,
    is_correct: AnswerMatch = str.__eq__,
) -> Vote:
    """Self-consistency over one question's teacher ``samples``.

    ``is_correct(predicted, reference)`` says whether two normalised answers agree (also used against the gold
    label ``example.label``). Returns a ``records.Vote`` with positives, negatives and the agreement statistics.
    """
    if cfg.tie_policy not in ("first", "gold", "drop"):
        raise ValueError(f"voting.tie_policy: expected one of 'first', 'gold', 'drop', got {cfg.tie_policy!r}")
    if cfg.no_positive not in ("gold_rationale", "drop"):
        raise ValueError(f"voting.no_positive: expected 'gold_rationale' or 'drop', got {cfg.no_positive!r}")
    parsed = [s for s in samples if s.answer is not None]
    groups = _group_answers(parsed, is_correct)
    chosen = _pick_majority(groups, example.label, cfg.tie_policy, is_correct)
    majority = chosen[0] if chosen else None
    majority_members = chosen[1] if chosen else []
    majority_correct = None if majority is None else bool(is_correct(majority, example.label))

    def wrong_wrt_gold(r: Rationale) -> bool:
        return not is_correct(r.answer, example.label)

    if cfg.require_gold:
        positives = list(majority_members) if majority_correct else []
        negatives = [s for s in parsed if wrong_wrt_gold(s)]
    else:
        positives = list(majority_members)
        in_majority = {id(s) for s in majority_members}
        negatives = [s for s in parsed if id(s) not in in_majority] if chosen else []

    fallback = None
    if not positives and cfg.no_positive == "gold_rationale":
        fallback = _gold_fallback(example, samples, is_correct)
        if fallback is not None:
            positives = [fallback]
            negatives = [s for s in negatives if s is not fallback]

    if cfg.deduplicate:
        positives_out = _deduplicate(positives)
        negatives_out = _deduplicate(negatives, exclude={_normalise_text(r.text) for r in positives_out})
    else:
        positives_out, negatives_out = tuple(positives), tuple(negatives)

    num_samples = len(samples)
    return Vote(
        example_id=example.id,
        majority=majority,
        positives=positives_out,
        negatives=negatives_out,
        num_samples=num_samples,
        num_parsed=len(parsed),
        agreement=len(majority_members) / num_samples if num_samples else 0.0,
        majority_correct=majority_correct,
        samples=tuple(samples),
        fallback=fallback is not None,
    )


def sample_correctness(samples: Sequence[Rationale], gold: str, is_correct: AnswerMatch = str.__eq__) -> list[bool]:
    """Per-sample correctness w.r.t. ``gold`` (an unparsed sample is wrong); feeds ``agreement_stats``."""
    return [s.answer is not None and bool(is_correct(s.answer, gold)) for s in samples]


def agreement_stats(votes: Sequence[Vote], samples_correct: Sequence[Sequence[bool]] | None = None) -> dict[str, Any]:
    """Summary of a dataset's votes, for the driver's "single-sample vs self-consistency accuracy" line.

    Keys: ``num_questions``, ``mean_agreement``, ``unanimous_fraction`` (every sample, unparsed ones included,
    agrees with the majority), ``no_majority`` (count), ``fallback_questions`` (count of questions whose
    positive is the gold fallback), ``parsed_fraction``, ``self_consistency_accuracy``
    (majority correct; a question without a majority counts as wrong), ``single_sample_accuracy`` (mean
    correctness over all individual samples; None unless ``samples_correct``, one list per vote, is given).
    """
    if samples_correct is not None:
        if len(samples_correct) != len(votes):
            raise ValueError(f"samples_correct: expected one list per vote ({len(votes)}), got {len(samples_correct)}")
        for vote_, flags in zip(votes, samples_correct, strict=True):
            if len(flags) != vote_.num_samples:
                raise ValueError(
                    f"samples_correct for example {vote_.example_id!r}: expected {vote_.num_samples} flags, got {len(flags)}"
                )
    n = len(votes)
    total_samples = sum(v.num_samples for v in votes)
    flat = [bool(f) for flags in samples_correct for f in flags] if samples_correct is not None else None
    return {
        "num_questions": n,
        "mean_agreement": sum(v.agreement for v in votes) / n if n else 0.0,
        "unanimous_fraction": sum(1 for v in votes if v.num_samples and v.agreement == 1.0) / n if n else 0.0,
        "no_majority": sum(1 for v in votes if v.majority is None),
        "fallback_questions": sum(1 for v in votes if v.fallback),
        "parsed_fraction": sum(v.num_parsed for v in votes) / total_samples if total_samples else 0.0,
        "self_consistency_accuracy": sum(1 for v in votes if v.majority_correct) / n if n else 0.0,
        "single_sample_accuracy": (sum(flat) / len(flat) if flat else 0.0) if flat is not None else None,
    }
