"""The arithmetic tasks: the built-in toy task ``arith`` and SVAMP."""

from __future__ import annotations

import math
import re

from qcrd_ray.arithmetic import evaluate_expression, numbers_equal
from qcrd_ray.tasks.base import (
    _EQUATION_TOKEN,
    _NUMBER,
    _RESULT,
    Exemplar,
    Task,
    _clean_number_text,
    _strip_period,
    canonical_number,
)


class ArithTask(Task):
    """The built-in toy task: word problems over small integers; labels are equations or numbers, by value."""

    name = "arith"

    def normalize(self, answer: str) -> str:
        cleaned = _strip_period(_clean_number_text(answer))
        try:
            return canonical_number(evaluate_expression(cleaned))
        except ValueError:
            return " ".join(cleaned.split()).lower()

    def check_label(self, label: str) -> str:
        try:
            evaluate_expression(_clean_number_text(label))
        except ValueError as err:
            raise ValueError(f"field 'label': {err}") from None
        return label

    def value(self, answer: str) -> float | None:
        """The number an answer evaluates to, or None when it does not."""
        try:
            return evaluate_expression(_strip_period(_clean_number_text(answer)))
        except ValueError:
            return None

    def is_correct(self, pred: str, gold: str) -> bool:
        """Numeric comparison; a side that does not evaluate is wrong (DSS: eval fails -> nan, never equal)."""
        pred_value, gold_value = self.value(pred), self.value(gold)
        return pred_value is not None and gold_value is not None and numbers_equal(pred_value, gold_value)

    def answer_from_rationale(self, text: str) -> str | None:
        """Its "the answer is N", else the result of its last computation ("... 7 - 2 = 5." answers 5)."""
        stated = super().answer_from_rationale(text)
        if stated is not None:
            return stated
        results = [float(r) for r in _RESULT.findall(text)]
        return canonical_number(results[-1]) if results and math.isfinite(results[-1]) else None

    def extract_answer(self, raw: str, question: str | None = None) -> str | None:
        # "7 - 2 = 5" answers 5; "5 apples" answers 5.
        tail = _clean_number_text(raw.rsplit("=", 1)[-1])
        try:
            return canonical_number(evaluate_expression(tail))
        except ValueError:
            number = _NUMBER.search(tail)
        try:
            return canonical_number(float(number.group(0))) if number else None
        except ValueError:  # an absurd number is an unparsed answer, not a crash
            return None


class SvampTask(ArithTask):
    """SVAMP: labels are equations such as ``( 84.0 / 2.0 )``, correct when they evaluate to the gold value."""

    name = "svamp"
    exemplars = (
        Exemplar(
            "There are 15 trees in the grove. Grove workers will plant trees in the grove today.\n"
            "After they are done, there will be 21 trees. How many trees did the grove workers plant today?",
            "There are 15 trees originally. Then there were 21 trees after some more were planted. "
            "So there must have been 21 - 15 = 6 trees planted.",
            "(21 - 15)",
        ),
        Exemplar(
            "Leah had 32 chocolates and her sister had 42.\nIf they ate 35, how many pieces do they have left in total?",
            "Originally, Leah had 32 chocolates and her sister had 42. So in total they had 32 + 42 = 74. "
            "After eating 35, they had 74 - 35 = 39.",
            "((32 + 42) - 35)",
        ),
        Exemplar(
            "Olivia has $23. She bought five bagels for $3 each.\nHow much money does she have left?",
            "Five bagels for 3 dollars each cost 5 * 3 = 15 dollars. Olivia had 23 dollars, so she has 23 - 15 = 8 "
            "dollars left.",
            "(23 - (5 * 3))",
        ),
    )

    def normalize(self, answer: str) -> str:
        """An equation in one spelling: ``(84/2.0)`` -> ``( 84 / 2 )``; a lone number -> its canonical form."""
        tokens = _EQUATION_TOKEN.findall(_strip_period(_clean_number_text(answer)))
        if len(tokens) == 1 and _NUMBER.fullmatch(tokens[0]):
            return canonical_number(float(tokens[0]))
        return " ".join(canonical_number(float(t)) if _NUMBER.fullmatch(t) else t.lower() for t in tokens)

    def extract_answer(self, raw: str, question: str | None = None) -> str | None:
        candidates = []
        group = re.search(r"\(.*\)", raw)  # DSS's rule: the parenthesised equation, greedy
        if group:
            candidates.append(group.group(0))
        candidates.append(raw.rsplit("=", 1)[-1])
        for candidate in candidates:
            if self.value(candidate) is not None:
                return self.normalize(candidate)
        if "(" in raw:  # an equation that does not evaluate is no answer, not its first number
            return None
        return super().extract_answer(raw, question)

    def parse_dss(self, text: str) -> tuple[str, str] | None:
        """DSS: cut at ``Q:``, split on ``The answer is``, label = the parenthesised equation."""
        head = text.split("Q:")[0].rstrip()
        if "The answer is" not in head:
            return None
        rationale, label = head.rsplit("The answer is", 1)
        equation = re.search(r"\(.*\)", label)
        if not rationale.strip() or equation is None:
            return None
        return rationale.strip(), equation.group(0)
