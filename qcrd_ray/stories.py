"""A built-in task with SVAMP's kinds of difficulty: stories about two people, where the equation has to be
understood from the story, not copied off it as on the piles task (``qcrd_ray.toy``; issue 32).

Each problem is one of these structures (``KINDS``), the structures SVAMP was built from:

- ``change``: one person's pile changed by 1-3 events, asked for the end ("how many does Tom have?");
- ``compare``: two piles, asked how many more one has than the other (a subtraction the story never states);
- ``given``: a pile before and after, asked how many were given away (the change, not the end);
- ``inverse``: a pile after 1-3 events, asked how many there were at first (each event undone, in reverse);
- ``groups``: "3 bags of 4", then 0-2 events (a product the story states as groups);
- ``before``: the story told out of order: the end first, then "before that, ..." events to undo.

Any problem may also carry a number that does not matter to the question (``distractor``: the other person's
pile, or a count of something else). The label is the equation scored by its value, as SVAMP's; the gold
rationale says which numbers it uses and why, one computation ``a op b = c`` per step, ending on the answer,
so ``tasks.arith`` reads it as it reads the ``arith`` task's, and ``qcrd_ray.rationale_check`` grades a student's
rationale against it exactly. ``slipped_rationale`` makes the built-in teacher's mistakes: an LLM's on SVAMP.

Splits are disjoint by construction, as in ``qcrd_ray.toy``: a question belongs to the split its text hashes to.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from qcrd_ray.records import Example, Rationale
from qcrd_ray.toy import (
    _OBJECT_PRONOUN,
    _OBJECTS,
    _PEOPLE,
    SPLITS,
    _apply,
    completion_text,
    prompt_text,
    split_of,
)
from qcrd_ray.toy import equation as equation_of

KINDS = ("change", "compare", "given", "inverse", "groups", "before")
MAX_VALUE = 99
MAX_AMOUNT = 9
_CONTAINERS = ("bags", "boxes", "jars", "packs", "baskets")
_GAIN = ("{p} buys {k} more {obj}", "{p} finds {k} more {obj}", "{o} gives {p_obj} {k} {obj}")
_LOSS = ("{p} gives {k} {obj} to {o}", "{p} loses {k} {obj}", "{p} sells {k} {obj}")


@dataclass(frozen=True)
class StoryDesign:
    """What a generated problem may contain: the task's difficulty knobs (issue 32: chosen by fine-tuning)."""

    kinds: tuple[str, ...] = KINDS
    distractor_share: float = 0.5  # problems that also state a number that does not matter
    max_events: int = 2  # events beside a structure's own (each adds a step)


@dataclass
class Problem:
    sentences: list[str]
    question: str
    steps: list[tuple[int, str, int, int]]  # the gold computations (a, op, b, c), in order
    reasons: list[str]  # one per step: why it is computed (the rationale's sentence before it)
    equation: str
    distractors: list[tuple[int, str]] = field(default_factory=list)  # (number, what it counts): they do not matter

    @property
    def answer(self) -> int:
        return self.steps[-1][3]


