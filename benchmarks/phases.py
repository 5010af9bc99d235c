"""An iteration's wall time by phase, read from a finished run's metrics (the driver times every phase).

    python -m jobs.distill                       # or any run: its metrics.jsonl holds the phase events
    python -m benchmarks.phases [runs/qcrd/seed_0/metrics.jsonl]

Prints each QCRD iteration's phases (negatives, judge scoring, training, judge update, evaluation) and its
ratio to the plain baseline on the same data: one DSS iteration (its training fit per iteration plus an
evaluation), from the same run.
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
    per_iteration: dict[int, dict[str, float]] = defaultdict(dict)
    dss_train = dss_eval = 0.0
    dss_iterations = 1
    once: dict[str, float] = {}
    for e in phases:
        if e.get("method") == "qcrd" and "iteration" in e:
            per_iteration[e["iteration"]][e["phase"]] = e["phase_seconds"]
        elif e.get("method") == "dss" and e["phase"] == "train":
            dss_train, dss_iterations = e["phase_seconds"], e.get("iterations", 1)
        elif e.get("method") == "dss" and e["phase"] == "evaluate":
            dss_eval += e["phase_seconds"]
        elif e["phase"] in ("teacher", "judge_pretrain"):
            once[e["phase"]] = e["phase_seconds"]
    if not per_iteration:
        raise SystemExit(f"{path}: no QCRD phase events (run a qcrd method first)")
    dss = (dss_train + dss_eval) / dss_iterations if dss_train else None
    print(f"iteration wall time by phase, from {path}")
    print("  once per run: " + ", ".join(f"{k} {v:.1f} s" for k, v in once.items()))
    print("  iteration  " + "".join(f"{p:>14}" for p in QCRD_PHASES) + f"{'total':>10}" + "   vs DSS iteration")
    for t, seconds in sorted(per_iteration.items()):
        total = sum(seconds.values())
        ratio = f"{total / dss:.2f}x" if dss else "-"
        cells = "".join(f"{seconds.get(p, 0.0):13.1f}s" for p in QCRD_PHASES)
        print(f"  {t + 1:9d}  {cells}{total:9.1f}s   {ratio}")
    if dss:
        print(f"  DSS iteration (plain baseline): {dss:.1f} s (train {dss_train / dss_iterations:.1f} s + evaluate)")


if __name__ == "__main__":
    main()
