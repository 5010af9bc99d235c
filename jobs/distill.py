"""The QCRD driver job: ``python -m jobs.distill [--config FILE] [--set KEY=VALUE ...] [--seeds 0,1,2] [--resume]``.

With no cluster it starts a local Ray on 127.0.0.1 and, with no ``--config``, runs the embedded default (the
built-in story task, the project's tiny teacher for it at T = 1.0, its pretrained tiny T5 student, QCRD against the
DSS and fine-tuning baselines) end to end, for ``run.seed`` or each of ``--seeds``, and writes
``{run.output_dir}/report.md``. Under ``ray job submit`` it joins the cluster named by ``RAY_ADDRESS``.

A bad config or bad data fails here, before Ray or any actor starts.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from jobs.ray_cluster import init_ray, sized_pools
from jobs.run_log import open_run_log
from qcrd_ray.config import Config, ConfigError, load_config
from qcrd_ray.console import RUN_LOG, Console
from qcrd_ray.data import DataError, load_examples
from qcrd_ray.evaluation import majority_label_baseline
from qcrd_ray.manifest import ManifestError, config_changes
from qcrd_ray.methods import GREEDY_TEACHER, METHODS, methods_of
from qcrd_ray.metrics import MetricsLogger, PhaseTimer, logged_phase_seconds
from qcrd_ray.records import Example, SeedSummary
from qcrd_ray.report import write_report
from qcrd_ray.run_lock import RunLock, RunLockedError
from qcrd_ray.tasks import Task, get_task


@dataclass(frozen=True)
class Inputs:
    """What every method of a run shares: the task and its splits (validated before any actor starts)."""

    task: Task
    train: list[Example]
    eval: list[Example]


class RunStopped(Exception):
    """Ctrl-C or SIGTERM stopped the run in ``where``; every complete iteration is kept for ``--resume``."""

    def __init__(self, signal_name: str, where: str):
        super().__init__(f"{signal_name} in {where}")


STOP_SIGNALS: list[str] = []  # the stop signals received; Ray's actors may die of a Ctrl-C before the driver sees it


def _interrupt(signum: int, frame) -> None:
    STOP_SIGNALS.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(STOP_SIGNALS[-1])  # SIGTERM (ray job stop, kill) stops as Ctrl-C does


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="qcrd distill", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="YAML config (default: the embedded default run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=3e-4")
    parser.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (default: run.seed)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's manifests")
    parser.add_argument(
        "--verbose", action="store_true", help="Ray's workers and the libraries print here too (default: run.log)"
    )
    return parser.parse_args(argv)


def load_inputs(cfg: Config) -> Inputs:
    """Read and check the data of a run (raises DataError naming the file and line)."""
    task = get_task(cfg.data.task)
    train = load_examples(cfg.data, cfg.data.train_split)
    evaluation = load_examples(cfg.data, cfg.data.eval_split)
    if not train or not evaluation:
        raise DataError(f"data: empty split ({len(train)} train, {len(evaluation)} eval examples)")
    return Inputs(task=task, train=train, eval=evaluation)


def check_resume_config(path: Path, cfg: Config) -> None:
    """``--resume`` continues the run ``path`` (its config.json) describes: any change but run.iterations
    (to extend it) and cluster.* is refused, naming the changed keys."""
    if not path.is_file():
        return  # nothing ran yet: a resume is a fresh start
    try:
        changed = config_changes(json.loads(path.read_text(encoding="utf-8")), cfg.to_dict())
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ConfigError(f"{path}: --resume: the run's config is unreadable ({err})") from None
    if changed:
        raise ConfigError(
            f"{path}: --resume with a changed config: {', '.join(changed)} (only run.iterations, to "
            f"extend the run, and cluster.* may change; start a new run.output_dir for the rest)"
        )


def teacher_name(cfg: Config) -> str:
    """Who wrote the run's rationales, as the report names the teacher: the model, or the data itself."""
    if cfg.teacher.backend == "dataset":
        return f"the data's own rationales ({cfg.data.source}: {cfg.data.path})"
    return cfg.teacher.model


def fit_storage(seed_dir: Path) -> Path:
    """Where this attempt's Ray Train fit keeps its checkpoints: a directory per attempt, so a resumed run
    never deletes the checkpoint its manifest names (Ray Train would also resume a same-named fit)."""
    attempts = seed_dir / "ray_train"
    n = 1 + sum(1 for p in attempts.glob("attempt_*")) if attempts.is_dir() else 1
    return (attempts / f"attempt_{n:02d}").resolve()


