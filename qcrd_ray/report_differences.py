"""The report's comparisons of methods question by question: paired differences, each later method minus each
earlier one (the registry's order: fine-tuning, DSS, QCRD, then ablations), on both ways of reading an answer and
on fully correct rationales, with a 95% paired bootstrap interval over questions and seeds (``qcrd_ray.stats``;
also written to ``differences.json``); and the rationales' exact grades with wins / ties / losses."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qcrd_ray.stats import Difference, paired_difference

# metric -> the per-example key of a method's summary ("quality": its rationale fully correct, step by step)
PER_EXAMPLE_KEYS = {"predict": "correct", "rationale": "rationale_correct", "quality": "rationale_fully_correct"}


@dataclass(frozen=True)
class MethodDifference:
    """``later - earlier`` on ``metric``, over every seed that has both."""

    later: str
    earlier: str
    metric: str
    difference: Difference

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "difference": {**asdict(self.difference), "excludes_zero": self.difference.excludes_zero},
        }


def method_differences(summaries: list[dict], methods: list[str], metrics: list[str]) -> list[MethodDifference]:
    """Every pair (earlier, later) of ``methods`` in that order, on each of ``metrics``, where every seed recorded
    both methods' per-example results (a run from before they were recorded has none)."""
    out = []
    for metric in metrics:
        key = PER_EXAMPLE_KEYS[metric]
        for j, later in enumerate(methods):
            for earlier in methods[:j]:
                pairs = [
                    (s["methods"].get(earlier, {}).get(key), s["methods"].get(later, {}).get(key)) for s in summaries
                ]
                if not pairs or any(a is None or b is None or len(a) != len(b) for a, b in pairs):
                    continue
                diff = paired_difference([a for a, _ in pairs], [b for _, b in pairs])
                out.append(MethodDifference(later, earlier, metric, diff))
    return out


def differences_markdown(differences: list[MethodDifference], label, metric_labels: dict[str, str]) -> str:
    """A table of ``differences`` in percentage points; ``label(method)`` names a method."""
    if not differences:
        return "No per-question results were recorded for two methods on the same questions.\n"
    rows = [
        "| difference | points | 95% CI (paired bootstrap) | excludes 0 | seeds x questions |",
        "| --- | ---: | ---: | :---: | ---: |",
    ]
    for d in differences:
        x = d.difference
        rows.append(
            f"| {label(d.later)} - {label(d.earlier)}, {metric_labels[d.metric]} | {100 * x.mean:+.2f} "
            f"| [{100 * x.low:+.2f}, {100 * x.high:+.2f}] | {'yes' if x.excludes_zero else 'no'} "
            f"| {x.seeds} x {x.questions} |"
        )
    note = (
        "Each method is evaluated on the same test questions, so two compare question by question; the interval "
        "resamples the seeds, then the questions within each (the same questions for both methods).\n\n"
    )
    return note + "\n".join(rows) + "\n"


def quality_markdown(summaries: list[dict], methods: list[str], label) -> str:
    """Each explaining method's rationales graded against the gold steps (mean share over seeds), then, for each
    pair of them, on how many questions the later one's rationale is fully correct where the earlier one's is
    not (wins), the reverse (losses), or both alike (ties), over every seed."""
    graded = [m for m in methods if all(s["methods"].get(m, {}).get("rationale_quality") for s in summaries)]
    if not graded:
        return "No rationale was graded (a task without gold steps, or no method that explains).\n"
    names = list(summaries[0]["methods"][graded[0]]["rationale_quality"])
    rows = ["| method | " + " | ".join(n.replace("_", " ") + " (%)" for n in names) + " |"]
    rows.append("| --- |" + " ---: |" * len(names))
    for m in graded:
        shares = [[s["methods"][m]["rationale_quality"][n] for s in summaries] for n in names]
        rows.append(f"| {label(m)} | " + " | ".join(f"{100 * sum(v) / len(v):.2f}" for v in shares) + " |")
    pairs = []
    for j, later in enumerate(graded):
        for earlier in graded[:j]:
            tally = [0, 0, 0]  # wins, ties, losses of ``later``
            for s in summaries:
                a = s["methods"][earlier].get("rationale_fully_correct") or []
                b = s["methods"][later].get("rationale_fully_correct") or []
                for x, y in zip(a, b, strict=False):
                    tally[0 if y > x else 2 if x > y else 1] += 1
            pairs.append(
                f"- {label(later)} against {label(earlier)}: {tally[0]} wins, {tally[1]} ties, {tally[2]} losses"
            )
    head = (
        "Each student's greedy rationale checked against the gold steps: every computation right, no number "
        "that does not matter used, the right answer; fully correct is all three.\n\n"
    )
    return head + "\n".join(rows) + "\n\nQuestion by question, fully correct or not:\n\n" + "\n".join(pairs) + "\n"
