"""Exact grades of a rationale on the built-in tasks (the paper's Table 7, which asks GPT-3.5, made exact): the
gold rationale of a ``qcrd_ray.toy`` or ``qcrd_ray.stories`` problem lists every computation ``a op b = c`` it
takes, so a student's rationale can be checked step by step against it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qcrd_ray.records import Example
from qcrd_ray.toy import _apply, computations


@dataclass(frozen=True)
class RationaleGrade:
    """How a rationale compares with its problem's gold steps (the paper's Table 7, exact)."""

    computations_right: bool  # every ``a op b = c`` it writes is arithmetically right
    only_numbers_that_matter: bool  # it never computes with a number that does not matter
    answer_right: bool  # its last computation ends on the gold answer

    @property
    def fully_correct(self) -> bool:
        return self.computations_right and self.only_numbers_that_matter and self.answer_right


def check_rationale(rationale: str, gold: str, question: str) -> RationaleGrade:
    """Grade ``rationale`` against the ``gold`` rationale of its ``question``: its computations, whether it uses
    a number of the question that the gold steps never use (a distractor), and its answer."""
    question_numbers = {int(n) for n in re.findall(r"\d+", question)}
    steps, gold_steps = computations(rationale), computations(gold)
    used = {v for a, _, b, _ in steps for v in (a, b)}
    needed = {v for a, _, b, c in gold_steps for v in (a, b, c)}
    return RationaleGrade(
        computations_right=bool(steps) and all(_apply(a, op, b) == c for a, op, b, c in steps),
        only_numbers_that_matter=not (used & (question_numbers - needed)),
        answer_right=bool(steps) and steps[-1][3] == gold_steps[-1][3],
    )


GRADES = ("fully_correct", "computations_right", "only_numbers_that_matter", "answer_right")


def grade_rationales(examples: Sequence[Example], rationales: Sequence[str]) -> list[RationaleGrade] | None:
    """Each rationale graded against its example's gold rationale; None when some example has no gold rationale
    made of computations (a task other than the built-in ones: there is nothing exact to grade against)."""
    golds = [next((r.text for r in ex.rationales if r.source == "gold"), "") for ex in examples]
    if not golds or not all(computations(g) for g in golds):
        return None
    return [check_rationale(r, g, ex.input) for ex, r, g in zip(examples, rationales, golds, strict=True)]


def grade_shares(grades: Sequence[RationaleGrade]) -> dict[str, float]:
    """The share of ``grades`` that pass each check (``GRADES``)."""
    return {name: sum(getattr(g, name) for g in grades) / len(grades) for name in GRADES}
