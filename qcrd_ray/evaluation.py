"""Label accuracy as the DSS code computes it (exact match after normalizing, SVAMP equations by value), and
the evaluation of a student both ways (docs/METHOD.md section 9): greedy labels on the ``predict:`` path, and
the answer read from its own greedy ``explain:`` rationale."""

from __future__ import annotations

from collections import Counter

from qcrd_ray.config import EvalConfig
from qcrd_ray.models import generate
from qcrd_ray.rationale_check import grade_rationales, grade_shares
from qcrd_ray.records import Example
from qcrd_ray.scoring import causal_prompt, is_seq2seq
from qcrd_ray.sharding import chunk_bounds
from qcrd_ray.tasks import EXPLAIN, PREDICT, Task, get_task

PREDICTIONS_FILE = "predictions.jsonl"  # a method's final answers and rationales, in its run directory


def per_example_correct(task: Task | str, predictions: list[str], labels: list[str]) -> list[bool]:
    """One bool per (prediction, gold label) pair, by ``task.is_correct``."""
    task = get_task(task) if isinstance(task, str) else task
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels: they must pair up one to one")
    return [task.is_correct(pred, gold) for pred, gold in zip(predictions, labels, strict=True)]


def accuracy(task: Task | str, predictions: list[str], labels: list[str]) -> float:
    """Fraction of predictions that match their gold label (a float in [0, 1])."""
    return share(per_example_correct(task, predictions, labels))


def share(correct: list[bool]) -> float:
    """The fraction of ``correct`` that is True."""
    if not correct:
        raise ValueError("accuracy of an empty evaluation set is undefined: no labels were given")
    return sum(correct) / len(correct)


def majority_label_baseline(task: Task | str, train_labels: list[str], eval_labels: list[str]) -> dict:
    """The floor every student must clear: always answer the training set's most frequent label.

    Labels count by their normalized value (SVAMP's and arith's equations by what they evaluate to), so
    "(2 + 3) * 2" and "7 + 3" are one answer, 10. Returns {"label" (normalized), "accuracy"}; ties go to the
    value seen first in ``train_labels``.
    """
    if not train_labels:
        raise ValueError("the majority-label baseline needs at least one training label")
    task = get_task(task) if isinstance(task, str) else task
    label = Counter(task.normalize(label) for label in train_labels).most_common(1)[0][0]
    return {"label": label, "accuracy": accuracy(task, [label] * len(eval_labels), eval_labels)}


def evaluate_student(
    model, tokenizer, examples: list[Example], task_name: str, cfg: EvalConfig, *, explains: bool, max_input_length: int
) -> dict:
    """Greedy-decode the labels of ``examples`` (the ``predict:`` path) and score them; for a student that
    ``explains`` (DSS, QCRD), also its greedy ``explain:`` rationale of each, and the answer read from it.
    Inputs longer than ``max_input_length`` tokens (``student.max_input_length``) are truncated.

    Returns {"accuracy" (predict path), "rationale_accuracy" (None unless ``explains``), "correct" and
    "rationale_correct" (per example; None unless ``explains``), "predictions",
    "examples": [{"input", "label", "prediction", "rationale", "rationale_answer"}]} (the first
    ``cfg.num_examples_in_report``).

    It decodes the chunks of ``evaluation_chunks`` one after the other, as a pool of student samplers does
    them side by side, so both give the same result to the last bit (a batch's padding can move a float).
    """
    parts = [
        decode_evaluation(
            model, tokenizer, examples[start:stop], cfg, max_input_length=max_input_length, explained=explained
        )
        for start, stop, explained in evaluation_chunks(len(examples), cfg, explains)
    ]
    return merge_evaluations(parts, examples, task_name, explains, cfg.num_examples_in_report)


