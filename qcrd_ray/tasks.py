"""The five tasks: how a dataset row becomes a model input, how answers are compared, prompted and parsed.

Every task speaks the same answer format: a rationale followed by ``So the answer is <answer>.``. The
student sees ``predict: <input>`` (target: the label) and ``explain: <input>`` (target: a rationale); the
teacher sees a few-shot chain-of-thought prompt (zero-shot for the built-in toy task ``arith``, whose tiny
teacher is trained on exactly that). ``parse_dss`` reads the DSS release's PaLM continuations by the rules
of its reference code (docs/METHOD.md section 8).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from qcrd_ray.arithmetic import evaluate_expression, numbers_equal
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

    def answer_key(self, answer: str) -> str:
        """What two answers must share to count as the same vote in self-consistency."""
        return self.normalize(answer)

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


class ArithTask(Task):
    """The built-in toy task: word problems over small integers; labels are numbers."""

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

    def answer_key(self, answer: str) -> str:
        # Different equations with the same value are the same answer, as in self-consistency's vote.
        value = self.value(answer)
        return self.normalize(answer) if value is None else canonical_number(value)

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


class CqaTask(Task):
    """CommonsenseQA (CoS-E v1.11): five answer choices; the label is the answer text."""

    name = "cqa"
    exemplars = (
        Exemplar(
            "What do people use to absorb extra ink from a fountain pen?\nAnswer Choices:\n(a) shirt pocket\n"
            "(b) calligrapher's hand\n(c) inkwell\n(d) desk drawer\n(e) blotter",
            "The answer must be an item that can absorb ink. Of the above choices, only blotters are used to "
            "absorb ink.",
            "(e) blotter",
        ),
        Exemplar(
            "What home entertainment equipment requires cable?\nAnswer Choices:\n(a) radio shack\n(b) substation\n"
            "(c) television\n(d) cabinet\n(e) desk",
            "The answer must require cable. Of the above choices, only television requires cable.",
            "(c) television",
        ),
        Exemplar(
            "Sammy wanted to go to where the people were. Where might he go?\nAnswer Choices:\n"
            "(a) race track\n(b) populated areas\n(c) the desert\n(d) apartment\n(e) roadblock",
            "The answer must be a place with a lot of people. Of the above choices, only populated areas have a "
            "lot of people.",
            "(b) populated areas",
        ),
    )

    def format_input(self, row: dict[str, Any]) -> str:
        choices = row["choices"]
        if not isinstance(choices, list) or not 1 <= len(choices) <= 26:
            raise ValueError(f"field 'choices': expected a list of 1 to 26 answer texts, got {choices!r}")
        lines = [f"({chr(ord('a') + i)}) {choice}" for i, choice in enumerate(choices)]
        return f"{row['question']}\nAnswer Choices:\n" + "\n".join(lines)

    def gold_label(self, row: dict[str, Any]) -> str:
        return self.check_label(str(row["answer"]).strip())

    def extract_answer(self, raw: str, question: str | None = None) -> str | None:
        parts = re.split(r"\(([a-zA-Z])\)", raw, maxsplit=1)
        if len(parts) == 1:
            return super().extract_answer(raw)
        letter, text = parts[1].lower(), re.split(r"\([a-zA-Z]\)", parts[2])[0]
        if text.strip():
            return super().extract_answer(text)
        if question is not None:  # a bare "(b)": look the text up among the question's choices
            choice = re.search(rf"^\({letter}\) (.+)$", question, re.MULTILINE)
            if choice:
                return super().extract_answer(choice.group(1))
        return None

    def parse_dss(self, text: str) -> tuple[str, str] | None:
        """DSS: cut at ``Q:``, split on ``So the answer is``, label = text after ``(x)``, strip the final period."""
        head = text.split("Q:")[0].rstrip()
        if "So the answer is" not in head:
            return None
        rationale, label = head.rsplit("So the answer is", 1)
        parts = re.split(r"\(.\)", label)
        if len(parts) < 2:
            return None
        label = _strip_period(parts[1])
        return (rationale.strip(), label) if rationale.strip() and label else None


class NliTask(Task):
    """Natural language inference: input = premise </s> hypothesis; labels entailment / neutral / contradiction."""

    labels = NLI_LABELS

    def format_input(self, row: dict[str, Any]) -> str:
        return f"{row['premise']}{NLI_SEPARATOR}{row['hypothesis']}"

    def gold_label(self, row: dict[str, Any]) -> str:
        label = row["label"]
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(NLI_LABELS):
            return NLI_LABELS[label]
        return self.check_label(label)

    def check_label(self, label: str) -> str:
        if not isinstance(label, str) or label not in NLI_LABELS:
            raise ValueError(f"field 'label': expected 0, 1, 2 or one of {', '.join(NLI_LABELS)}, got {label!r}")
        return label

    def teacher_question(self, question: str) -> str:
        premise, sep, hypothesis = question.partition(NLI_SEPARATOR)
        if not sep:
            return question
        return (
            f"Premise: {premise}\nHypothesis: {hypothesis}\n"
            "Does the premise entail the hypothesis, contradict it, or neither (entailment, contradiction or neutral)?"
        )


class AnliTask(NliTask):
    """Adversarial NLI, round 1."""

    name = "anli1"
    exemplars = (
        Exemplar(
            "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named "
            "after the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889."
            f"{NLI_SEPARATOR}The Eiffel Tower was completed in the 19th century.",
            "The premise says the tower was built from 1887 to 1889, and 1889 is in the 19th century.",
            "entailment",
        ),
        Exemplar(
            "Lake Baikal is a rift lake in Siberia, Russia. With a maximum depth of 1,642 metres it is the deepest "
            f"lake in the world.{NLI_SEPARATOR}Lake Baikal is located in Canada.",
            "The premise places Lake Baikal in Siberia, Russia, which is not in Canada.",
            "contradiction",
        ),
        Exemplar(
            "Marie Curie was a Polish and naturalised-French physicist and chemist who conducted pioneering "
            f"research on radioactivity.{NLI_SEPARATOR}Marie Curie enjoyed playing the piano.",
            "The premise describes her work in physics and chemistry but says nothing about music, so it neither "
            "supports nor rules out the hypothesis.",
            "neutral",
        ),
    )

    def parse_dss(self, text: str) -> tuple[str, str] | None:
        """DSS: cut at ``Premise:``, split on ``So the answer is``, drop the final period."""
        head = text.split("Premise:")[0].rstrip()
        if "So the answer is" not in head:
            return None
        rationale, label = head.rsplit("So the answer is", 1)
        label = _strip_period(label)
        return (rationale.strip(), label) if rationale.strip() and label else None


class EsnliTask(NliTask):
    """e-SNLI: SNLI with human explanations."""

    name = "esnli"
    exemplars = (
        Exemplar(
            f"A man in a red jacket is riding a bicycle down a busy street.{NLI_SEPARATOR}A person is riding a bike.",
            "A man is a person and a bicycle is a bike.",
            "entailment",
        ),
        Exemplar(
            f"Two children are playing soccer in a park.{NLI_SEPARATOR}The children are asleep in their beds.",
            "Children cannot play soccer in a park while they are asleep in their beds.",
            "contradiction",
        ),
        Exemplar(
            f"A woman is reading a book on a bench.{NLI_SEPARATOR}The woman is waiting for her friend.",
            "Reading a book on a bench does not tell whether the woman is waiting for anyone.",
            "neutral",
        ),
    )

    def parse_dss(self, text: str) -> tuple[str, str] | None:
        """DSS: rationale = text before ``Answer:``; label = text after ``Answer: `` up to ``Premise``."""
        if "Answer: " not in text:
            return None
        rationale = text.split("Answer:")[0].strip()
        label = text.split("Answer: ")[1].split("Premise")[0].strip()
        return (rationale, label) if rationale and label else None


TASKS: dict[str, Task] = {task.name: task for task in (ArithTask(), SvampTask(), CqaTask(), AnliTask(), EsnliTask())}


def get_task(name: str) -> Task:
    """The task called ``name`` (one of arith, svamp, cqa, anli1, esnli)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]
