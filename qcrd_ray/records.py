"""The records that flow between the parts of a QCRD run.

An ``Example`` is one training question with its gold label and any number of sampled ``Rationale``s
(the teacher's K samples, gold rationales, student negatives). These are plain frozen dataclasses so they
pickle cheaply through Ray's object store and round-trip through the project's JSONL format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Source = Literal["teacher", "student", "gold"]


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
