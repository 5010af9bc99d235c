"""Label accuracy as the DSS code computes it (exact match after normalizing, SVAMP equations by value), and
the evaluation of a student both ways (docs/METHOD.md section 9): greedy labels on the ``predict:`` path, and
the answer read from its own greedy ``explain:`` rationale."""

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


def evaluate_student(
    model, tokenizer, examples: list[Example], task_name: str, cfg: EvalConfig, explains: bool, max_input_length: int
) -> dict:
    """Greedy-decode the labels of ``examples`` (the ``predict:`` path) and score them; for a student that
    ``explains`` (DSS, QCRD), also its greedy ``explain:`` rationale of each, and the answer read from it.
    Inputs longer than ``max_input_length`` tokens (``student.max_input_length``) are truncated.

    Returns {"accuracy" (predict path), "rationale_accuracy" (None unless ``explains``), "predictions",
    "examples": [{"input", "label", "prediction", "rationale", "rationale_answer"}]} (the first
    ``cfg.num_examples_in_report``).
    """
    from qcrd_ray.models import generate, is_seq2seq
    from qcrd_ray.scoring import causal_prompt

    task = get_task(task_name)
    wrap = (lambda text: text) if is_seq2seq(model) else causal_prompt

    def decode(prefix: str, batch: list[Example], tokens: int) -> list[str]:
        prompts = [wrap(prefix + ex.input) for ex in batch]
        outs = generate(model, tokenizer, prompts, max_new_tokens=tokens, batch_size=cfg.batch_size,
                        max_input_length=max_input_length)  # fmt: skip
        return [o[0].strip() for o in outs]

    labels = [ex.label for ex in examples]
    predictions = decode(PREDICT, examples, cfg.max_new_tokens)
    shown = len(examples) if explains else cfg.num_examples_in_report
    rationales = decode(EXPLAIN, examples[:shown], cfg.rationale_max_new_tokens)
    answers = [task.answer_from_rationale(r) for r in rationales]
    return {
        "accuracy": accuracy(task, predictions, labels),
        "rationale_accuracy": accuracy(task, [a or "" for a in answers], labels) if explains else None,
        "predictions": predictions,
        "examples": [
            {"input": ex.input, "label": ex.label, "prediction": pred, "rationale": rat, "rationale_answer": ans}
            for ex, pred, rat, ans in zip(examples, predictions, rationales, answers, strict=False)
        ][: cfg.num_examples_in_report],
    }
