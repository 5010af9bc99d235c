"""The report's paired differences between methods: each later method minus each earlier one (the registry's
order: fine-tuning, DSS, QCRD, then ablations), on both ways of reading an answer, with a 95% paired bootstrap
interval over questions and seeds (``qcrd_ray.stats``). Written to the report and to ``differences.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qcrd_ray.stats import Difference, paired_difference

# metric -> the per-example key of a method's summary
PER_EXAMPLE_KEYS = {"predict": "correct", "rationale": "rationale_correct"}


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
