"""The judge's held-out separation (qcrd_ray.judge_separation): the split, the pairs by kind, the AUCs."""

from __future__ import annotations

from qcrd_ray.config import VotingConfig
from qcrd_ray.judge_separation import HeldOut, held_out_ids, separation, separation_auc
from qcrd_ray.records import Example, Rationale
from qcrd_ray.voting import vote


def test_separation_auc():
    assert separation_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert separation_auc([0.1], [0.9]) == 0.0
    assert separation_auc([0.5, 0.5], [0.5]) == 0.5
    assert separation_auc([0.6, 0.2], [0.4]) == 0.5
    assert separation_auc([], [0.1]) is None


def test_held_out_ids_are_a_fixed_share_drawn_by_seed():
    ids = [f"q{i}" for i in range(200)]
    chosen = held_out_ids(ids, 0.1, seed=0)
    assert len(chosen) == 20 and chosen <= set(ids)
    assert held_out_ids(ids, 0.1, seed=0) == chosen and held_out_ids(ids, 0.1, seed=1) != chosen
    assert held_out_ids(ids[:3], 0.1, seed=0) and held_out_ids(ids, 0.0, seed=0) == frozenset()


def test_held_out_pairs_hold_each_kind_of_the_held_out_questions_only():
    examples = [Example(f"q{i}", f"question {i}", "2") for i in range(3)]
    samples = [
        Rationale("1 plus 1 is 2. So the answer is 2.", "2"),
        Rationale("one and one make 2. So the answer is 2.", "2"),
        Rationale("1 times 1 is 1. So the answer is 1.", "1"),
    ]
    votes = [vote(ex, samples, VotingConfig()) for ex in examples]
    ids = frozenset({"q1"})
    held_out = HeldOut.build(examples, votes, ids, seed=0, mask_probability=0.5)
    pairs = held_out.pairs(examples, {"q0": ["x"], "q1": ["its sample"]})
    assert pairs["positives"] == [("question 1", samples[0].text), ("question 1", samples[1].text)]
    assert pairs["minority"] == [("question 1", samples[2].text)]
    assert len(pairs["corrupted"]) == 2 and all(r not in {s.text for s in samples} for _, r in pairs["corrupted"])
    assert pairs["student"] == [("question 1", "its sample")]
    assert HeldOut.build(examples, votes, ids, seed=0, mask_probability=0.5) == held_out  # drawn once, by seed
    scores = {"positives": [0.9, 0.8], "minority": [0.85], "corrupted": [0.1, 0.2], "student": []}
    assert separation(scores) == {"judge_auc_minority": 0.5, "judge_auc_corrupted": 1.0}