def run(cfg: Config, seeds: list[int], resume: bool = False, verbose: bool = False) -> Path:
    """Run every seed and method of ``cfg``; returns the path of the written report. Without ``verbose`` the
    console shows the driver's own lines, and Ray's workers and the libraries write to ``run.log``."""
    inputs = load_inputs(cfg)  # bad data fails here, before Ray or any actor starts
    run_dir = Path(cfg.run.output_dir).resolve()  # actors and Ray Train workers run in other directories
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir):  # a second run on run_dir is refused here, before it writes anything there
        if resume:
            check_resume_config(run_dir / "config.json", cfg)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        if verbose:
            return run_locked(cfg, seeds, resume, inputs, run_dir, log=None)
        with open_run_log(run_dir / RUN_LOG) as log:
            return run_locked(cfg, seeds, resume, inputs, run_dir, log)


def run_locked(cfg: Config, seeds: list[int], resume: bool, inputs: Inputs, run_dir: Path, log: TextIO | None) -> Path:
    """``run`` once it holds ``run_dir``, its output off the console into ``log`` unless that is None."""
    started = time.perf_counter()
    dashboard = init_ray(cfg.cluster, log)
    if signal.getsignal(signal.SIGINT) is _interrupt:  # main's: ray.init put its own SIGTERM handler (sys.exit)
        signal.signal(signal.SIGTERM, _interrupt)
    console = Console()
    cfg = sized_pools(cfg, run_dir, resume, (len(inputs.train), len(inputs.eval)), console)
    console.say(
        f"[qcrd] run {cfg.run.name}: task {cfg.data.task}, {len(inputs.train)} train / {len(inputs.eval)} eval "
        f"questions, methods {methods_of(cfg.run)}, seeds {seeds}, output {run_dir}"
    )
    if dashboard:
        console.say(f"[qcrd] Ray dashboard: http://{dashboard} (it asks for a token: `ray get-auth-token`)")
    if log is not None:
        console.say(f"[qcrd] Ray's workers and the libraries write to {log.name} (--verbose: here)")

    baseline = majority_label_baseline(inputs.task, [ex.label for ex in inputs.train], [ex.label for ex in inputs.eval])
    summaries = [
        run_seed(cfg, seed, inputs, run_dir, resume=resume, baseline=baseline, console=console) for seed in seeds
    ]
    report = write_report(run_dir, summaries)
    console.say(f"[qcrd] done in {time.perf_counter() - started:.0f} s; report: {report}")
    return report


