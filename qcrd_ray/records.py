"""The records that flow between the parts of a QCRD run.

An ``Example`` is one training question with its gold label and any number of sampled ``Rationale``s
(the teacher's K samples, gold rationales, student negatives). These are plain frozen dataclasses so they
pickle cheaply through Ray's object store and round-trip through the project's JSONL format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Source = Literal["teacher", "student", "gold"]
Group = tuple[str, Sequence[str], Sequence[str]]  # (question, positives, negatives): what the judge trains on


@dataclass(frozen=True)
class Rationale:
    """One explanation for a question and the answer it arrives at (None if no answer could be parsed)."""

    text: str
    answer: str | None
    source: Source = "teacher"


@dataclass(frozen=True)
class Example:
    """One question: model input text, gold label, and its rationales."""

    id: str
    input: str
    label: str
    rationales: tuple[Rationale, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Example:
        rationales = tuple(Rationale(**r) for r in row.get("rationales", ()))
        return cls(id=str(row["id"]), input=row["input"], label=str(row["label"]), rationales=rationales)


@dataclass(frozen=True)
class Vote:
    """Self-consistency over one question's samples.

    ``positives`` agree with the majority answer; ``negatives`` are the teacher's minority rationales;
    ``samples`` are the K samples as the teacher wrote them, in order (DSS trains on the first).
    ``majority`` is None when no majority could be formed (no parsed answer, or a tie dropped by policy).
    """

    example_id: str
    majority: str | None
    positives: tuple[Rationale, ...]
    negatives: tuple[Rationale, ...]
    num_samples: int
    num_parsed: int
    agreement: float  # fraction of the samples whose answer equals the majority
    majority_correct: bool | None  # majority == gold (None when no majority)
    samples: tuple[Rationale, ...] = ()
    fallback: bool = False  # the positive is voting.no_positive's gold fallback, not the teacher's majority


@dataclass(frozen=True)
class TrainItem:
    """What the student trains on for one question in one iteration.

    ``label`` feeds L_pred (``predict:`` path); positives and negatives feed L_cl (``explain:`` path), each
    rationale with the judge's score s in [0, 1]: a positive weighs s, a negative 1 - s. Without the judge
    the scores are 1 for positives and 0 for negatives, so that every term weighs 1.
    """

    id: str
    input: str
    label: str
    positives: tuple[str, ...]
    positive_scores: tuple[float, ...]
    negatives: tuple[str, ...] = ()
    negative_scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class FitResult:
    """One trained stage (an iteration of a method), as ``StreamingFit.train`` hands it back."""

    student_dir: str  # the stage's student, transformers format
    checkpoint: str  # its Ray Train checkpoint: the DeepSpeed state (weights, Adam's moments) a resume starts from
    metrics: dict[str, float]  # loss, loss_pred, the method's parts, steps, samples_per_s, seconds, ...


# MethodSummary's fields written to summary.json only when recorded (runs from before them have none).
OPTIONAL_PER_EXAMPLE = ("correct", "rationale_correct", "rationale_quality", "rationale_fully_correct")


@dataclass(frozen=True)
class MethodSummary:
    """A method's result on one seed: accuracy on the ``predict:`` path per iteration and, for a student that
    explains, the accuracy of the answers read from its own rationales; the last student's examples and dir."""

    accuracy_per_iteration: list[float]
    examples: list[dict[str, Any]]
    student_dir: str
    history: list[dict[str, Any]]  # every iteration's training figures and accuracies
    rationale_accuracy_per_iteration: list[float] | None = None
    # The last student's result on each evaluation example, in the split's order: the paired differences.
    correct: list[bool] | None = None
    rationale_correct: list[bool] | None = None
    # Its rationales graded exactly against the gold steps (built-in tasks): shares, and per example.
    rationale_quality: dict[str, float] | None = None
    rationale_fully_correct: list[bool] | None = None

    @property
    def final_accuracy(self) -> float:
        return self.accuracy_per_iteration[-1]

    def to_dict(self) -> dict[str, Any]:
        """The summary.json form the report reads."""
        rationale = {}
        if self.rationale_accuracy_per_iteration is not None:
            rationale = {
                "rationale_accuracy_per_iteration": self.rationale_accuracy_per_iteration,
                "final_rationale_accuracy": self.rationale_accuracy_per_iteration[-1],
            }
        return {
            **rationale,
            "accuracy_per_iteration": self.accuracy_per_iteration,
            "final_accuracy": self.final_accuracy,
            "examples": self.examples,
            "student_dir": self.student_dir,
            "history": self.history,
            **{key: value for key in OPTIONAL_PER_EXAMPLE if (value := getattr(self, key)) is not None},
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> MethodSummary:
        return cls(
            accuracy_per_iteration=row["accuracy_per_iteration"],
            examples=row["examples"],
            student_dir=row["student_dir"],
            history=row["history"],
            rationale_accuracy_per_iteration=row.get("rationale_accuracy_per_iteration"),
            **{key: row.get(key) for key in OPTIONAL_PER_EXAMPLE},
        )


@dataclass(frozen=True)
class SeedSummary:
    """One seed of a run, as the report reads it (``to_dict``: its summary.json entry)."""

    seed: int
    task: str
    student: str
    teacher: dict[str, Any]  # model, and the teacher phase's stats (accuracies, agreement, counts)
    methods: dict[str, MethodSummary]
    lead_metric: str
    majority_label: dict[str, Any]  # the floor: the most frequent training answer and its accuracy
    phase_seconds: dict[str, float]
    judge_scores: dict[str, list[float]]  # positives, student_negatives, teacher_negatives
    total_seconds: float

    def to_dict(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: asdict would copy every list
        row["methods"] = {name: m.to_dict() for name, m in self.methods.items()}
        return row