class _Story:
    """One draw: the people, the objects, and a running pile with its gold steps and equation."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        (self.name, self.pronoun), (self.other, _) = rng.sample(_PEOPLE, 2)
        self.obj = rng.choice(_OBJECTS)
        self.steps: list[tuple[int, str, int, int]] = []
        self.reasons: list[str] = []

    def fill(self, template: str, k: int) -> str:
        p_obj = _OBJECT_PRONOUN[self.pronoun]
        return template.format(p=self.pronoun, p_obj=p_obj, k=k, o=self.other, obj=self.obj)

    def compute(self, a: int, op: str, b: int, reason: str) -> int:
        c = _apply(a, op, b)
        self.steps.append((a, op, b, c))
        self.reasons.append(reason)
        return c

    def events(self, value: int, count: int) -> tuple[list[tuple[str, str, int]], int]:
        """Up to ``count`` gains or losses that keep the pile in 1..MAX_VALUE: [(sentence, op, k)], end value."""
        out = []
        for _ in range(count):
            ops = [op for op, ok in (("+", value < MAX_VALUE), ("-", value > 1)) if ok]
            op = self.rng.choice(ops)
            k = self.rng.randint(1, min(MAX_AMOUNT, MAX_VALUE - value if op == "+" else value - 1))
            out.append((self.fill(self.rng.choice(_GAIN if op == "+" else _LOSS), k), op, k))
            value = _apply(value, op, k)
        return out, value


def _change(s: _Story, design: StoryDesign) -> Problem:
    start = s.rng.randint(2, 30)
    events, _ = s.events(start, s.rng.randint(1, 1 + design.max_events))
    value = start
    for sentence, op, k in events:
        value = s.compute(value, op, k, f"{sentence}:")
    return Problem(
        [f"{s.name} has {start} {s.obj}.", *(f"{e[0]}." for e in events)],
        f"How many {s.obj} does {s.name} have now?",
        s.steps,
        s.reasons,
        equation_of(start, [(op, k) for _, op, k in events]),
    )


def _compare(s: _Story, design: StoryDesign) -> Problem:
    # At least 2 left after every event is a loss of 9, so the other can have fewer (20..40 at two events).
    start = s.rng.randint(2 + MAX_AMOUNT * design.max_events, 20 + 10 * design.max_events)
    events, mine = s.events(start, s.rng.randint(0, design.max_events))
    theirs = s.rng.randint(1, mine - 1)
    value = start
    for sentence, op, k in events:
        value = s.compute(value, op, k, f"{sentence}:")
    s.compute(mine, "-", theirs, f"{s.name} has {mine} and {s.other} has {theirs}, so the difference is")
    equation = equation_of(start, [(op, k) for _, op, k in events])
    return Problem(
        [f"{s.name} has {start} {s.obj}.", *(f"{e[0]}." for e in events), f"{s.other} has {theirs} {s.obj}."],
        f"How many more {s.obj} does {s.name} have than {s.other}?",
        s.steps,
        s.reasons,
        f"({equation}) - {theirs}" if events else f"{equation} - {theirs}",
    )


def _given(s: _Story, design: StoryDesign) -> Problem:
    before = s.rng.randint(10, 60)
    given = s.rng.randint(1, min(before - 1, 30))
    after = before - given
    s.compute(before, "-", after, f"{s.name} had {before} and has {after} left, so {s.pronoun.lower()} gave away")
    return Problem(
        [
            f"{s.name} had {before} {s.obj}.",
            f"{s.pronoun} gave some of them to {s.other}.",
            f"Now {s.pronoun.lower()} has {after} {s.obj}.",
        ],
        f"How many {s.obj} did {s.name} give to {s.other}?",
        s.steps,
        s.reasons,
        f"{before} - {after}",
    )


def _undo(s: _Story, end: int, events: list[tuple[str, str, int]]) -> tuple[int, str]:
    """Undo ``events`` from the end value, last first: (the start, its equation)."""
    value, equation = end, str(end)
    for sentence, op, k in reversed(events):
        undo = "-" if op == "+" else "+"
        value = s.compute(value, undo, k, f"Before {sentence[0].lower() + sentence[1:]}, {s.pronoun.lower()} had")
        equation = f"{equation} {undo} {k}"
    return value, equation


def _inverse(s: _Story, design: StoryDesign) -> Problem:
    start = s.rng.randint(2, 40)
    events, end = s.events(start, s.rng.randint(1, 1 + design.max_events))
    _, equation = _undo(s, end, events)
    return Problem(
        [f"{s.name} had some {s.obj}.", *(f"{e[0]}." for e in events), f"Now {s.pronoun.lower()} has {end} {s.obj}."],
        f"How many {s.obj} did {s.name} have at first?",
        s.steps,
        s.reasons,
        equation,
    )


def _before(s: _Story, design: StoryDesign) -> Problem:
    start = s.rng.randint(2, 40)
    events, end = s.events(start, s.rng.randint(1, 1 + design.max_events))
    _, equation = _undo(s, end, events)
    told = [f"Before that, {events[-1][0][0].lower() + events[-1][0][1:]}."]
    told += [f"Before that, {e[0][0].lower() + e[0][1:]}." for e in reversed(events[:-1])]
    return Problem(
        [f"{s.name} has {end} {s.obj} now.", *told],
        f"How many {s.obj} did {s.name} have before all that?",
        s.steps,
        s.reasons,
        equation,
    )


def _groups(s: _Story, design: StoryDesign) -> Problem:
    container = s.rng.choice(_CONTAINERS)
    groups, each = s.rng.randint(2, 9), s.rng.randint(2, 9)
    value = s.compute(groups, "*", each, f"{groups} {container} of {each}:")
    events, _ = s.events(value, s.rng.randint(0, design.max_events))
    for sentence, op, k in events:
        value = s.compute(value, op, k, f"{sentence}:")
    return Problem(
        [f"{s.name} has {groups} {container} with {each} {s.obj} in each.", *(f"{e[0]}." for e in events)],
        f"How many {s.obj} does {s.name} have now?",
        s.steps,
        s.reasons,
        equation_of(groups, [("*", each), *((op, k) for _, op, k in events)]),
    )


_BUILDERS: dict[str, Callable[[_Story, StoryDesign], Problem]] = {
    "change": _change,
    "compare": _compare,
    "given": _given,
    "inverse": _inverse,
    "groups": _groups,
    "before": _before,
}


def _with_distractor(s: _Story, problem: Problem) -> None:
    """A number the question does not need: the other person's pile, in the story before the question."""
    k = s.rng.randint(2, 30)
    while k in {v for step in problem.steps for v in step}:  # its number must tell it apart from every step's
        k += 1
    if problem.question.endswith(f"than {s.other}?"):  # compare: the other's pile matters; a third count does not
        what = f"{s.rng.choice(_CONTAINERS)}"
        sentence, said = f"{s.name} also has {k} {what}.", f"The {k} {what}"
    else:
        sentence, said = f"{s.other} has {k} {s.obj}.", f"{s.other}'s {k} {s.obj}"
    # First or last: anywhere between, it would stand between a pronoun and the person it names.
    problem.sentences.insert(s.rng.choice((0, len(problem.sentences))), sentence)
    problem.distractors.append((k, said))


