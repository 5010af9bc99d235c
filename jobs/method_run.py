"""One method of a seed (QCRD, its ablations, DSS or fine-tuning), iteration by iteration.

Every method trains in the seed's one Ray Train fit (``actors.student_train.StreamingFit``), one stage (an
iteration of a method) at a time, and every iteration's student is evaluated and recorded alike
(``evaluate_and_record``). A baseline trains on the same items every iteration and writes its summary when it
is done, so ``--resume`` skips a finished one; QCRD's iterations are ``jobs.qcrd_run.QcrdRun``. What each method
trains on is the core's decision (``qcrd_ray.methods``); this module only moves it between the actors.

Evaluation runs on the pool of student samplers (``sampler.num_replicas``): the driver cuts it into fixed chunks
(``qcrd_ray.sharding``), chunk c goes to replica c % N (``actors.pool``) and the results come back in chunk
order, so any N gives the result of one replica.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import ray  # this module is imported once the driver has set Ray's environment up (jobs.distill.run)

from actors.pool import map_chunks
from actors.student_train import Stage, StreamingFit
from jobs.seed_services import SeedServices
from qcrd_ray.config import Config
from qcrd_ray.evaluation import PREDICTIONS_FILE, evaluation_chunks, merge_evaluations, prediction_records
from qcrd_ray.manifest import (
    atomic_write_text,
)
from qcrd_ray.methods import (
    METHODS,
    build_items,
    get_method,
)
from qcrd_ray.metrics import MetricsLogger, PhaseTimer
from qcrd_ray.models import build_student, build_tokenizer, save_student
from qcrd_ray.records import Example, FitResult, MethodSummary, Vote
from qcrd_ray.sharding import chunk_bounds
from qcrd_ray.tasks import EXPLAIN, PREDICT

# An iteration's record keys that hold one value per evaluation example: kept for the last iteration's summary,
# never logged nor put in the summary's history.
PER_EXAMPLE = ("examples", "correct", "rationale_correct", "rationale_fully_correct")


@dataclass(kw_only=True)
class MethodContext:
    """What every method of one seed shares: config, data, votes, where it writes, its actors and loggers."""

    cfg: Config
    seed: int
    train: list[Example]
    eval: list[Example]
    votes: list[Vote]
    greedy_votes: list[Vote] | None  # the greedy teacher phase's, when a method reads them (DSS-greedy)
    seed_dir: Path
    services: SeedServices
    fit: StreamingFit | None  # None: only the sampling and judging steps run (tests)
    timer: PhaseTimer
    metrics: MetricsLogger
    resume: bool = False
    _eval_refs: list = field(default_factory=list, repr=False)

    def votes_of(self, method: str) -> list[Vote]:
        """The teacher votes ``method`` learns from: the K samples', or the greedy answer's."""
        if METHODS[method].teacher == "greedy":
            if self.greedy_votes is None:
                raise ValueError(f"{method}: reads the teacher's greedy answers, and no greedy phase ran")
            return self.greedy_votes
        return self.votes

    def eval_refs(self) -> list:
        """``eval`` in chunks of ``eval.batch_size`` (``evaluation_chunks``' cut), each ``ray.put`` once for the
        seed: every evaluation of every method sends the samplers references, not the examples again."""
        if not self._eval_refs:
            bounds = chunk_bounds(len(self.eval), self.cfg.eval.batch_size)
            self._eval_refs = [ray.put(self.eval[start:stop]) for start, stop in bounds]
        return self._eval_refs


@dataclass(frozen=True)
class MethodResult:
    summary: MethodSummary
    judge_scores: dict[str, list[float]] = field(default_factory=dict)  # QCRD's last scored iteration, by kind


def initial_student(ctx: MethodContext) -> Path:
    """Snapshot 0, shared by every method of a seed: the untrained student and its tokenizer."""
    path = ctx.seed_dir / "initial_student"
    if (path / "config.json").is_file():
        return path
    texts = [PREDICT + ex.input for ex in ctx.train] + [EXPLAIN + ex.input for ex in ctx.train]
    texts += [ex.label for ex in ctx.train] + [r.text for v in ctx.votes for r in (*v.samples, *v.positives)]
    tokenizer = build_tokenizer(ctx.cfg.student, texts)
    model = build_student(ctx.cfg.student, tokenizer, seed=ctx.seed)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_student(model, tokenizer, tmp)
    tmp.rename(path)  # whole or absent: a killed build never looks finished
    return path


def run_method(ctx: MethodContext, method: str) -> MethodResult:
    """Train ``method`` for cfg.run.iterations iterations and evaluate every iteration's student."""
    init_dir = initial_student(ctx)
    method_dir = ctx.seed_dir / method
    method_dir.mkdir(parents=True, exist_ok=True)
    if get_method(method).contrastive:
        from jobs.qcrd_run import QcrdRun  # late: it builds on this module's context and records

        return QcrdRun(ctx, init_dir, method_dir).run()
    return _run_baseline(ctx, method, init_dir, method_dir)


def evaluate_and_record(ctx: MethodContext, method: str, t: int, fit: FitResult, history: list[dict]) -> dict:
    """Evaluate iteration t's student over the sampler pool (a chunk of ``eval.batch_size`` examples per call,
    merged as one evaluation), log the iteration to metrics.jsonl, append it to ``history``. Before the last
    iteration only the split's first ``eval.curve_size`` examples are evaluated (whole chunks of it)."""
    cfg, explains = ctx.cfg, METHODS[method].explains
    last = t == cfg.run.iterations - 1
    examples = ctx.eval if last or cfg.eval.curve_size is None else ctx.eval[: cfg.eval.curve_size]
    spans = evaluation_chunks(len(examples), cfg.eval, explains)
    with ctx.timer.phase("evaluate", method=method, iteration=t) as progress:
        calls = [
            (fit.student_dir, ref, cfg.eval, cfg.student.max_input_length, explained)
            for ref, (_, _, explained) in zip(ctx.eval_refs()[: len(spans)], spans, strict=True)
        ]
        progress.expect(len(examples), "questions")
        sizes = [end - start for start, end, _ in spans]
        parts = map_chunks(ctx.services.samplers, "decode_evaluation", calls, progress, sizes)
        progress.note = f"{len(examples)} questions"
        evaluation = merge_evaluations(parts, examples, cfg.data.task, explains, cfg.eval.num_examples_in_report)
    record = {
        **{k: v for k, v in fit.metrics.items() if isinstance(v, (int, float))},
        "iteration": t,
        "accuracy": evaluation["accuracy"],
        "examples": evaluation["examples"],
        "correct": evaluation["correct"],
    }
    if evaluation["rationale_accuracy"] is not None:
        record["rationale_accuracy"] = evaluation["rationale_accuracy"]
        record["rationale_correct"] = evaluation["rationale_correct"]
    if evaluation["rationale_quality"] is not None:
        record["rationale_quality"] = evaluation["rationale_quality"]
        record["rationale_fully_correct"] = evaluation["rationale_fully_correct"]
    history.append(record)
    if last:  # every answer and rationale of the result, for a pairwise rating (jobs.rate_rationales)
        lines = "".join(json.dumps(r) + "\n" for r in prediction_records(examples, evaluation))
        atomic_write_text(ctx.seed_dir / method / PREDICTIONS_FILE, lines)
    ctx.metrics.log("iteration", method=method, **{k: v for k, v in record.items() if k not in PER_EXAMPLE})
    from_rationale = (
        f", from its rationale {record['rationale_accuracy']:.3f}" if "rationale_accuracy" in record else ""
    )
    print(
        f"[{method}] iteration {t + 1}/{ctx.cfg.run.iterations}: accuracy {record['accuracy']:.3f}{from_rationale}, "
        f"loss {record.get('loss', float('nan')):.3f}",
        flush=True,
    )
    return record


def fit_note(result: FitResult) -> str:
    """A fit's end line: its steps, rate and loss."""
    steps, rate, loss = (result.metrics.get(k, float("nan")) for k in ("steps", "samples_per_s", "loss"))
    return f"{steps} steps, {rate:.0f} questions/s, loss {loss:.3f}"


def summarize(history: list[dict], student_dir: str) -> MethodSummary:
    """A method's result for the report from its iterations' records; the last one's per-example results."""
    last = history[-1]
    explains = "rationale_accuracy" in last
    return MethodSummary(
        accuracy_per_iteration=[h["accuracy"] for h in history],
        examples=last["examples"],
        student_dir=student_dir,
        history=[{k: v for k, v in h.items() if k not in PER_EXAMPLE} for h in history],
        rationale_accuracy_per_iteration=[h["rationale_accuracy"] for h in history] if explains else None,
        correct=last.get("correct"),  # absent from the manifests of runs before it was recorded
        rationale_correct=last.get("rationale_correct"),
        rationale_quality=last.get("rationale_quality"),
        rationale_fully_correct=last.get("rationale_fully_correct"),
    )


def _run_baseline(ctx: MethodContext, method: str, init_dir: Path, method_dir: Path) -> MethodResult:
    """A method without negatives (DSS, fine-tuning): the same items every iteration. A finished one is read
    back on ``--resume``; an unfinished one starts again."""
    done = method_dir / "summary.json"
    if ctx.resume and done.is_file():
        summary = MethodSummary.from_dict(json.loads(done.read_text(encoding="utf-8")))
        if len(summary.history) == ctx.cfg.run.iterations:  # not when the resume extends the run
            print(f"[{method}] finished before the resume: {done}", flush=True)
            return MethodResult(summary)
    items = build_items(ctx.cfg, method, ctx.train, ctx.votes_of(method), {})
    history: list[dict] = []
    for t in range(ctx.cfg.run.iterations):
        with ctx.timer.phase("train", method=method, iteration=t) as progress:
            result = ctx.fit.train(Stage(method, t, str(init_dir), str(method_dir / "students")), items, progress)
            progress.note = fit_note(result)
        evaluate_and_record(ctx, method, t, result, history)
    summary = summarize(history, result.student_dir)
    atomic_write_text(done, json.dumps(summary.to_dict()))  # whole or absent
    return MethodResult(summary)
