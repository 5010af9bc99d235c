"""The two-person story task (qcrd_ray.stories): SVAMP's structures, labels scored by value, gold rationales
the arith parser reads, disjoint splits, and the exact rationale checker."""

import random

import pytest

from qcrd_ray.rationale_check import check_rationale
from qcrd_ray.stories import KINDS, StoryDesign, generate_split, gold_rationale, random_problem
from qcrd_ray.tasks import get_task
from qcrd_ray.toy import split_of

ARITH = get_task("arith")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_labels_its_equation_and_its_rationale_ends_on_the_answer(kind):
    rng = random.Random(kind)
    for _ in range(200):
        problem = random_problem(rng, StoryDesign(kinds=(kind,), distractor_share=0.5))
        rationale = gold_rationale(problem)
        assert ARITH.is_correct(problem.equation, str(problem.answer)), (problem.equation, problem.answer)
        assert ARITH.answer_from_rationale(rationale) == str(problem.answer)
        assert all(1 <= v <= 99 for a, _, b, c in problem.steps for v in (a, b, c))
        assert check_rationale(rationale, rationale, " ".join([*problem.sentences, problem.question])).fully_correct


def test_the_structures_read_as_svamp_does():
    def first(kind, **design):
        return random_problem(random.Random(0), StoryDesign(kinds=(kind,), **design))

    compare = first("compare", distractor_share=0.0)
    assert compare.question.startswith("How many more") and compare.steps[-1][1] == "-"
    inverse = first("inverse", distractor_share=0.0)
    assert "at first" in inverse.question and "some" in inverse.sentences[0]
    before = first("before", distractor_share=0.0)
    assert all(s.startswith("Before that") for s in before.sentences[1:])
    groups = first("groups", distractor_share=0.0)
    assert " in each." in groups.sentences[0] and groups.steps[0][1] == "*"
    given = first("given", distractor_share=0.0)
    assert "give to" in given.question and given.equation == f"{given.steps[0][0]} - {given.steps[0][2]}"
    distracted = first("change", distractor_share=1.0)
    (number, said), story = distracted.distractors[0], " ".join(distracted.sentences)
    assert str(number) in story and str(number) not in distracted.equation.split()
    assert gold_rationale(distracted).startswith(f"{said} do not matter to the question.")


def test_splits_are_deterministic_distinct_and_disjoint():
    train = generate_split("train", 300, seed=0)
    assert train == generate_split("train", 300, seed=0)
    assert len({ex.input for ex in train}) == 300 and all(split_of(ex.input) == "train" for ex in train)
    test = generate_split("test", 100, seed=0)
    assert not {ex.input for ex in train} & {ex.input for ex in test}
    assert generate_split("train", 50, seed=1) != train[:50]


def test_the_checker_grades_computations_distractors_and_answers_apart():
    question = "Tom has 12 apples. Mia has 7 apples. Tom buys 3 more apples. How many apples does Tom have now?"
    gold = "Mia's 7 apples do not matter to the question. He buys 3 more apples: 12 + 3 = 15."
    assert check_rationale(gold, gold, question).fully_correct
    slip = check_rationale("He buys 3 more apples: 12 + 3 = 16.", gold, question)
    assert (slip.computations_right, slip.only_numbers_that_matter, slip.answer_right) == (False, True, False)
    distracted = check_rationale("12 + 3 = 15. 15 + 7 = 22. So 22 - 7 = 15.", gold, question)
    assert (distracted.computations_right, distracted.only_numbers_that_matter) == (True, False)
    assert distracted.answer_right and not distracted.fully_correct
    assert not check_rationale("Tom has fifteen.", gold, question).answer_right


def test_grade_rationales_of_the_built_in_tasks_and_nothing_else():
    from qcrd_ray.rationale_check import grade_rationales, grade_shares
    from qcrd_ray.records import Example, Rationale
    from qcrd_ray.toy import generate_split as piles

    for examples in (generate_split("test", 20), piles("test", 20)):
        golds = [ex.rationales[0].text for ex in examples]
        grades = grade_rationales(examples, golds)
        assert grade_shares(grades)["fully_correct"] == 1.0
        assert grade_shares(grade_rationales(examples, [""] * 20))["answer_right"] == 0.0
    cqa = [Example("q", "Where is a fish? (a) sea (b) sky", "sea", (Rationale("Fish swim.", "sea", "gold"),))]
    assert grade_rationales(cqa, ["Fish swim in the sea."]) is None
