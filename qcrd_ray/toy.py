"""The built-in toy reasoning task: multi-step arithmetic word problems with step-by-step rationales.

Each question tells a short story about one person's pile of objects, changed by 2-4 operations (buy, give
away, double ...). The gold rationale repeats each step with its computation, one sentence per step::

    Q: Tom has 3 apples. He buys 4 more. He gives 2 to Mia. How many apples does Tom have?
    A: Tom has 3 apples. He buys 4 more: 3 + 4 = 7. He gives 2 to Mia: 7 - 2 = 5. So the answer is 5.

A question's label is its computation as one expression, "3 + 4 - 2" (parenthesised where a doubling follows:
"(3 + 4) * 2"), as SVAMP's labels are equations: the ``predict:`` path maps the story onto the equation, and
the task's parser evaluates it; the gold rationale's answer is the number. A label that is the bare number
would ask the predict path to do the whole 2-4 step computation in one shot, which no method trains.

Every intermediate stays within 1..99 so a tiny model can learn the arithmetic. Splits are disjoint by
construction: a question belongs to the split its text hashes to, whatever the seed, so no seed of "train"
(the distillation set, the teacher's own training set) can ever produce a validation or test question.
``teacher_training_text`` renders the teacher's training text with deliberate slips, so the built-in teacher
is right often but not always, and its mistakes differ between samples (what self-consistency exploits).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from qcrd_ray.records import Example, Rationale

SPLITS = ("train", "validation", "test")
# Share of the question space (by hash of the question text) each split draws from, in percent.
_SPLIT_BUCKETS = {"train": range(0, 80), "validation": range(80, 90), "test": range(90, 100)}
MAX_VALUE = 99

_PEOPLE = (
    ("Tom", "He"),
    ("Mia", "She"),
    ("Sam", "He"),
    ("Ana", "She"),
    ("Leo", "He"),
    ("Zoe", "She"),
    ("Max", "He"),
    ("Eva", "She"),
    ("Ben", "He"),
    ("Lily", "She"),
    ("Omar", "He"),
    ("Nora", "She"),
    ("Jack", "He"),
    ("Ruby", "She"),
    ("Ivan", "He"),
    ("Emma", "She"),
)
_OBJECTS = (
    "apples",
    "marbles",
    "stickers",
    "cookies",
    "books",
    "pencils",
    "coins",
    "cards",
    "shells",
    "stamps",
    "eggs",
    "toys",
    "candies",
    "flowers",
)
# Story sentences per operation; {p} pronoun, {k} amount, {o} another person, {obj} the objects.
_ADD = ("{p} buys {k} more", "{p} finds {k} more", "{o} gives {p_obj} {k} more")
_SUB = ("{p} gives {k} to {o}", "{p} loses {k}", "{p} sells {k}")
_OBJECT_PRONOUN = {"He": "him", "She": "her"}
_MUL = {2: "The pile doubles", 3: "The pile triples"}
MAX_AMOUNT = 9  # amounts added or taken away: one digit, so each step is a sum with at most one carry
MAX_MUL_BASE = 20  # only small piles double or triple

_COMPUTATION = re.compile(r"(\d+) ([-+*]) (\d+) = (-?\d+)")
_ANSWER = re.compile(r"So the answer is (-?\d+)")


@dataclass(frozen=True)
class _Step:
    sentence: str  # the story sentence, without its final period
    op: str  # "+", "-" or "*"
    amount: int


def _apply(value: int, op: str, amount: int) -> int:
    if op == "+":
        return value + amount
    if op == "-":
        return value - amount
    if op == "*":
        return value * amount
    raise ValueError(f"toy.py: unknown operation {op!r}")


def split_of(question: str) -> str:
    """The split a question text belongs to (a stable hash of the text, independent of any seed)."""
    bucket = int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16) % 100
    return next(name for name, buckets in _SPLIT_BUCKETS.items() if bucket in buckets)


def prompt_text(question: str) -> str:
    """What the teacher is prompted with (the ``arith`` task's prompt)."""
    return f"Q: {question}\nA:"


def completion_text(rationale: str, answer: str) -> str:
    """What the teacher is trained to write after the prompt (followed by its EOS token)."""
    return f" {rationale} So the answer is {answer}."


def parse_answer(completion: str) -> str | None:
    """The first ``So the answer is N`` in a completion, as a canonical integer string, or None."""
    match = _ANSWER.search(completion)
    return str(int(match.group(1))) if match else None


def computations(rationale: str) -> list[tuple[int, str, int, int]]:
    """Every ``a op b = c`` in a rationale, in order, as ``(a, op, b, c)``."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in _COMPUTATION.findall(rationale)]


def equation(start: int, steps: list[tuple[str, int]]) -> str:
    """The chain ``start``, then each (op, amount) in turn, as one expression: (9, [+ 2, * 3]) -> "(9 + 2) * 3"."""
    text = str(start)
    for op, amount in steps:
        if op == "*" and (" + " in text or " - " in text):
            text = f"({text})"
        text = f"{text} {op} {amount}"
    return text


def _random_problem(rng: random.Random) -> tuple[str, str, str, int]:
    """One random problem: (question, gold rationale, its equation, answer)."""
    name, pronoun = rng.choice(_PEOPLE)
    other = rng.choice([p for p, _ in _PEOPLE if p != name])
    obj = rng.choice(_OBJECTS)
    start = value = rng.randint(2, 20)
    opening = f"{name} has {value} {obj}."
    steps: list[_Step] = []
    used_mul = False
    for _ in range(rng.randint(2, 4)):
        choices = [op for op, ok in (("+", value < MAX_VALUE), ("-", value > 1)) if ok]
        if not used_mul and value <= MAX_MUL_BASE:
            choices.append("*")
        op = rng.choice(choices)
        if op == "+":
            amount = rng.randint(1, min(MAX_AMOUNT, MAX_VALUE - value))
            template = rng.choice(_ADD)
        elif op == "-":
            amount = rng.randint(1, min(MAX_AMOUNT, value - 1))
            template = rng.choice(_SUB)
        else:
            amount = rng.choice([k for k in _MUL if value * k <= MAX_VALUE])
            template = _MUL[amount]
            used_mul = True
        sentence = template.format(p=pronoun, p_obj=_OBJECT_PRONOUN[pronoun], k=amount, o=other, obj=obj)
        steps.append(_Step(sentence, op, amount))
        value = _apply(value, op, amount)
    question = " ".join([opening, *(s.sentence + "." for s in steps), f"How many {obj} does {name} have?"])
    rationale = _render(opening, steps, start)
    return question, rationale, equation(start, [(s.op, s.amount) for s in steps]), value


def _render(opening: str, steps: list[_Step], start: int) -> str:
    parts, value = [opening], start
    for step in steps:
        result = _apply(value, step.op, step.amount)
        parts.append(f"{step.sentence}: {value} {step.op} {step.amount} = {result}.")
        value = result
    return " ".join(parts)


def generate_split(split: str, size: int, seed: int = 0) -> list[Example]:
    """``size`` distinct problems of ``split``, deterministic in ``(split, seed)``, each labelled with its equation
    and with a gold rationale whose answer is the number."""
    if split not in SPLITS:
        raise ValueError(f"toy.py: split must be one of {SPLITS}, got {split!r}")
    if size < 0:
        raise ValueError(f"toy.py: size must be >= 0, got {size}")
    rng = random.Random(f"qcrd-toy-arith/{split}/{seed}")
    examples: list[Example] = []
    seen: set[str] = set()
    attempts = 0
    while len(examples) < size:
        attempts += 1
        if attempts > 50 * size + 1000:
            raise RuntimeError(f"toy.py: could not draw {size} distinct {split!r} questions")
        question, rationale, label, answer = _random_problem(rng)
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        gold = Rationale(text=rationale, answer=str(answer), source="gold")
        examples.append(
            Example(id=f"arith-{split}-{seed}-{len(examples)}", input=question, label=label, rationales=(gold,))
        )
    return examples


def slipped_rationale(rationale: str, rng: random.Random) -> tuple[str, str]:
    """A copy of a gold rationale with one deliberate slip that propagates: ``(text, its final answer)``.

    The slip is a wrong intermediate result (off by 1, 2 or 10) or a wrong operation (the computation
    uses another of +, -, * on the right numbers); later steps compute correctly from the slipped value.
    The final answer always differs from the gold one and every value stays within 0..99.
    """
    steps = computations(rationale)
    if not steps:
        raise ValueError(f"toy.py: no computation to slip in rationale {rationale!r}")
    gold_answer = steps[-1][3]
    candidates = []
    for i, (a, op, b, c) in enumerate(steps):
        for delta in (-10, -2, -1, 1, 2, 10):
            candidates.append((i, op, c + delta))
        for wrong_op in "+-*":
            if wrong_op != op and (wrong_op != "*" or b <= 3):
                candidates.append((i, wrong_op, _apply(a, wrong_op, b)))
    rng.shuffle(candidates)
    for i, slip_op, slip_value in candidates:
        chain = _rechain(steps, i, slip_op, slip_value)
        if chain is not None and chain[-1][3] != gold_answer:
            return _substitute(rationale, chain), str(chain[-1][3])
    raise ValueError(f"toy.py: no slip keeps every value in 0..{MAX_VALUE} for {rationale!r}")


def _rechain(steps, i: int, slip_op: str, slip_value: int) -> list[tuple[int, str, int, int]] | None:
    """The computations after slipping step ``i``; None if a value leaves 0..MAX_VALUE."""
    chain = list(steps[:i])
    a, _, b, _ = steps[i]
    chain.append((a, slip_op, b, slip_value))
    value = slip_value
    for _, op, amount, _ in steps[i + 1 :]:
        result = _apply(value, op, amount)
        chain.append((value, op, amount, result))
        value = result
    if any(not 0 <= v <= MAX_VALUE for a, _, _, c in chain for v in (a, c)):
        return None
    return chain


def _substitute(rationale: str, chain: list[tuple[int, str, int, int]]) -> str:
    it = iter(chain)
    return _COMPUTATION.sub(lambda _: "{} {} {} = {}".format(*next(it)), rationale)


def gold_rationale(example: Example) -> Rationale:
    """``example``'s gold rationale; its ``answer`` is the number (the label is the equation)."""
    gold = next((r for r in example.rationales if r.source == "gold"), None)
    if gold is None:
        raise ValueError(f"toy.py: example {example.id} has no gold rationale")
    return gold


def teacher_training_text(example: Example, rng: random.Random, error_rate: float) -> str:
    """Prompt + completion for the teacher's training set; with probability ``error_rate`` the rationale
    carries a slip and the answer follows the slip (the teacher's data is deliberately imperfect).

    The text ends with the answer's period; the builder appends the EOS token.
    """
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"toy.py: error_rate must be in [0, 1], got {error_rate}")
    gold = gold_rationale(example)
    text, answer = gold.text, gold.answer
    if rng.random() < error_rate:
        text, answer = slipped_rationale(text, rng)
    return prompt_text(example.input) + completion_text(text, answer)
