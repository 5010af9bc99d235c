"""The run report: ``report.md`` with PNG plots next to it, ``summary.json`` with every seed's summary, and
``differences.json`` with every paired difference between two methods and its 95% interval.

One summary per seed (see ``write_report``). The report compares the students (fine-tuning, DSS, QCRD and
any other method present, such as ablations) with the teacher, shows where the wall time went, the accuracy
per iteration, whether QCRD's contrastive term is alive, the judge's score densities (the paper's Fig. 6) and a
few rationales from each student.

Choices: accuracies are fractions in [0, 1] in the summaries and percentages in the report; the spread over
seeds is the sample standard deviation (ddof = 1); ``accuracy_per_iteration[i]`` is the accuracy after
iteration i + 1; densities are Gaussian kernel estimates on [0, 1] computed with numpy from binned scores.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from qcrd_ray.console import RUN_LOG
from qcrd_ray.methods import METHODS
from qcrd_ray.plots import plot_accuracy, plot_judge_scores
from qcrd_ray.report_differences import differences_markdown, method_differences, quality_markdown
from qcrd_ray.report_judge import (
    SCORE_KINDS,
    contrastive_markdown,
    judge_markdown,
    pooled_scores,
    separation_markdown,
)
from qcrd_ray.tasks import get_task

# The two ways to read a student's answer (docs/METHOD.md section 9): summary keys, and how the report names them.
METRICS = {
    "predict": ("final_accuracy", "accuracy_per_iteration", "predict:"),
    "rationale": ("final_rationale_accuracy", "rationale_accuracy_per_iteration", "from its rationale"),
}
ACCURACY_PLOT = "accuracy_per_iteration.png"
DIFFERENCES_FILE = "differences.json"  # every method-pair difference, as the report's table
JUDGE_PLOT = "judge_scores.png"
MAX_EXAMPLE_CHARS = 600


def _label(method: str) -> str:
    return METHODS[method].label if method in METHODS else method  # an ablation's run keeps its own name


def _metrics(summaries: list[dict]) -> list[str]:
    """The metrics in the report's order: the run's ``lead_metric`` (eval.lead_metric) first."""
    lead = summaries[0].get("lead_metric", "predict")
    return [lead, *(m for m in METRICS if m != lead)]


def _methods(summaries: list[dict]) -> list[str]:
    """Method keys present in any summary: the registry's first, in its order, then the others (ablations) by
    name."""
    present = {m for s in summaries for m in s.get("methods", {})}
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def _validate(summaries: list[dict]) -> list[dict]:
    """The summaries sorted by seed; raises ValueError naming the summary and key that is wrong."""
    if not summaries:
        raise ValueError("qcrd_ray/report.py: write_report needs at least one summary")
    seeds = []
    for i, s in enumerate(summaries):
        where = f"summaries[{i}]"
        if not isinstance(s, dict) or "seed" not in s:
            raise ValueError(f"qcrd_ray/report.py: {where} must be a dict with a 'seed'")
        seeds.append(s["seed"])
        if s.get("lead_metric", "predict") not in METRICS:
            raise ValueError(f"qcrd_ray/report.py: {where}.lead_metric must be one of {list(METRICS)}")
        for name, method in s.get("methods", {}).items():
            acc = method.get("final_accuracy")
            if not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
                raise ValueError(
                    f"qcrd_ray/report.py: {where}.methods.{name}.final_accuracy must be in [0, 1], got {acc!r}"
                )
            for final, curve, _ in METRICS.values():
                values = [(final, method[final])] if final in method else []
                values += [(f"{curve}[{j}]", a) for j, a in enumerate(method.get(curve, []))]
                for key, a in values:
                    if not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
                        raise ValueError(
                            f"qcrd_ray/report.py: {where}.methods.{name}.{key} must be in [0, 1], got {a!r}"
                        )
        value = (s.get("majority_label") or {}).get("accuracy")
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"qcrd_ray/report.py: {where}.majority_label.accuracy must be in [0, 1], got {value!r}")
        for key in ("single_sample_accuracy", "greedy_accuracy", "self_consistency_accuracy", "mean_agreement"):
            value = s.get("teacher", {}).get(key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"qcrd_ray/report.py: {where}.teacher.{key} must be in [0, 1], got {value!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"qcrd_ray/report.py: seeds must differ between summaries, got {seeds}")
    for key in ("task", "student"):
        values = {s.get(key) for s in summaries}
        if len(values) > 1:
            raise ValueError(f"qcrd_ray/report.py: all summaries must share one {key}, got {sorted(map(str, values))}")
    return sorted(summaries, key=lambda s: s["seed"])


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _percent_cell(values: list[float], num_seeds: int) -> str:
    """``30.00 ± 7.07`` over seeds (``(n=1)`` appended when some seeds lack the value)."""
    if not values:
        return "-"
    mean, std = _mean_std([100.0 * v for v in values])
    # One value has no spread to show.
    cell = f"{mean:.2f}" if len(values) < 2 else f"{mean:.2f} ± {std:.2f}"
    return cell if len(values) == num_seeds else f"{cell} (n={len(values)})"


def results_table_markdown(summaries: list[dict]) -> str:
    """Accuracy (%) of every student method and of the teacher as a Markdown table; mean ± std over seeds.

    Each student has a row per way of reading its answer (``predict:``, and from its rationale for a student
    that explains), the run's lead metric first."""
    summaries = _validate(summaries)
    seeds = [s["seed"] for s in summaries]
    multi = len(seeds) > 1
    header = ["method", "accuracy (%)" + (f", mean ± std over {len(seeds)} seeds" if multi else "")]
    header += [f"seed {seed}" for seed in seeds] if multi else []
    rows = [header, ["---"] + ["---:"] * (len(header) - 1)]

    def row(name: str, per_seed: list[float | None]) -> None:
        cells = [name, _percent_cell([v for v in per_seed if v is not None], len(seeds))]
        if multi:
            cells += ["-" if v is None else f"{100.0 * v:.2f}" for v in per_seed]
        rows.append(cells)

    for metric in _metrics(summaries):
        final, _, metric_label = METRICS[metric]
        for method in _methods(summaries):
            per_seed = [s.get("methods", {}).get(method, {}).get(final) for s in summaries]
            if any(v is not None for v in per_seed):
                row(f"{_label(method)}, {metric_label}", per_seed)
    majority = [s.get("majority_label") or {} for s in summaries]
    if majority[0].get("label") is not None:
        row(f"always the most frequent training answer ({majority[0]['label']})", [m.get("accuracy") for m in majority])
    teachers = [s.get("teacher", {}) for s in summaries]
    k = _samples_per_question(teachers[0])
    if any(t.get("single_sample_accuracy") is not None for t in teachers):
        row("teacher, single sample", [t.get("single_sample_accuracy") for t in teachers])
    if any(t.get("greedy_accuracy") is not None for t in teachers):
        row("teacher, greedy", [t.get("greedy_accuracy") for t in teachers])
    if any(t.get("self_consistency_accuracy") is not None for t in teachers):
        vote = f"self-consistency, K={k}" if k else "self-consistency"
        row(f"teacher, {vote}", [t.get("self_consistency_accuracy") for t in teachers])
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows) + "\n"


