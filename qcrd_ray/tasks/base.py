"""The tasks' shared pieces: the input prefixes, the answer regexes, number helpers and the ``Task`` base class."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from qcrd_ray.records import Rationale

PREDICT = "predict: "
EXPLAIN = "explain: "
NLI_LABELS = ("entailment", "neutral", "contradiction")  # DSS's mapping of the integer labels 0, 1, 2
NLI_SEPARATOR = " </s> "

# "So the answer is" or "The answer is", any case; the LAST one in a completion carries the answer.
_RESULT = re.compile(r"=\s*(-?\d+(?:\.\d+)?)")  # the result of a computation "a op b = c"
_ANSWER_MARKER = re.compile(r"\b(?:so\s+)?the\s+answer\s+is\b", re.IGNORECASE)
# A teacher that runs on writes the next few-shot question; "FAQ:" and the like are not a new question.
_NEXT_QUESTION = re.compile(r"(?<![A-Za-z])Q:")
_NUMBER = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_EQUATION_TOKEN = re.compile(r"\d+\.\d*|\.\d+|\d+|[-+*/()]|[^\s\d\-+*/()]+")


@dataclass(frozen=True)
class Exemplar:
    """One few-shot example: the question as the model input, and the completion's rationale and answer."""

    question: str
    rationale: str
    answer: str

    def completion(self) -> str:
        return f" {self.rationale} So the answer is {self.answer}."


def canonical_number(value: float) -> str:
    """``5.0`` -> ``"5"``, ``0.1 + 0.2`` -> ``"0.3"``: one spelling per value (10 significant digits).

    A value that is not finite (a 400-digit number overflows a float) is no answer: ValueError."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def _strip_period(text: str) -> str:
    text = text.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def _clean_number_text(text: str) -> str:
    """Drop what writers put around numbers but an evaluator cannot read: ``$``, thousands commas."""
    return _THOUSANDS.sub("", text.replace("$", "")).strip()


class Task:
    """A dataset's formats and answer rules; subclasses override what differs."""

    name = ""
    exemplars: tuple[Exemplar, ...] = ()  # none: zero-shot

    def format_input(self, row: dict[str, Any]) -> str:
        """The model input for a gold row of the dataset (raises KeyError naming a missing field)."""
        return str(row["input"]).strip()

    def gold_label(self, row: dict[str, Any]) -> str:
        return self.check_label(str(row["label"]).strip())

    def check_label(self, label: str) -> str:
        """``label`` when it is a valid gold label of this task; ValueError naming the field otherwise."""
        if not label.strip():
            raise ValueError("field 'label': expected a non-empty answer")
        return label

    def normalize(self, answer: str) -> str:
        """Text answers: stripped, lower case, single spaces, no final period."""
        return _strip_period(" ".join(answer.split()).lower())

    def is_correct(self, pred: str, gold: str) -> bool:
        return self.normalize(pred) == self.normalize(gold)

    def teacher_question(self, question: str) -> str:
        """How a model input is shown to the teacher (NLI tasks spell out premise and hypothesis)."""
        return question

    def prompt(self, question: str) -> str:
        """The teacher prompt: few-shot exemplars, then ``Q: <question>\\nA:``."""
        shots = "".join(f"Q: {self.teacher_question(ex.question)}\nA:{ex.completion()}\n\n" for ex in self.exemplars)
        return f"{shots}Q: {self.teacher_question(question)}\nA:"

    def parse_output(self, text: str, question: str | None = None) -> Rationale:
        """A teacher continuation -> Rationale(text, answer or None); ``question`` lets CQA map a bare ``(b)``."""
        match = _NEXT_QUESTION.search(text)
        body = text[: match.start()] if match else text
        markers = list(_ANSWER_MARKER.finditer(body))
        if not markers:
            return Rationale(text=body.strip(), answer=None, source="teacher")
        last = markers[-1]
        rationale = body[: last.start()].strip().rstrip(",").rstrip()
        lines = body[last.end() :].lstrip(" :\t\r\n").splitlines()
        raw = _strip_period(lines[0]) if lines else ""
        answer = self.extract_answer(raw, question) if raw else None
        return Rationale(text=rationale, answer=answer, source="teacher")

    def extract_answer(self, raw: str, question: str | None = None) -> str | None:
        """The normalized answer in the text after "the answer is" (None when there is none)."""
        return self.normalize(raw) or None

    def answer_from_rationale(self, text: str) -> str | None:
        """The answer a student's own rationale reaches (its "the answer is ..."), or None."""
        return self.parse_output(text).answer

    def parse_dss(self, text: str) -> tuple[str, str] | None:
        """A continuation in this project's own format (the toy task has no DSS release) -> (rationale, label)."""
        parsed = self.parse_output(text)
        return (parsed.text, parsed.answer) if parsed.text and parsed.answer else None
