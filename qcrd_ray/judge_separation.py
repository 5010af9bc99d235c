"""Does the judge separate? Held-out questions and the AUC of positives against each kind of negative.

A fixed share of the training questions never trains D (neither its pretraining nor its online updates). Each
iteration D scores, on those questions, the teacher's positives against three kinds of negative: the teacher's
minority, corrupted positives (the pretraining's augmentation, drawn once) and the student samples that
iteration takes its negatives from. The AUC of each pair of kinds is what the judge knows about quality there,
measured where it cannot have memorised the answer: 0.5 means its weights carry no signal on that kind.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qcrd_ray.augment import balance_negatives
from qcrd_ray.records import Example, Vote

NEGATIVE_KINDS = ("minority", "corrupted", "student")
SEPARATES = 0.6  # an AUC under this: the judge cannot tell that kind from the positives


def separation_auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """P(score of a random positive > score of a random negative), ties counting half (Mann-Whitney U / n_p n_n)."""
    if not positives or not negatives:
        return None
    pos, neg = np.asarray(positives, dtype=np.float64), np.sort(np.asarray(negatives, dtype=np.float64))
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (pos.size * neg.size))


def held_out_ids(ids: Sequence[str], fraction: float, seed: int) -> frozenset[str]:
    """The ``fraction`` of training question ids (at least one when ``fraction`` > 0) that D never trains on."""
    if fraction <= 0:
        return frozenset()
    count = max(1, round(fraction * len(ids)))
    return frozenset(random.Random(seed).sample(list(ids), count))


@dataclass(frozen=True)
class HeldOut:
    """The held-out questions' rationales of the kinds that do not change between iterations, as (question,
    rationale) pairs: the teacher's positives, its minority, one corrupted copy of each positive."""

    ids: frozenset[str]  # the held-out questions
    positives: tuple[tuple[str, str], ...]
    minority: tuple[tuple[str, str], ...]
    corrupted: tuple[tuple[str, str], ...]

    @classmethod
    def build(
        cls, train: Sequence[Example], votes: Sequence[Vote], ids: frozenset[str], seed: int, mask_probability: float
    ) -> HeldOut:
        rng = random.Random(seed)
        positives, minority, corrupted = [], [], []
        for ex, vote in zip(train, votes, strict=True):
            if ex.id not in ids or not vote.positives:
                continue
            texts = [r.text for r in vote.positives]
            positives += [(ex.input, r) for r in texts]
            minority += [(ex.input, r.text) for r in vote.negatives]
            corrupted += [(ex.input, r) for r in balance_negatives(texts, [], rng, mask_probability)]
        return cls(ids, tuple(positives), tuple(minority), tuple(corrupted))

    def pairs(
        self, train: Sequence[Example], student_samples: dict[str, list[str]]
    ) -> dict[str, list[tuple[str, str]]]:
        """Every pair to score this iteration, by kind: the fixed kinds and the held-out questions' samples of
        the iteration's student snapshot."""
        student = [(ex.input, s) for ex in train if ex.id in self.ids for s in student_samples.get(ex.id, ())]
        return {
            "positives": list(self.positives),
            "minority": list(self.minority),
            "corrupted": list(self.corrupted),
            "student": student,
        }


def separation(scores: dict[str, Sequence[float]]) -> dict[str, float]:
    """``judge_auc_{kind}`` for each negative kind that has scores, from scores by kind (``HeldOut.pairs``)."""
    aucs = {kind: separation_auc(scores["positives"], scores.get(kind, ())) for kind in NEGATIVE_KINDS}
    return {f"judge_auc_{kind}": auc for kind, auc in aucs.items() if auc is not None}
