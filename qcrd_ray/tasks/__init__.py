"""The five tasks: how a dataset row becomes a model input, how answers are compared, prompted and parsed.

Every task speaks the same answer format: a rationale followed by ``So the answer is <answer>.``. The
student sees ``predict: <input>`` (target: the label) and ``explain: <input>`` (target: a rationale); the
teacher sees a few-shot chain-of-thought prompt (zero-shot for the built-in toy task ``arith``, whose tiny
teacher is trained on exactly that). ``parse_dss`` reads the DSS release's PaLM continuations by the rules
of its reference code (docs/METHOD.md section 8).
"""

from __future__ import annotations

from qcrd_ray.tasks.arith import ArithTask, SvampTask
from qcrd_ray.tasks.base import EXPLAIN, NLI_LABELS, NLI_SEPARATOR, PREDICT, Exemplar, Task, canonical_number
from qcrd_ray.tasks.cqa import CqaTask
from qcrd_ray.tasks.nli import AnliTask, EsnliTask, NliTask

__all__ = [
    "EXPLAIN",
    "NLI_LABELS",
    "NLI_SEPARATOR",
    "PREDICT",
    "TASKS",
    "AnliTask",
    "ArithTask",
    "CqaTask",
    "EsnliTask",
    "Exemplar",
    "NliTask",
    "SvampTask",
    "Task",
    "canonical_number",
    "get_task",
]

TASKS: dict[str, Task] = {task.name: task for task in (ArithTask(), SvampTask(), CqaTask(), AnliTask(), EsnliTask())}


def get_task(name: str) -> Task:
    """The task called ``name`` (one of arith, svamp, cqa, anli1, esnli)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]
