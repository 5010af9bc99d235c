"""Paired differences between methods with a bootstrap interval (qcrd_ray.stats, qcrd_ray.report_differences)."""

import random

import pytest

from qcrd_ray.report_differences import method_differences
from qcrd_ray.stats import paired_difference


def test_equal_methods_differ_by_exactly_zero():
    right = [[random.Random(s).random() < 0.6 for _ in range(200)] for s in range(3)]
    d = paired_difference(right, right)
    assert (d.mean, d.low, d.high, d.excludes_zero) == (0.0, 0.0, 0.0, False)


def test_a_method_right_where_the_other_is_wrong_differs_by_one():
    d = paired_difference([[False] * 50], [[True] * 50])
    assert (d.mean, d.low, d.high, d.excludes_zero) == (1.0, 1.0, 1.0, True)


def test_pairing_narrows_the_interval_to_the_questions_that_differ():
    """Two methods right on the same 60% of questions but b also on 4% more: the paired interval is about
    +-2 points around +4, where two independent samples of the same accuracies would give about +-5."""
    rng = random.Random(0)
    a = [[rng.random() < 0.6 for _ in range(1000)]]
    extra = set(rng.sample([q for q in range(1000) if not a[0][q]], 40))
    b = [[r or q in extra for q, r in enumerate(a[0])]]
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(0.04) and d.excludes_zero
    assert 0.01 < d.high - d.low < 0.035


def test_seeds_widen_the_interval_when_they_disagree():
    agree = paired_difference([[False] * 100] * 3, [[True] * 50 + [False] * 50] * 3)
    disagree = paired_difference([[False] * 100] * 3, [[True] * k + [False] * (100 - k) for k in (20, 50, 80)])
    assert agree.mean == disagree.mean == pytest.approx(0.5)
    assert disagree.high - disagree.low > agree.high - agree.low + 0.2


def test_the_interval_is_seeded_and_checks_its_input():
    a, b = [[True, False, True, False]], [[True, True, False, False]]
    assert paired_difference(a, b) == paired_difference(a, b)
    with pytest.raises(ValueError, match="equal"):
        paired_difference(a, [[True]])


def test_method_differences_pair_every_later_method_with_every_earlier_one():
    def seed(ft, dss):
        return {"methods": {"finetune": {"correct": ft}, "dss": {"correct": dss, "rationale_correct": dss}}}

    summaries = [seed([False, True], [True, True]), seed([False, False], [True, False])]
    (d,) = method_differences(summaries, ["finetune", "dss"], ["predict", "rationale"])
    assert (d.later, d.earlier, d.metric) == ("dss", "finetune", "predict")
    assert d.difference.mean == pytest.approx(0.5) and (d.difference.seeds, d.difference.questions) == (2, 2)
    # a seed without per-question results (a run from before they were recorded) leaves the pair out
    summaries[1]["methods"]["dss"].pop("correct")
    assert method_differences(summaries, ["finetune", "dss"], ["predict"]) == []
