"""The natural language inference tasks: ANLI round 1 and e-SNLI."""

from __future__ import annotations

from typing import Any

from qcrd_ray.tasks.base import NLI_LABELS, NLI_SEPARATOR, Exemplar, Task, _strip_period


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
