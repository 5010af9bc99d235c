"""Label accuracy as the DSS code computes it (exact match after normalizing, SVAMP equations by value), and
the evaluation of a student: greedy labels on the ``predict:`` path, a few ``explain:`` rationales for the report."""

from __future__ import annotations

from collections import Counter

from qcrd_ray.config import EvalConfig
from qcrd_ray.records import Example
from qcrd_ray.tasks import EXPLAIN, PREDICT, Task, get_task


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


def majority_label_baseline(task: Task | str, train_labels: list[str], eval_labels: list[str]) -> dict:
    """The floor every student must clear: always answer the training set's most frequent label.

    Returns {"label", "accuracy"}; ties go to the label seen first in ``train_labels``.
    """
    if not train_labels:
        raise ValueError("the majority-label baseline needs at least one training label")
    label = Counter(train_labels).most_common(1)[0][0]
    return {"label": label, "accuracy": accuracy(task, [label] * len(eval_labels), eval_labels)}


def evaluate_student(model, tokenizer, examples: list[Example], task_name: str, cfg: EvalConfig) -> dict:
    """Greedy-decode labels for ``examples`` and score them; also decode a few rationales for the report.

    Returns {"accuracy", "predictions", "examples": [{"input", "label", "prediction", "rationale"}]}.
    """
    from qcrd_ray.models import generate, is_seq2seq
    from qcrd_ray.scoring import causal_prompt

    task = get_task(task_name)
    wrap = (lambda text: text) if is_seq2seq(model) else causal_prompt

    def decode(prefix: str, batch: list[Example], tokens: int) -> list[str]:
        prompts = [wrap(prefix + ex.input) for ex in batch]
        outs = generate(model, tokenizer, prompts, max_new_tokens=tokens, batch_size=cfg.batch_size)
        return [o[0].strip() for o in outs]

    predictions = decode(PREDICT, examples, cfg.max_new_tokens)
    shown = examples[: cfg.num_examples_in_report]
    rationales = decode(EXPLAIN, shown, cfg.rationale_max_new_tokens)
    return {
        "accuracy": accuracy(task, predictions, [ex.label for ex in examples]),
        "predictions": predictions,
        "examples": [
            {"input": ex.input, "label": ex.label, "prediction": pred, "rationale": rat}
            for ex, pred, rat in zip(shown, predictions[: len(shown)], rationales, strict=True)
        ],
    }
