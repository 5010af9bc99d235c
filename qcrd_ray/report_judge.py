"""The report's sections on the judge and QCRD's contrastive term."""

from __future__ import annotations

import math
from typing import Any

from qcrd_ray.judge_separation import NEGATIVE_KINDS, SEPARATES, separation_auc
from qcrd_ray.methods import METHODS

SCORE_KINDS = (
    ("positives", "positives (teacher majority, or the gold fallback)"),
    ("student_negatives", "student negatives"),
    ("teacher_negatives", "teacher negatives (minority)"),
)


CONTRASTIVE_COLUMNS = (
    ("negative_term_active", "negative term active", True),
    ("ce_chosen_positive", "CE chosen positive", False),
    ("ce_chosen_negative", "CE chosen negative", False),
    ("weight_positive", "weight positive (s)", False),
    ("weight_negative", "weight negative (1 - s)", False),
    ("loss_cl", "L_cl", False),
)
DEAD_TERM = 0.05  # below this share of questions the negative term does (almost) nothing


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def contrastive_markdown(summaries: list[dict]) -> str:
    """QCRD's contrastive term per seed and iteration: is its negative side alive, and what does it weigh?"""
    rows, active = [], []
    contrastive = [name for name, method in METHODS.items() if method.contrastive]
    for s in summaries:
        histories = [s.get("methods", {}).get(name, {}).get("history", []) for name in contrastive]
        for h in (h for history in histories for h in history):
            if "negative_term_active" not in h:
                continue
            cells = [str(s["seed"]), str(h["iteration"] + 1)]
            for key, _, percent in CONTRASTIVE_COLUMNS:
                v = h.get(key)
                cells.append("-" if not _finite(v) else f"{100 * v:.1f}%" if percent else f"{v:.3f}")
            if _finite(h["negative_term_active"]):  # NaN: no batch of the iteration had a negative
                active.append(h["negative_term_active"])
            rows.append(cells)
    if not rows:
        return "No QCRD iteration recorded its contrastive term.\n"
    header = ["seed", "iteration", *(label for _, label, _ in CONTRASTIVE_COLUMNS)]
    lines = [header, ["---:"] * len(header), *rows]
    text = "\n".join("| " + " | ".join(cells) + " |" for cells in lines) + "\n"
    text = (
        "The negative term is active for a question when its chosen negative's CE is below delta, so that "
        "it pushes (docs/METHOD.md section 5); a weight is the judge's s on the chosen positive, 1 - s on the "
        "chosen negative.\n\n" + text
    )
    if not active:
        return text + "\nNo question of any batch had a negative: the negative term never ran.\n"
    share = sum(active) / len(active)
    if share < DEAD_TERM:
        return text + (
            f"\n**The negative term is dead**: on average it was active for {100 * share:.1f}% of the "
            "questions with a negative; QCRD here trains on its positives alone.\n"
        )
    return (
        text + f"\nOn average the negative term was active for {100 * share:.1f}% of the questions with a negative.\n"
    )


def pooled_scores(summaries: list[dict]) -> dict[str, list[float]]:
    return {
        kind: [float(v) for s in summaries for v in s.get("judge_scores", {}).get(kind, [])] for kind, _ in SCORE_KINDS
    }


def judge_markdown(scores: dict[str, list[float]]) -> str:
    rows = ["| rationales | count | mean score |", "| --- | ---: | ---: |"]
    for kind, label in SCORE_KINDS:
        if scores[kind]:
            rows.append(f"| {label} | {len(scores[kind])} | {sum(scores[kind]) / len(scores[kind]):.3f} |")
    lines = ["\n".join(rows) + "\n"]
    for kind, label in SCORE_KINDS[1:]:
        auc = separation_auc(scores["positives"], scores[kind])
        if auc is not None:
            lines.append(f"- P(a positive scores above one of the {label}) = {auc:.3f} (0.5: no separation)")
    return "\n".join(lines) + "\n"


HELD_OUT_KINDS = {
    "minority": "the teacher's minority",
    "corrupted": "corrupted positives",
    "student": "the student's samples",
}


def separation_markdown(summaries: list[dict]) -> str:
    """The judge's held-out AUCs per seed and iteration (positives against each kind of negative, on questions
    it never trained on), the mean weights QCRD put on its chosen rationales, and per kind a sentence: does the
    judge separate it, at the last iteration, averaged over seeds?"""
    keys = [f"judge_auc_{kind}" for kind in NEGATIVE_KINDS]
    rows, last = [], {key: [] for key in keys}
    contrastive = [name for name, method in METHODS.items() if method.contrastive]
    for s in summaries:
        for name in contrastive:
            history = [h for h in s.get("methods", {}).get(name, {}).get("history", []) if any(k in h for k in keys)]
            for h in history:
                cells = [str(s["seed"]), str(h["iteration"] + 1)]
                cells += [
                    f"{h[k]:.3f}" if _finite(h.get(k)) else "-" for k in [*keys, "weight_positive", "weight_negative"]
                ]
                rows.append(cells)
            for key in keys:
                if history and _finite(history[-1].get(key)):
                    last[key].append(history[-1][key])
    if not rows:
        return "No held-out separation was recorded (a run without the judge, or judge.holdout_fraction 0).\n"
    header = ["seed", "iteration", *(f"AUC vs {HELD_OUT_KINDS[k]}" for k in NEGATIVE_KINDS)]
    header += ["weight chosen positive (s)", "weight chosen negative (1 - s)"]
    table = "\n".join("| " + " | ".join(c) + " |" for c in [header, ["---:"] * len(header), *rows]) + "\n"
    lines = []
    for kind in NEGATIVE_KINDS:
        values = last[f"judge_auc_{kind}"]
        if not values:
            continue
        auc = sum(values) / len(values)
        if auc < SEPARATES:
            lines.append(
                f"- The judge cannot tell {HELD_OUT_KINDS[kind]} from the positives (AUC {auc:.3f} < {SEPARATES}): "
                "its weights carry no quality signal on those rationales."
            )
        else:
            lines.append(f"- The judge separates {HELD_OUT_KINDS[kind]} from the positives (AUC {auc:.3f}).")
    return (
        "Measured on training questions the judge never trains on: the AUC is the chance that a positive scores "
        "above a negative of that kind (0.5: no separation), for the judge that weighted the iteration. The last "
        "iteration's, averaged over seeds:\n\n" + "\n".join(lines) + "\n\n" + table
    )