def _samples_per_question(teacher: dict) -> int | None:
    questions, samples = teacher.get("num_questions"), teacher.get("num_samples")
    return round(samples / questions) if questions and samples else None


def _teacher_markdown(summaries: list[dict]) -> str:
    """Per seed: the teacher, its questions and samples, how many parsed, how often they agreed, and how many
    questions had no teacher majority to learn from, so their positive is the gold fallback."""
    rows = [
        "| seed | teacher | questions | samples | parsed (%) | vote agreement (%) | positive from the gold fallback |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def percent(value) -> str:
        return "-" if value is None else f"{100.0 * value:.2f}"

    for s in summaries:
        t = s.get("teacher", {})
        rows.append(
            f"| {s['seed']} | {t.get('model', '-')} | {t.get('num_questions', '-')} | {t.get('num_samples', '-')} "
            f"| {percent(t.get('parsed_fraction'))} | {percent(t.get('mean_agreement'))} "
            f"| {t.get('fallback_questions', '-')} |"
        )
    return "\n".join(rows) + "\n"


def _phases_markdown(summaries: list[dict]) -> str:
    """Seconds per phase (mean over seeds, and per seed with several) with each phase's share of the total."""
    phases: list[str] = []
    for s in summaries:
        phases += [p for p in s.get("phase_seconds", {}) if p not in phases]
    multi = len(summaries) > 1
    header = ["phase", "seconds" + (" (mean)" if multi else ""), "share"]
    header += [f"seed {s['seed']}" for s in summaries] if multi else []
    rows = [header, ["---"] + ["---:"] * (len(header) - 1)]
    totals = [s.get("total_seconds") for s in summaries]
    mean_total = _mean_std([t for t in totals if t is not None])[0] if any(t is not None for t in totals) else None
    for phase in phases:
        per_seed = [s.get("phase_seconds", {}).get(phase) for s in summaries]
        mean = _mean_std([v for v in per_seed if v is not None])[0]
        share = f"{100.0 * mean / mean_total:.1f}%" if mean_total else "-"
        cells = [phase, f"{mean:.1f}", share]
        rows.append(cells + (["-" if v is None else f"{v:.1f}" for v in per_seed] if multi else []))
    startup = [_startup_seconds(s) for s in summaries]
    if any(v is not None for v in startup):
        mean = _mean_std([v for v in startup if v is not None])[0]
        share = f"{100.0 * mean / mean_total:.1f}%" if mean_total else "-"
        cells = ["of which Ray Train start-up (workers, set-up)", f"{mean:.1f}", share]
        rows.append(cells + (["-" if v is None else f"{v:.1f}" for v in startup] if multi else []))
    if mean_total is not None:
        rows.append(
            ["**total**", f"{mean_total:.1f}", "100.0%"]
            + (["-" if t is None else f"{t:.1f}" for t in totals] if multi else [])
        )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows) + "\n"


