"""Accuracy as the DSS code computes it: exact match after normalizing, SVAMP by the value of the equations."""

import pytest

from qcrd_ray.evaluation import accuracy, majority_label_baseline, per_example_correct
from qcrd_ray.tasks import get_task


def test_text_tasks_exact_match_after_normalize():
    labels = ["wooded area", "zoo", "body of water", "pay debts"]
    predictions = ["Wooded area.", "zoo", "water", ""]
    assert per_example_correct("cqa", predictions, labels) == [True, True, False, False]
    assert accuracy("cqa", predictions, labels) == 0.5
    assert accuracy(
        get_task("esnli"), ["entailment", "Neutral", "neutral"], ["entailment", "neutral", "contradiction"]
    ) == pytest.approx(2 / 3)


def test_svamp_compares_equations_by_value():
    labels = ["( 84.0 / 2.0 )", "( 10.0 - ( 6.0 + 3.0 ) )", "( 11.0 * 2.0 )", "( 7.0 + 5.0 )"]
    predictions = ["( 2.0 * 21.0 )", "( 10 - 6 - 3 )", "( 11 * x )", "__import__('os')"]
    assert per_example_correct("svamp", predictions, labels) == [True, True, False, False]
    assert accuracy("svamp", predictions, labels) == 0.5


def test_arith_numeric():
    assert accuracy("arith", ["5", "5.0", "6", "five"], ["5", "5", "5", "5"]) == 0.5


def test_majority_label_baseline():
    # "neutral" is the most frequent training label; a tie with "entailment" would go to the one seen first
    train = ["entailment", "neutral", "neutral", "contradiction", "entailment", "neutral"]
    baseline = majority_label_baseline("esnli", train, ["neutral", "entailment", "Neutral", "contradiction"])
    assert baseline == {"label": "neutral", "accuracy": 0.5}
    assert majority_label_baseline("arith", ["7", "3", "3", "7"], ["7"])["label"] == "7"
    # equations count by their value: 10 twice, 9 once
    assert majority_label_baseline("arith", ["4 + 5", "(2 + 3) * 2", "7 + 3"], ["10", "9"]) == {
        "label": "10",
        "accuracy": 0.5,
    }
    with pytest.raises(ValueError, match="at least one training label"):
        majority_label_baseline("arith", [], ["7"])


def test_mismatched_or_empty_inputs_raise():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        accuracy("cqa", ["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="empty evaluation set"):
        accuracy("cqa", [], [])
    with pytest.raises(ValueError, match="unknown task"):
        accuracy("mnli", ["a"], ["a"])
