"""Shared by the student-training tests: eight ragged items, a tiny-T5 config, a student built on them, and
ways to read a trained one back (``tests/test_student_train.py``, ``tests/test_streaming_fit.py``, ...)."""

from __future__ import annotations

from pathlib import Path

import torch

from qcrd_ray.config import Config
from qcrd_ray.methods import student_loss
from qcrd_ray.records import FitResult, TrainItem


def make_items() -> list[TrainItem]:
    """Eight arithmetic questions with ragged positives / negatives (one question has no positive)."""
    items = []
    for i, (a, b) in enumerate([(3, 4), (2, 5), (6, 1), (4, 4), (7, 2), (1, 8), (5, 3), (2, 2)]):
        good = [f"{a} plus {b} makes {a + b}", f"adding {b} to {a} gives {a + b}"][: 1 + i % 2]
        bad = [f"{a} plus {b} makes {a + b + 2}", f"{a} times {b} is {a * b}"][: i % 3]
        if i == 7:
            good = []
        items.append(
            TrainItem(
                id=f"q{i}",
                input=f"what is {a} plus {b}?",
                label=str(a + b),
                positives=tuple(good),
                positive_scores=tuple(0.9 - 0.2 * j for j in range(len(good))),
                negatives=tuple(bad),
                negative_scores=tuple(0.1 + 0.2 * j for j in range(len(bad))),
            )
        )
    return items


def make_cfg(**overrides) -> Config:
    base = {
        "run.name": "st",
        "student.model": None,
        "train.steps_per_iteration": 6,
        "train.batch_size": 4,
        "train.lr": 3e-3,
        "student.max_input_length": 32,
        "student.max_target_length": 24,
        "student.tiny.d_model": 32,
        "student.tiny.d_ff": 64,
        "student.tiny.num_layers": 1,
        "student.tiny.num_heads": 2,
    }
    return Config().replace({**base, **overrides})


def make_student(cfg: Config, items: list[TrainItem], path: Path, seed: int = 0) -> Path:
    from qcrd_ray.models import build_student, build_tokenizer, save_student
    from qcrd_ray.tasks import EXPLAIN, PREDICT

    texts = [PREDICT + it.input for it in items] + [EXPLAIN + it.input for it in items]
    texts += [it.label for it in items] + [t for it in items for t in (*it.positives, *it.negatives)]
    tokenizer = build_tokenizer(cfg.student, texts)
    save_student(build_student(cfg.student, tokenizer, seed=seed), tokenizer, path)
    return path


def weights(student_dir: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(student_dir) / "model.safetensors"))


def flat(result: FitResult) -> dict:
    """A stage's result as one mapping: its metrics, student_dir and checkpoint."""
    return {**result.metrics, "student_dir": result.student_dir, "checkpoint": result.checkpoint}


@torch.no_grad()
def dataset_loss(student_dir: str | Path, items: list[TrainItem], method: str, cfg: Config) -> float:
    from qcrd_ray.models import load_student

    model, tokenizer = load_student(student_dir)
    model.eval()
    return student_loss(model, tokenizer, items, method, cfg)[1]["loss"]


def fast_and_full(model, tokenizer, items, cfg):
    """QCRD's loss, its parts and its gradient, the fast way (``choose_first``) and through every rationale."""
    model.eval()  # no dropout: both ways see one network
    results = []
    for choose_first in (True, False):
        model.zero_grad(set_to_none=True)
        loss, parts = student_loss(model, tokenizer, items, "qcrd", cfg, choose_first=choose_first)
        loss.backward()
        results.append((loss.item(), parts, [p.grad.clone() for p in model.parameters()]))
    return results