def _startup_seconds(summary: dict) -> float | None:
    """What the seed's Ray Train fit spent outside training: its workers' start, and each method's set-up
    (the student's load and DeepSpeed's init)."""
    seconds = [
        h.get("worker_start_seconds", 0.0) + h.get("setup_seconds", 0.0)
        for method in summary.get("methods", {}).values()
        for h in method.get("history", [])
        if "worker_start_seconds" in h or "setup_seconds" in h
    ]
    return sum(seconds) if seconds else None


def _accuracy_curves(summaries: list[dict]) -> dict[str, list[list[float]]]:
    return {
        f"{_label(m)}, {label}": [c for s in summaries if (c := s.get("methods", {}).get(m, {}).get(curve))]
        for metric in _metrics(summaries)
        for _, curve, label in [METRICS[metric]]
        for m in _methods(summaries)
    }


def _teacher_sc(summaries: list[dict]) -> float | None:
    teacher = [t for s in summaries if (t := s.get("teacher", {}).get("self_consistency_accuracy")) is not None]
    return sum(teacher) / len(teacher) if teacher else None


def _fenced(text: str) -> str:
    """``text`` in a code fence longer than any backtick run inside it, so it cannot break the Markdown."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}\n"


def _clip(text: Any) -> str:
    text = str(text).strip()
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + " [...]"


def _examples_markdown(summaries: list[dict], num_examples: int) -> str:
    """The first ``num_examples`` evaluation examples of each student, from the lowest seed that has any, each
    prediction marked as the task scores it (an equation by its value)."""
    task = get_task(summaries[0]["task"])
    parts = []
    for method in _methods(summaries):
        source = next((s for s in summaries if s.get("methods", {}).get(method, {}).get("examples")), None)
        if source is None:
            continue
        parts.append(f"### {_label(method)} (seed {source['seed']})\n")
        for ex in source["methods"][method]["examples"][:num_examples]:
            mark = "correct" if task.is_correct(str(ex.get("prediction", "")), str(ex.get("label", ""))) else "wrong"
            lines = [
                f"input:      {_clip(ex.get('input', ''))}",
                f"label:      {_clip(ex.get('label', ''))}",
                f"prediction: {_clip(ex.get('prediction', ''))} ({mark})",
            ]
            if ex.get("rationale"):
                lines.append(f"rationale:  {_clip(ex['rationale'])}")
            if (method not in METHODS or METHODS[method].explains) and "rationale_answer" in ex:
                lines.append(f"its answer: {ex['rationale_answer']} (read from its rationale)")
            parts.append(_fenced("\n".join(lines)))
    return "\n".join(parts) if parts else "No examples were recorded.\n"


def _write_text(path: Path, text: str) -> None:
    # Written to a temporary name and renamed, so a report that exists is a whole one.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(run_dir: Path, summaries: list[dict], num_examples: int = 3) -> Path:
    """Write ``run_dir/summary.json``, the PNG plots and ``run_dir/report.md`` (last); return the report's path.

    Each summary is one seed's result: ``seed``, ``task``, ``student``, ``teacher`` (model, single_sample_accuracy,
    self_consistency_accuracy, agreement, num_questions, num_samples), ``methods`` (per method:
    accuracy_per_iteration, final_accuracy, examples of input/label/prediction/rationale), ``phase_seconds``,
    ``judge_scores`` (positives, student_negatives, teacher_negatives) and ``total_seconds``. Methods,
    teacher numbers, judge scores and timings may be missing; the report then says what it lacks.
    """
    summaries = _validate(summaries)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_text(run_dir / "summary.json", json.dumps(summaries, indent=2) + "\n")
    differences = method_differences(summaries, _methods(summaries), [*_metrics(summaries), "quality"])
    _write_text(run_dir / DIFFERENCES_FILE, json.dumps([d.to_dict() for d in differences], indent=2) + "\n")
    first = summaries[0]
    seeds = ", ".join(str(s["seed"]) for s in summaries)
    teacher_model = first.get("teacher", {}).get("model", "-")
    out = [
        "# QCRD run report\n",
        f"Task **{first.get('task', '-')}**, student **{first.get('student', '-')}**, teacher **{teacher_model}**, seeds {seeds}.\n",
        *(
            [f"Ray's workers, transformers and DeepSpeed wrote their output to `{RUN_LOG}` in this directory.\n"]
            if (run_dir / RUN_LOG).is_file()
            else []
        ),
        "How to read this: higher accuracy is better; every method has the same data and steps, and the paper finds QCRD "
        "above DSS and DSS above fine-tuning, a gap that means something only where it is larger than the spread over "
        "seeds; the teacher rows are the ceiling the rationales came from, and always giving the most frequent "
        "training answer is the floor a student must clear to have learned anything; in the judge plot, positives should "
        "sit to the right of the negatives.\n",
        "## Results\n",
        results_table_markdown(summaries),
        "### Paired differences\n",
        differences_markdown(
            differences,
            _label,
            {**{m: label for m, (_, _, label) in METRICS.items()}, "quality": "fully correct rationale"},
        ),
        "### Rationale quality\n",
        quality_markdown(summaries, _methods(summaries), _label),
    ]
    if any(s.get("teacher") for s in summaries):
        out += ["### Teacher sampling\n", _teacher_markdown(summaries)]
    out.append("## Accuracy per iteration\n")
    for stale in (ACCURACY_PLOT, JUDGE_PLOT):
        # A plot left from an earlier report of this run must not pass for one of this report.
        (run_dir / stale).unlink(missing_ok=True)
    if plot_accuracy(_accuracy_curves(summaries), _teacher_sc(summaries), run_dir / ACCURACY_PLOT):
        out.append(f"![accuracy per iteration]({ACCURACY_PLOT})\n")
    else:
        out.append("No per-iteration accuracy was recorded.\n")
    out.append("## Judge scores\n")
    scores = pooled_scores(summaries)
    if plot_judge_scores(scores, SCORE_KINDS, run_dir / JUDGE_PLOT):
        out += [f"![judge score densities]({JUDGE_PLOT})\n", judge_markdown(scores)]
    else:
        out.append("No judge scores of both positives and negatives were recorded (a run without the judge).\n")
    out += ["### Does the judge separate?\n", separation_markdown(summaries)]
    out += ["## The contrastive term\n", contrastive_markdown(summaries)]
    out.append("## Wall time per phase\n")
    if any(s.get("phase_seconds") or s.get("total_seconds") is not None for s in summaries):
        out.append(_phases_markdown(summaries))
    else:
        out.append("No timings were recorded.\n")
    out += ["## Example rationales\n", _examples_markdown(summaries, num_examples)]
    report = run_dir / "report.md"
    _write_text(report, "\n".join(out))
    return report