def random_problem(rng: random.Random, design: StoryDesign = StoryDesign()) -> Problem:
    """One problem of ``design``: its sentences, question, gold steps and equation."""
    s = _Story(rng)
    problem = _BUILDERS[rng.choice(design.kinds)](s, design)
    if rng.random() < design.distractor_share:
        _with_distractor(s, problem)
    return problem


def gold_rationale(problem: Problem) -> str:
    """Each step with why it is computed, then ``a op b = c``; the numbers that do not matter said so first."""
    parts = [f"{said} do not matter to the question." for _, said in problem.distractors]
    parts += [
        f"{reason} {a} {op} {b} = {c}." for reason, (a, op, b, c) in zip(problem.reasons, problem.steps, strict=True)
    ]
    return " ".join(parts)


def generate_split(split: str, size: int, seed: int = 0, design: StoryDesign = StoryDesign()) -> list[Example]:
    """``size`` distinct problems of ``split``, deterministic in ``(split, seed, design)``, labelled with their
    equation, each with its gold rationale."""
    if split not in SPLITS:
        raise ValueError(f"stories.py: split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"qcrd-stories/{split}/{seed}/{design}")
    examples: list[Example] = []
    seen: set[str] = set()
    for _ in range(50 * size + 1000):
        if len(examples) == size:
            return examples
        problem = random_problem(rng, design)
        question = " ".join([*problem.sentences, problem.question])
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        gold = Rationale(text=gold_rationale(problem), answer=str(problem.answer), source="gold")
        examples.append(Example(f"stories-{split}-{seed}-{len(examples)}", question, problem.equation, (gold,)))
    raise RuntimeError(f"stories.py: could not draw {size} distinct {split!r} questions")


SLIPS = ("distractor", "operation", "arithmetic")
MAX_SLIPPED_VALUE = 199  # a slipped chain may leave 1..99, never the digits the teacher has seen


def slipped_rationale(problem: Problem, rng: random.Random) -> tuple[str, int] | None:
    """The gold rationale with one mistake of the kinds an LLM makes on SVAMP, carried through the later steps:
    ``distractor`` (it also computes with a number that does not matter), ``operation`` (a step adds where it
    should subtract or the reverse: a comparison, an undone event) or ``arithmetic`` (a result off by 1, 2 or 10).
    -> (text, its final answer), or None when no slip keeps the values in range and changes the answer."""
    kinds = [k for k in SLIPS if k != "distractor" or problem.distractors]
    rng.shuffle(kinds)
    for kind in kinds:
        steps, reasons, notes = list(problem.steps), list(problem.reasons), list(problem.distractors)
        if kind == "distractor":
            (k, said), notes = notes[0], notes[1:]
            last = steps[-1][3]
            op = "-" if last > k and rng.random() < 0.5 else "+"
            steps.append((last, op, k, _apply(last, op, k)))
            reasons.append(f"With {said}:")
        else:
            i = rng.randrange(len(steps))
            a, op, b, c = steps[i]
            if kind == "operation":
                if op == "*":
                    continue
                op = "+" if op == "-" else "-"
                c = _apply(a, op, b)
            else:
                c += rng.choice((-10, -2, -1, 1, 2, 10))
            steps[i] = (a, op, b, c)
            for j in range(i + 1, len(steps)):  # each step starts from the one before
                _, op_j, b_j, _ = steps[j]
                steps[j] = (steps[j - 1][3], op_j, b_j, _apply(steps[j - 1][3], op_j, b_j))
        values = [v for a, _, b, c in steps for v in (a, b, c)]
        if steps[-1][3] != problem.answer and all(0 <= v <= MAX_SLIPPED_VALUE for v in values):
            slipped = Problem(problem.sentences, problem.question, steps, reasons, problem.equation, notes)
            return gold_rationale(slipped), steps[-1][3]
    return None


def teacher_training_texts(count: int, seed: int, error_rate: float, design: StoryDesign = StoryDesign()) -> list[str]:
    """``count`` prompt + completion texts of "train" questions for the built-in teacher (``qcrd_ray.toy``'s
    format); a share ``error_rate`` of them carries a slip (``slipped_rationale``) and the answer it leads to."""
    rng = random.Random(f"qcrd-stories-teacher/{seed}/{design}")
    texts = []
    while len(texts) < count:
        problem = random_problem(rng, design)
        question = " ".join([*problem.sentences, problem.question])
        if split_of(question) != "train":
            continue
        text, answer = gold_rationale(problem), problem.answer
        if rng.random() < error_rate:
            text, answer = slipped_rationale(problem, rng) or (text, answer)
        texts.append(prompt_text(question) + completion_text(text, str(answer)))
    return texts
