"""Where the project's shipped pretrained student lives, and how ``student.model: builtin:arith-student`` resolves
to it.

A module of its own so that ``qcrd_ray.models`` (which resolves a student's name) and ``qcrd_ray.builtin_student``
(which builds the student, and decodes with ``models.generate``) both import it, and not each other.
"""

from __future__ import annotations

from pathlib import Path

VERSION = "v2"
NAME = "builtin:arith-student"
SHIPPED_DIR = Path(__file__).parent / "assets" / f"student-arith-{VERSION}"
DONE_MARKER = "build_info.json"


def resolve_student(name: str) -> str:
    """A student model name as transformers loads it: ``builtin:arith-student`` is the shipped build."""
    if name != NAME:
        return name
    if not (SHIPPED_DIR / DONE_MARKER).is_file():
        raise FileNotFoundError(f"{SHIPPED_DIR}: the built-in student is missing; run python -m jobs.build_student")
    return str(SHIPPED_DIR)
