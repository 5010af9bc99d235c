"""An iteration's wall time by phase, read from a finished run's metrics (the driver times every phase).

    python -m jobs.distill                       # or any run: its metrics.jsonl holds the phase events
    python -m benchmarks.phases [runs/qcrd/seed_0/metrics.jsonl]

Prints each QCRD iteration's phases (negatives, judge scoring, training, judge update, evaluation) and its
ratio to the plain baseline on the same data: DSS's mean iteration (its training plus its evaluation), from
the same run.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

QCRD_PHASES = ("negatives", "judge_score", "train", "judge_update", "evaluate")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("metrics", nargs="?", default="runs/qcrd/seed_0/metrics.jsonl")
    args = parser.parse_args(argv)
    path = Path(args.metrics)
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    phases = [e for e in events if e.get("event") == "phase" and not e.get("failed")]
    per_iteration: dict[str, dict[int, dict[str, float]]] = {"qcrd": defaultdict(dict), "dss": defaultdict(dict)}
    once: dict[str, float] = {}
    for e in phases:
        if e.get("method") in per_iteration and "iteration" in e:
            per_iteration[e["method"]][e["iteration"]][e["phase"]] = e["phase_seconds"]
        elif e["phase"] in ("teacher", "judge_pretrain"):
            once[e["phase"]] = e["phase_seconds"]
    qcrd, dss_iterations = per_iteration["qcrd"], per_iteration["dss"].values()
    if not qcrd:
        raise SystemExit(f"{path}: no QCRD phase events (run a qcrd method first)")
    # The baseline: DSS's mean iteration (its training and its evaluation), in the same run.
    dss = sum(sum(p.values()) for p in dss_iterations) / len(dss_iterations) if dss_iterations else None
    print(f"iteration wall time by phase, from {path}")
    print("  once per run: " + ", ".join(f"{k} {v:.1f} s" for k, v in once.items()))
    print("  iteration  " + "".join(f"{p:>14}" for p in QCRD_PHASES) + f"{'total':>10}" + "   vs DSS iteration")
    for t, seconds in sorted(qcrd.items()):
        total = sum(seconds.values())
        ratio = f"{total / dss:.2f}x" if dss else "-"
        cells = "".join(f"{seconds.get(p, 0.0):13.1f}s" for p in QCRD_PHASES)
        print(f"  {t + 1:9d}  {cells}{total:9.1f}s   {ratio}")
    if dss:
        train = sum(p.get("train", 0.0) for p in dss_iterations) / len(dss_iterations)
        print(
            f"  DSS iteration (plain baseline, the mean of {len(dss_iterations)}): {dss:.1f} s (train {train:.1f} s + evaluate)"
        )


if __name__ == "__main__":
    main()
