"""The README's ablation table: QCRD's variants against the full method, seed by seed.

    python -m studies.ablation_table runs/qcrd "no judge=runs/no_judge" "no self-consistency=runs/no_sc" ...

The first directory is a full run (QCRD, and DSS for reference); each NAME=DIR after it is a QCRD-only run of
one variant on some of its seeds (``--set run.<flag>=false --set run.baselines=[]``). Prints a markdown
table (per row: mean ± std over its seeds, every seed, and the full method minus the row on the seeds they
share, with its 95% interval from the paired bootstrap over seeds and questions, ``qcrd_ray.stats``, on both
metrics and the exact rationale quality), then each run's contrastive-term figures per iteration from its metrics.jsonl: the share
of questions whose negative term is active and the judge's mean weight on the chosen positives and negatives
(the range over seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from qcrd_ray.metrics import read_metrics
from qcrd_ray.stats import paired_difference

# (column, the seed's final figure, its per-question correctness): predict:, the answer the rationale ends on,
# and the exact rationale quality (every computation right, only the numbers that matter, the right answer).
METRICS = (
    ("predict:", lambda m: m["final_accuracy"], "correct"),
    ("from its rationale", lambda m: m["final_rationale_accuracy"], "rationale_correct"),
    ("fully correct rationale", lambda m: m["rationale_quality"]["fully_correct"], "rationale_fully_correct"),
)
FIGURES = ("negative_term_active", "weight_positive", "weight_negative")


def seed_results(run_dir: Path, method: str) -> dict[int, dict]:
    """Seed -> the method's summary (final accuracies, per-question correctness), from the run's summary.json."""
    summaries = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return {s["seed"]: s["methods"][method] for s in summaries}


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def table_row(name: str, row: dict[int, dict], full: dict[int, dict]) -> str:
    cells = [name]
    shared = sorted(set(row) & set(full))
    for _, final, per_question in METRICS:
        values = [100 * final(row[seed]) for seed in sorted(row)]
        cells += [mean_std(values), " / ".join(f"{v:.1f}" for v in values)]
        if row is full:
            cells.append("-")
            continue
        d = paired_difference([row[s][per_question] for s in shared], [full[s][per_question] for s in shared])
        cells.append(f"{100 * d.mean:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}] ({len(shared)} seeds)")
    return "| " + " | ".join(cells) + " |"


def iteration_figures(run_dir: Path) -> list[str]:
    """One line per iteration: each figure's range over the run's seeds."""
    by_iteration: dict[int, dict[str, list[float]]] = {}
    for metrics in sorted(run_dir.glob("seed_*/metrics.jsonl")):
        for record in read_metrics(metrics, "iteration"):
            if record.get("method") == "qcrd":
                figures = by_iteration.setdefault(record["iteration"], {k: [] for k in FIGURES})
                for key in FIGURES:
                    if key in record:
                        figures[key].append(record[key])
    lines = []
    for iteration, figures in sorted(by_iteration.items()):
        cells = [f"{k} {min(v):.2f}-{max(v):.2f}" for k, v in figures.items() if v]
        lines.append(f"  iteration {iteration + 1}: " + ", ".join(cells))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("full", type=Path, help="the full run's directory (QCRD and DSS)")
    parser.add_argument("variants", nargs="*", metavar="NAME=DIR", help="a QCRD-only run of a variant")
    args = parser.parse_args(argv)

    full = seed_results(args.full, "qcrd")
    rows = [("the full method", full, args.full)]
    for item in args.variants:
        name, _, directory = item.partition("=")
        rows.append((name, seed_results(Path(directory), "qcrd"), Path(directory)))
    columns = [f"{name} mean ± std | seeds | full - variant, 95% CI" for name, _, _ in METRICS]
    print("| QCRD variant | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: | ---: | ---: |" * len(METRICS))
    for name, row, _ in rows:
        print(table_row(name, row, full))
    methods = json.loads((args.full / "summary.json").read_text(encoding="utf-8"))[0]["methods"]
    for method, label in (("dss", "DSS"), ("dss_greedy", "DSS (greedy teacher)")):
        if method in methods:
            print(table_row(f"{label}, for reference", seed_results(args.full, method), full))
    for name, _, directory in rows:
        print(f"\n{name} ({directory}):")
        print("\n".join(iteration_figures(directory)))


if __name__ == "__main__":
    main()
