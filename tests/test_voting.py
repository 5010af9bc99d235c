"""Self-consistency voting: majority, ties, unparsed samples, require_gold, fallback, deduplication, stats."""

from __future__ import annotations

import pytest

from qcrd_ray.config import VotingConfig
from qcrd_ray.records import Example, Rationale
from qcrd_ray.voting import agreement_stats, sample_correctness, vote


def R(text: str, answer: str | None, source: str = "teacher") -> Rationale:
    return Rationale(text=text, answer=answer, source=source)


def ex(label: str = "4", rationales: tuple[Rationale, ...] = ()) -> Example:
    return Example(id="q1", input="2 + 2 = ?", label=label, rationales=rationales)


CFG = VotingConfig(require_gold=False, tie_policy="first", deduplicate=False, no_positive="drop")


def texts(rationales) -> list[str]:
    return [r.text for r in rationales]


def test_majority_positives_and_minority_negatives():
    samples = [R("a", "4"), R("b", "5"), R("c", "4"), R("d", "4"), R("e", "6")]
    v = vote(ex(), samples, CFG)
    assert v.majority == "4"
    assert texts(v.positives) == ["a", "c", "d"]
    assert texts(v.negatives) == ["b", "e"]
    assert (v.num_samples, v.num_parsed) == (5, 5)
    assert v.agreement == pytest.approx(3 / 5)
    assert v.majority_correct is True
    assert v.example_id == "q1"


def test_unparsed_samples_never_vote_and_go_nowhere():
    samples = [R("a", None), R("b", "5"), R("c", None), R("d", "5"), R("e", "4")]
    v = vote(ex(), samples, CFG)
    assert v.majority == "5"
    assert texts(v.positives) == ["b", "d"]
    assert texts(v.negatives) == ["e"]
    assert v.num_parsed == 3
    assert v.agreement == pytest.approx(2 / 5)  # unparsed samples still count in the denominator
    assert v.majority_correct is False


def test_no_parsed_answer_gives_no_majority():
    v = vote(ex(), [R("a", None), R("b", None)], CFG)
    assert v.majority is None and v.majority_correct is None
    assert v.positives == () and v.negatives == ()
    assert v.agreement == 0.0


def test_empty_samples():
    v = vote(ex(), [], CFG)
    assert v.majority is None and v.num_samples == 0 and v.agreement == 0.0


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("first", "5"), ("gold", "4"), ("drop", None)],
)
def test_tie_policies(policy, expected):
    samples = [R("a", "5"), R("b", "4"), R("c", "5"), R("d", "4"), R("e", "7")]
    v = vote(ex(label="4"), samples, VotingConfig(tie_policy=policy, require_gold=False, no_positive="drop"))
    assert v.majority == expected
    if expected is None:
        assert v.positives == () and v.negatives == ()  # no majority, so no minority either
        assert v.agreement == 0.0
    else:
        assert {r.answer for r in v.positives} == {expected}
        assert all(r.answer != expected for r in v.negatives)
        assert len(v.negatives) == 3


def test_tie_gold_falls_back_to_first_when_gold_not_tied():
    samples = [R("a", "5"), R("b", "6")]
    v = vote(ex(label="4"), samples, VotingConfig(tie_policy="gold", require_gold=False, no_positive="drop"))
    assert v.majority == "5"


def test_is_correct_groups_equivalent_answers():
    # SVAMP-like: two spellings of the same value are one vote when the task's predicate says they agree.
    def same_value(pred: str, gold: str) -> bool:
        return float(pred) == float(gold)

    samples = [R("a", "4.0"), R("b", "5"), R("c", "4"), R("d", "5"), R("e", "4.00")]
    v = vote(ex(label="4"), samples, CFG, is_correct=same_value)
    assert v.majority == "4.0"  # the group's first-seen spelling
    assert texts(v.positives) == ["a", "c", "e"]
    assert texts(v.negatives) == ["b", "d"]
    assert v.majority_correct is True
    # With plain string equality the spellings split and "5", with two votes, wins.
    assert vote(ex(label="4"), samples, CFG).majority == "5"


def test_require_gold_wrong_majority_joins_negatives():
    samples = [R("a", "5"), R("b", "5"), R("c", "4"), R("d", "7")]
    cfg = VotingConfig(require_gold=True, tie_policy="first", deduplicate=False, no_positive="drop")
    v = vote(ex(label="4"), samples, cfg)
    assert v.majority == "5" and v.majority_correct is False
    assert v.positives == ()
    # Gold is the arbiter: everything wrong w.r.t. gold is negative, the gold-correct minority sample is not.
    assert texts(v.negatives) == ["a", "b", "d"]


def test_require_gold_correct_majority_is_unchanged():
    samples = [R("a", "4"), R("b", "4"), R("c", "5")]
    strict = vote(ex(label="4"), samples, VotingConfig(require_gold=True, deduplicate=False, no_positive="drop"))
    loose = vote(ex(label="4"), samples, VotingConfig(require_gold=False, deduplicate=False, no_positive="drop"))
    assert strict.positives == loose.positives and strict.negatives == loose.negatives


