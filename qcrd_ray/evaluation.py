"""Label accuracy as the DSS code computes it: exact match after normalizing, SVAMP equations by value."""

from __future__ import annotations

from qcrd_ray.tasks import Task, get_task


def per_example_correct(task: Task | str, predictions: list[str], labels: list[str]) -> list[bool]:
    """One bool per (prediction, gold label) pair, by ``task.is_correct``."""
    task = get_task(task) if isinstance(task, str) else task
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels: they must pair up one to one")
    return [task.is_correct(pred, gold) for pred, gold in zip(predictions, labels, strict=True)]


def accuracy(task: Task | str, predictions: list[str], labels: list[str]) -> float:
    """Fraction of predictions that match their gold label (a float in [0, 1])."""
    if not labels:
        raise ValueError("accuracy of an empty evaluation set is undefined: no labels were given")
    correct = per_example_correct(task, predictions, labels)
    return sum(correct) / len(correct)