def evaluation_chunks(num_examples: int, cfg: EvalConfig, explains: bool) -> list[tuple[int, int, int]]:
    """An evaluation cut into chunks of ``cfg.batch_size`` examples: (start, stop, explained) per chunk, where
    ``explained`` is how many of the chunk's first examples also get their rationale decoded: all of them for a
    student that ``explains``, none for one that never learnt the ``explain:`` path (fine-tuning)."""
    return [
        (start, stop, stop - start if explains else 0) for start, stop in chunk_bounds(num_examples, cfg.batch_size)
    ]


def decode_evaluation(
    model, tokenizer, examples: list[Example], cfg: EvalConfig, *, max_input_length: int, explained: int
) -> dict[str, list[str]]:
    """The greedy decodes behind an evaluation: {"predictions": the ``predict:`` label of every example,
    "rationales": the ``explain:`` rationale of the first ``explained``}. Nothing is scored here."""
    wrap = (lambda text: text) if is_seq2seq(model) else causal_prompt

    def decode(prefix: str, batch: list[Example], tokens: int) -> list[str]:
        if not batch:
            return []
        prompts = [wrap(prefix + ex.input) for ex in batch]
        outs = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=tokens,
            batch_size=cfg.batch_size,
            max_input_length=max_input_length,
        )
        return [o[0].strip() for o in outs]

    return {
        "predictions": decode(PREDICT, examples, cfg.max_new_tokens),
        "rationales": decode(EXPLAIN, examples[:explained], cfg.rationale_max_new_tokens),
    }


def merge_evaluations(
    parts: list[dict[str, list[str]]],
    examples: list[Example],
    task_name: str,
    explains: bool,
    num_examples_in_report: int,
) -> dict:
    """``decode_evaluation``'s results for consecutive chunks of ``examples``, in order, scored as one
    evaluation: exactly what ``evaluate_student`` returns for all of ``examples`` at once."""
    task = get_task(task_name)
    predictions = [p for part in parts for p in part["predictions"]]
    rationales = [r for part in parts for r in part["rationales"]]
    if len(predictions) != len(examples):
        raise ValueError(f"merge_evaluations: {len(predictions)} predictions for {len(examples)} examples")
    if explains and len(rationales) != len(examples):
        raise ValueError(f"merge_evaluations: {len(rationales)} rationales for {len(examples)} examples")
    labels = [ex.label for ex in examples]
    answers = [task.answer_from_rationale(r) for r in rationales]

    def padded(values: list) -> list:  # a student that does not explain has no rationale, nor an answer in one
        return values + [None] * (len(examples) - len(values))

    correct = per_example_correct(task, predictions, labels)
    rationale_correct = per_example_correct(task, [a or "" for a in answers], labels) if explains else None
    grades = grade_rationales(examples, rationales) if explains else None
    return {
        "accuracy": share(correct),
        "rationale_accuracy": share(rationale_correct) if explains else None,
        "correct": correct,  # per example: what the paired differences between methods resample
        "rationale_correct": rationale_correct,
        # Exact grades against the gold steps (the built-in tasks only): shares, and per example fully correct.
        "rationale_quality": grade_shares(grades) if grades else None,
        "rationale_fully_correct": [g.fully_correct for g in grades] if grades else None,
        "predictions": predictions,
        "rationales": rationales if explains else None,
        "examples": [
            {"input": ex.input, "label": ex.label, "prediction": pred, "rationale": rat, "rationale_answer": ans}
            for ex, pred, rat, ans in zip(examples, predictions, padded(rationales), padded(answers), strict=True)
        ][:num_examples_in_report],
    }


def prediction_records(examples: list[Example], evaluation: dict) -> list[dict]:
    """One record per example of an evaluation (``merge_evaluations``' result), as a method's
    ``predictions.jsonl`` holds them for ``jobs.rate_rationales``: id, question, gold label, the ``predict:``
    answer, and the student's own rationale (None for a method that does not explain)."""
    rationales = evaluation["rationales"] or [None] * len(examples)
    return [
        {"id": ex.id, "question": ex.input, "label": ex.label, "prediction": prediction, "rationale": rationale}
        for ex, prediction, rationale in zip(examples, evaluation["predictions"], rationales, strict=True)
    ]