def test_gold_rationale_fallback_prefers_a_gold_correct_teacher_sample():
    samples = [R("a", "5"), R("b", "5"), R("c", "4"), R("d", "4.0")]
    cfg = VotingConfig(require_gold=True, tie_policy="first", deduplicate=False, no_positive="gold_rationale")
    gold = R("the gold explanation", None, source="gold")
    v = vote(ex(label="4", rationales=(gold,)), samples, cfg)
    assert texts(v.positives) == ["c"]
    assert "c" not in texts(v.negatives)


def test_gold_rationale_fallback_uses_the_examples_gold_rationale():
    samples = [R("a", "5"), R("b", "5"), R("c", "6")]
    cfg = VotingConfig(require_gold=True, deduplicate=False, no_positive="gold_rationale")
    wrong_gold = R("a gold-source text with a wrong answer", "9", source="gold")
    teacher_rationale = R("teacher text in the example", None, source="teacher")
    gold = R("the gold explanation", None, source="gold")
    v = vote(ex(label="4", rationales=(teacher_rationale, wrong_gold, gold)), samples, cfg)
    assert v.positives == (gold,)
    assert texts(v.negatives) == ["a", "b", "c"]


def test_fallback_none_available_and_drop_policy():
    samples = [R("a", "5"), R("b", "5")]
    with_fallback = VotingConfig(require_gold=True, deduplicate=False, no_positive="gold_rationale")
    assert vote(ex(label="4"), samples, with_fallback).positives == ()
    dropping = VotingConfig(require_gold=True, deduplicate=False, no_positive="drop")
    assert vote(ex(label="4"), [*samples, R("c", "4")], dropping).positives == ()


def test_fallback_after_dropped_tie():
    samples = [R("a", "5"), R("b", "4")]
    cfg = VotingConfig(require_gold=False, tie_policy="drop", deduplicate=False, no_positive="gold_rationale")
    v = vote(ex(label="4"), samples, cfg)
    assert v.majority is None
    assert texts(v.positives) == ["b"]
    assert v.negatives == ()


def test_deduplicate_normalises_whitespace_and_resolves_conflicts():
    samples = [
        R("two  plus two", "4"),
        R("two plus two\n", "4"),
        R("three", "4"),
        R("four", "4"),
        R("wrong  way", "5"),
        R("wrong way", "5"),
        R("two plus two", "5"),  # same text as a positive but another answer: not pushed away
        R("other", "6"),
    ]
    on = vote(ex(), samples, VotingConfig(require_gold=False, tie_policy="first", deduplicate=True, no_positive="drop"))
    assert texts(on.positives) == ["two  plus two", "three", "four"]
    assert texts(on.negatives) == ["wrong  way", "other"]
    off = vote(
        ex(), samples, VotingConfig(require_gold=False, tie_policy="first", deduplicate=False, no_positive="drop")
    )
    assert len(off.positives) == 4 and len(off.negatives) == 4
    assert on.agreement == off.agreement == pytest.approx(4 / 8)  # dedup changes the sets, not the vote


def test_invalid_policies_raise():
    bad_tie = VotingConfig(tie_policy="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tie_policy"):
        vote(ex(), [R("a", "4")], bad_tie)
    bad_fallback = VotingConfig(no_positive="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no_positive"):
        vote(ex(), [R("a", "4")], bad_fallback)


def test_agreement_stats_reports_single_sample_vs_self_consistency_accuracy():
    examples = [ex(label="4"), ex(label="4"), ex(label="4")]
    sample_sets = [
        [R("a", "4"), R("b", "4"), R("c", "4")],  # unanimous, correct
        [R("a", "4"), R("b", "5"), R("c", "4")],  # majority correct, one wrong sample
        [R("a", "5"), R("b", None), R("c", "4")],  # tie dropped: no majority
    ]
    cfg = VotingConfig(require_gold=False, tie_policy="drop", deduplicate=False, no_positive="drop")
    votes = [vote(e, s, cfg) for e, s in zip(examples, sample_sets, strict=True)]
    flags = [sample_correctness(s, e.label) for e, s in zip(examples, sample_sets, strict=True)]
    assert flags[2] == [False, False, True]
    stats = agreement_stats(votes, flags)
    assert stats["num_questions"] == 3
    assert stats["no_majority"] == 1
    assert stats["unanimous_fraction"] == pytest.approx(1 / 3)
    assert stats["mean_agreement"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert stats["parsed_fraction"] == pytest.approx(8 / 9)
    assert stats["self_consistency_accuracy"] == pytest.approx(2 / 3)
    assert stats["single_sample_accuracy"] == pytest.approx(6 / 9)
    assert agreement_stats(votes)["single_sample_accuracy"] is None


def test_agreement_stats_checks_shapes_and_handles_empty():
    v = vote(ex(), [R("a", "4"), R("b", "4")], CFG)
    with pytest.raises(ValueError, match="one list per vote"):
        agreement_stats([v], [])
    with pytest.raises(ValueError, match="expected 2 flags"):
        agreement_stats([v], [[True]])
    empty = agreement_stats([])
    assert empty["num_questions"] == 0 and empty["self_consistency_accuracy"] == 0.0
