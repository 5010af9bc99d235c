"""CommonsenseQA: multiple choice, answered by the choice's text."""

from __future__ import annotations

import re
from typing import Any

from qcrd_ray.tasks.base import Exemplar, Task, _strip_period


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
