"""An iteration's negatives and judge scores for the questions its batches draw, against every training
question (what each QCRD iteration sampled and scored until 2026-12-07), on the built-in task with a real Ray.

    python -m benchmarks.iteration_questions [--steps 16] [--repeats 2]

The default task's 1,000 training questions with ``train.steps_per_iteration`` 16 of 16: an iteration draws 256
of them, about a quarter. Both ways run QCRD's own steps (``QcrdRun.negatives`` then ``QcrdRun.score``) on the
same pools, votes and judge, alternated; "every question" is the same run with ``train.group_by_length``, under
which an iteration still works on all of them. Prints seconds per iteration each way, their ratio, and checks
the items are the iteration's questions.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.common import machine
from qcrd_ray.config import Config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16, help="train.steps_per_iteration (of 16 questions)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="runs/bench_iteration_questions")
    args = parser.parse_args(argv)

    from jobs.distill import load_inputs
    from jobs.method_run import MethodContext
    from jobs.qcrd_run import QcrdRun
    from jobs.ray_cluster import init_ray
    from jobs.seed_services import SeedServices
    from jobs.teacher_phase import run_teacher_phase
    from qcrd_ray.methods import build_items
    from qcrd_ray.metrics import MetricsLogger, PhaseTimer
    from qcrd_ray.shipped_student import SHIPPED_DIR

    quarter = Config().replace(
        {"train.steps_per_iteration": args.steps, "judge.pretrain_steps": 0, "run.output_dir": args.out}
    )
    every = quarter.replace({"train.group_by_length": True})
    inputs = load_inputs(quarter)
    init_ray(quarter.cluster)
    votes = run_teacher_phase(quarter, inputs.train, inputs.task, progress=lambda line: None).votes
    out = Path(args.out).resolve()
    metrics = MetricsLogger(out / "metrics.jsonl", ray_metrics=False)
    services = SeedServices.start(quarter, 0)
    seconds: dict[str, list[float]] = {"the iteration's questions": [], "every question": []}
    counts = {}
    try:
        for _ in range(args.repeats):
            for name, cfg in (("every question", every), ("the iteration's questions", quarter)):
                ctx = MethodContext(
                    cfg=cfg,
                    seed=0,
                    train=inputs.train,
                    eval=inputs.eval,
                    votes=votes,
                    greedy_votes=None,
                    seed_dir=out / name.replace(" ", "_").replace("'", ""),
                    services=services,
                    fit=None,
                    timer=PhaseTimer(metrics),
                    metrics=metrics,
                )
                qcrd = QcrdRun(ctx, SHIPPED_DIR, ctx.seed_dir / "qcrd")
                started = time.perf_counter()
                samples = qcrd.negatives(1)
                positions = qcrd.iteration_questions(1)
                train, its_votes = [inputs.train[i] for i in positions], [votes[i] for i in positions]
                items = qcrd.score(1, build_items(cfg, "qcrd", train, its_votes, samples), samples)
                seconds[name].append(time.perf_counter() - started)
                assert [it.id for it in items] == [ex.id for ex in train] and set(samples) == {ex.id for ex in train}
                counts[name] = len(items)
                services.stop_judges()
    finally:
        services.stop()
        metrics.close()
    print(f"machine: {machine()}")
    print(f"{len(inputs.train)} training questions, {args.steps} steps of {quarter.train.batch_size} an iteration")
    for name, values in seconds.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name}: {counts[name]} questions sampled and scored, {statistics.median(values):.1f} s ({runs})")
    every_s, its_s = (statistics.median(seconds[k]) for k in ("every question", "the iteration's questions"))
    questions = counts["every question"] / counts["the iteration's questions"]
    print(f"every question / the iteration's: {every_s / its_s:.2f}x the time ({questions:.2f}x the questions)")


if __name__ == "__main__":
    main()
