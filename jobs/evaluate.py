"""Evaluation of a student snapshot: label accuracy on the ``predict:`` path, as the DSS code computes it."""

from __future__ import annotations

from qcrd_ray.records import Example


def evaluate_snapshot(
    snapshot_dir: str,
    examples: list[Example],
    task_name: str,
    max_new_tokens: int,
    batch_size: int,
    num_rationales: int = 3,
    rationale_tokens: int = 128,
) -> dict:
    """Greedy-decode labels for ``examples`` and score them; also decode a few rationales for the report.

    Returns {"accuracy", "predictions", "examples": [{"input", "label", "prediction", "rationale"}]}.
    """
    from qcrd_ray.evaluation import accuracy
    from qcrd_ray.models import generate, is_seq2seq, load_student
    from qcrd_ray.scoring import causal_prompt
    from qcrd_ray.tasks import EXPLAIN, PREDICT, get_task

    task = get_task(task_name)
    model, tokenizer = load_student(snapshot_dir)
    wrap = (lambda text: text) if is_seq2seq(model) else causal_prompt

    def decode(prefix: str, batch: list[Example], tokens: int) -> list[str]:
        prompts = [wrap(prefix + ex.input) for ex in batch]
        outs = generate(model, tokenizer, prompts, max_new_tokens=tokens, batch_size=batch_size)
        return [o[0].strip() for o in outs]

    predictions = decode(PREDICT, examples, max_new_tokens)
    shown = examples[:num_rationales]
    rationales = decode(EXPLAIN, shown, rationale_tokens)
    return {
        "accuracy": accuracy(task, predictions, [ex.label for ex in examples]),
        "predictions": predictions,
        "examples": [
            {"input": ex.input, "label": ex.label, "prediction": pred, "rationale": rat}
            for ex, pred, rat in zip(shown, predictions[: len(shown)], rationales, strict=True)
        ],
    }
