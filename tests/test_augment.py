"""Class balancing for the judge's pretraining: counts, determinism, and what a corruption changes."""

from __future__ import annotations

import random

import pytest

from qcrd_ray.augment import balance_negatives, corpus_vocabulary, corrupt, perturb_number

POSITIVES = [
    "3 plus 4 makes 7 so the answer is 7",
    "we add 3 and 4 to get 7",
    "three apples and four apples are 7 apples",
    "the sum of 3 and 4 is 7",
    "adding 4 to 3 gives 7",
]


def test_balance_fills_the_gap_exactly():
    negatives = ["3 plus 4 makes 9"]
    augmented = balance_negatives(POSITIVES, negatives, random.Random(0), 0.15)
    assert len(augmented) == len(POSITIVES) - len(negatives)
    assert len(negatives) + len(augmented) == len(POSITIVES)


def test_balance_returns_nothing_when_already_balanced():
    assert balance_negatives(POSITIVES[:2], ["a b", "c d", "e f"], random.Random(0), 0.15) == []
    assert balance_negatives([], [], random.Random(0), 0.15) == []


def test_balance_uses_every_positive_as_a_source_round_robin():
    # 2 positives, 4 missing: each source is corrupted twice, so each result shares most words with one source.
    positives = ["alpha beta gamma delta epsilon zeta", "one two three four five six"]
    augmented = balance_negatives(positives + positives, [], random.Random(3), 0.1)
    first_words = set(positives[0].split())
    from_first = [a for a in augmented if len(first_words & set(a.split())) >= 3]
    assert len(augmented) == 4
    assert len(from_first) == 2


def test_balance_is_deterministic_per_seed_and_varies_across_seeds():
    a = balance_negatives(POSITIVES, [], random.Random(7), 0.3)
    b = balance_negatives(POSITIVES, [], random.Random(7), 0.3)
    c = balance_negatives(POSITIVES, [], random.Random(8), 0.3)
    assert a == b
    assert a != c


def test_augmented_negatives_never_equal_a_positive():
    for seed in range(20):
        augmented = balance_negatives(POSITIVES, [], random.Random(seed), 0.15)
        assert not set(augmented) & set(POSITIVES)


def test_replacement_words_come_from_the_corpus_vocabulary_or_are_numbers():
    vocabulary = set(corpus_vocabulary(POSITIVES))
    for seed in range(20):
        for text in balance_negatives(POSITIVES, [], random.Random(seed), 0.5):
            for word in text.split():
                assert word in vocabulary or perturb_number(word, random.Random(0)) is not None, word


def test_corrupt_always_changes_something():
    rng = random.Random(0)
    vocabulary = corpus_vocabulary(POSITIVES)
    for _ in range(50):
        # Probability 0 would change nothing on its own: one word is still forced.
        assert corrupt(POSITIVES[0], vocabulary, rng, 0.0) != POSITIVES[0]


def test_corrupt_rejects_bad_probability_and_empty_text():
    with pytest.raises(ValueError, match="mask_probability"):
        corrupt("a b", ["a"], random.Random(0), 1.0)
    with pytest.raises(ValueError, match="empty"):
        corrupt("   ", ["a"], random.Random(0), 0.1)


@pytest.mark.parametrize(
    ("word", "pattern"),
    [("7", r"^-?\d+$"), ("(84.0", r"^\(-?\d+\.\d$"), ("12,", r"^-?\d+,$"), ("2.50.", r"^-?\d+\.\d\d\.$")],
)
def test_perturb_number_keeps_form_and_changes_value(word, pattern):
    import re

    rng = random.Random(1)
    for _ in range(20):
        new = perturb_number(word, rng)
        assert new is not None and re.match(pattern, new), new
        assert new != word


def test_perturb_number_ignores_words():
    assert perturb_number("apples", random.Random(0)) is None
    assert perturb_number("3+4", random.Random(0)) is None