def run_seed(
    cfg: Config, seed: int, inputs: Inputs, run_dir: Path, *, resume: bool, baseline: dict, console: Console
) -> dict:
    """One seed: the teacher phase, then every method in the seed's one fit; its summary for the report.
    Ctrl-C (or SIGTERM) here raises ``RunStopped`` naming the phase it stopped in."""
    # Late: they import ray, which reads its network settings when imported (init_ray set them).
    from actors.student_train import StreamingFit
    from jobs.method_run import MethodContext, run_method
    from jobs.seed_services import SeedServices
    from jobs.teacher_phase import run_teacher_phase

    seed_dir = run_dir / f"seed_{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    seed_started = time.perf_counter()
    earlier = logged_phase_seconds(seed_dir / "metrics.jsonl") if resume else {}
    metrics = MetricsLogger(seed_dir / "metrics.jsonl", run=f"{cfg.run.name}/seed_{seed}")
    timer = PhaseTimer(metrics, earlier, console)
    try:
        with timer.phase("teacher"):
            teacher = run_teacher_phase(cfg, inputs.train, inputs.task, progress=console.say)
            greedy = None
            if any(METHODS[m].teacher == "greedy" for m in methods_of(cfg.run)):  # DSS on its best single answer
                greedy = run_teacher_phase(cfg.replace(GREEDY_TEACHER), inputs.train, inputs.task, progress=console.say)
        teacher_stats = {**teacher.stats}
        if greedy is not None:
            teacher_stats["greedy_accuracy"] = greedy.stats["single_sample_accuracy"]
        metrics.log("teacher", **{k: v for k, v in teacher_stats.items() if isinstance(v, (int, float))})
        methods = {}
        judge_scores: dict[str, list[float]] = {}
        services = SeedServices.start(cfg, seed)
        with StreamingFit(cfg, seed, str(fit_storage(seed_dir))) as fit:  # every method of the seed trains in it
            ctx = MethodContext(
                cfg=cfg,
                seed=seed,
                train=inputs.train,
                eval=inputs.eval,
                votes=teacher.votes,
                greedy_votes=greedy.votes if greedy is not None else None,
                seed_dir=seed_dir,
                services=services,
                fit=fit,
                timer=timer,
                metrics=metrics,
                resume=resume,
            )
            for method in methods_of(cfg.run):
                result = run_method(ctx, method)
                methods[method] = result.summary
                judge_scores = result.judge_scores or judge_scores
        services.stop()
    except BaseException as err:  # Ctrl-C, or SIGTERM (main): say where, then leave Ray to its exit hooks
        if not isinstance(err, KeyboardInterrupt) and not STOP_SIGNALS:
            raise
        where = f"seed {seed}, {timer.current}" if timer.current else f"seed {seed}"
        raise RunStopped(STOP_SIGNALS[0] if STOP_SIGNALS else "SIGINT", where) from None
    summary = SeedSummary(
        seed=seed,
        task=cfg.data.task,
        student=cfg.student.model or f"tiny {cfg.student.architecture}",
        teacher={"model": teacher_name(cfg), **teacher_stats},
        methods=methods,
        lead_metric=cfg.eval.lead_metric,
        majority_label=baseline,
        phase_seconds=timer.seconds,
        judge_scores=judge_scores,
        # The seed's own wall time; a resumed seed's earlier attempts count by their phases.
        total_seconds=sum(earlier.values()) + time.perf_counter() - seed_started,
    )
    return summary.to_dict()


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` -> [0, 1, 2]; ConfigError naming the flag otherwise."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: each seed once, got {text!r}")
    return seeds


def expected_failure(err: BaseException) -> BaseException | None:
    """The expected failure behind ``err`` (bad config, data, manifest or teacher output, a teacher that fails
    every retry, a non-finite loss), also where Ray wraps it: an actor's error (``RayTaskError.cause``) or a Ray
    Train worker's (``WorkerGroupError.worker_failures``). None for anything else: a bug keeps its traceback."""
    from actors.pool import ActorNotReleasedError
    from actors.teacher import TeacherError
    from jobs.teacher_phase import TeacherPhaseError

    expected = (
        ConfigError,
        DataError,
        ManifestError,
        TeacherError,
        TeacherPhaseError,
        ActorNotReleasedError,
        FloatingPointError,
        RunLockedError,
    )
    stack, seen = [err], 0
    while stack and seen < 32:
        e, seen = stack.pop(), seen + 1
        cause = getattr(e, "cause", None)  # Ray's wrapper also subclasses the cause: prefer the original
        if isinstance(cause, BaseException):
            stack.append(cause)
            continue
        if isinstance(e, expected):
            return e
        stack += [c for c in (e.__cause__, e.__context__) if c is not None]
        stack += list(getattr(e, "worker_failures", {}).values())
    return None


def main(argv: list[str] | None = None) -> int:
    """Run, and turn every expected failure into one line on stderr and exit code 2; Ctrl-C or SIGTERM into one
    line saying where the run stopped and how to resume it, and exit code 130."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    handlers = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        cfg = load_config(args.config, args.set)
        seeds = parse_seeds(args.seeds) if args.seeds else [cfg.run.seed]
        run(cfg, seeds, resume=args.resume, verbose=args.verbose)
    except BaseException as stop:
        if not isinstance(stop, (RunStopped, KeyboardInterrupt)) and not STOP_SIGNALS:
            return _failed(stop)
        where = (
            stop if isinstance(stop, RunStopped) else f"{STOP_SIGNALS[0] if STOP_SIGNALS else 'SIGINT'} outside a seed"
        )
        resume = shlex.join(["python", "-m", "jobs.distill", *(a for a in argv if a != "--resume"), "--resume"])
        print(f"[qcrd] stopped by {where}; every complete iteration is kept. To go on: {resume}", file=sys.stderr)
        return 130
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return 0


def _failed(err: BaseException) -> int:
    """An expected failure as one line on stderr and exit code 2; anything else (a bug) raised as it is."""
    failure = expected_failure(err) if isinstance(err, Exception) else None
    if failure is None:
        raise err
    first_line = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    print(f"error: {first_line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
