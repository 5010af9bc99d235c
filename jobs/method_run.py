"""One method of a run (QCRD, its ablations, DSS or fine-tuning), iteration by iteration.

A QCRD iteration t: sample negatives from the student snapshot of iteration t - j -> the judge scores every
positive and negative -> the run's one Ray Train fit (``StreamingFit``) trains the student on them for one
iteration -> the judge's online update -> push the new snapshot into the ring -> evaluate -> write the
manifest (the ``latest`` marker last). ``--resume`` picks up after the last manifest: snapshot ring, judge
(with its optimizer and random state), optimizer state, a3 and history come back from it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcrd_ray.config import Config
from qcrd_ray.records import Example, TrainItem, Vote


@dataclass
class SeedServices:
    """A seed's long-lived actors beside the trainer: the student sampler (negatives, evaluation) for every
    method, and a slot for QCRD's judge. Half a CPU each, packed in one placement group
    (``{run}/seed_{s}/services``): together they fill one CPU of one node, so a whole CPU stays free for a
    Ray Train worker even on a 2-CPU laptop or a cluster of 1-CPU nodes."""

    students: Any  # StudentSamplerActor
    group: Any  # PlacementGroup; bundle 1 is the judge's

    @classmethod
    def start(cls, cfg: Config, seed: int) -> SeedServices:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from actors.placement import reserve
        from actors.student_sampler import StudentSamplerActor

        name = f"{cfg.run.name}/seed_{seed}"
        group = reserve("student services", [{"CPU": 0.5}, {"CPU": 0.5}], strategy="PACK",
                        timeout_s=cfg.cluster.placement_timeout_s, autoscaling=cfg.cluster.autoscaling,
                        name=f"{name}/services")  # fmt: skip
        students = StudentSamplerActor.options(
            name=f"{name}/student_sampler", num_cpus=0.5, scheduling_strategy=PlacementGroupSchedulingStrategy(group, 0)
        ).remote()
        students.warm_up.remote()  # its imports overlap the first fit's start-up instead of the first evaluation
        return cls(students, group)

    def judge_strategy(self):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(self.group, 1)

    def stop(self) -> None:
        import ray

        ray.kill(self.students)
        ray.util.remove_placement_group(self.group)


@dataclass
class MethodResult:
    summary: dict  # accuracy_per_iteration, final_accuracy, examples, student_dir
    judge_scores: dict[str, list[float]] = field(default_factory=dict)


def initial_student(cfg: Config, seed: int, train: list[Example], votes: list[Vote], seed_dir: Path) -> Path:
    """Snapshot 0, shared by every method of a seed: the untrained student and its tokenizer."""
    from qcrd_ray.models import build_student, build_tokenizer, save_student
    from qcrd_ray.tasks import EXPLAIN, PREDICT

    path = seed_dir / "initial_student"
    if (path / "config.json").is_file():
        return path
    texts = [PREDICT + ex.input for ex in train] + [EXPLAIN + ex.input for ex in train]
    texts += [ex.label for ex in train] + [r.text for v in votes for r in (*v.positives, *v.negatives)]
    tokenizer = build_tokenizer(cfg.student, texts)
    model = build_student(cfg.student, tokenizer, seed=seed)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_student(model, tokenizer, tmp)
    tmp.rename(path)  # whole or absent: a killed build never looks finished
    return path


def first_teacher_rationale(vote: Vote) -> tuple[str, ...]:
    """DSS's single teacher rationale: the first sample, whatever answer it reached."""
    samples = sorted((*vote.positives, *vote.negatives), key=lambda r: r.source != "teacher")
    return (samples[0].text,) if samples else ()


def build_items(
    cfg: Config, method: str, train: list[Example], votes: list[Vote], student_samples: dict[str, list[str]]
) -> list[TrainItem]:
    """This iteration's training items: positives and negatives per question (scores filled in later)."""
    items = []
    cap = cfg.negatives.max_per_question
    for ex, vote in zip(train, votes, strict=True):
        label = vote.majority if cfg.voting.use_voted_label and vote.majority is not None else ex.label
        if method == "finetune":
            positives, negatives = (), ()
        elif method == "dss" or not cfg.run.self_consistency:
            positives, negatives = first_teacher_rationale(vote), ()
        else:
            positives = tuple(r.text for r in vote.positives)
            negatives = tuple(r.text for r in vote.negatives) if cfg.negatives.include_teacher_minority else ()
        if method == "qcrd":
            negatives = (*student_samples.get(ex.id, ()), *negatives)[:cap]
        ones = lambda texts: tuple(1.0 for _ in texts)  # noqa: E731 - judge ablated: every weight is 1
        items.append(TrainItem(ex.id, ex.input, label, positives, ones(positives), negatives, ones(negatives)))
    return items


def judge_groups(items: list[TrainItem]) -> list[tuple[str, list[str], list[str]]]:
    return [(it.input, list(it.positives), list(it.negatives)) for it in items if it.positives]


def score_items(judge, items: list[TrainItem]) -> list[TrainItem]:
    """The judge's score s for every positive and negative, in one large batch."""
    import ray

    pairs = [(it.input, text) for it in items for text in (*it.positives, *it.negatives)]
    scores = iter(ray.get(judge.score.remote(pairs)))
    scored = []
    for it in items:
        pos = tuple(next(scores) for _ in it.positives)
        neg = tuple(next(scores) for _ in it.negatives)
        scored.append(TrainItem(it.id, it.input, it.label, it.positives, pos, it.negatives, neg))
    return scored


def run_method(
    cfg: Config,
    method: str,
    seed: int,
    inputs,
    votes: list[Vote],
    seed_dir: Path,
    services: SeedServices,
    timer,
    metrics,
    resume: bool = False,
) -> MethodResult:
    """Train one method for cfg.run.iterations iterations and evaluate every iteration's student.

    ``services``: the seed's student sampler (QCRD's negatives, every evaluation) and the judge's slot.
    """
    init_dir = initial_student(cfg, seed, inputs.train, votes, seed_dir)
    method_dir = seed_dir / method
    method_dir.mkdir(parents=True, exist_ok=True)
    if method == "qcrd":
        return _run_qcrd(cfg, seed, inputs, votes, init_dir, method_dir, services, timer, metrics, resume)
    return _run_baseline(cfg, method, seed, inputs, votes, init_dir, method_dir, services.students, timer, metrics)


def _evaluate(cfg: Config, inputs, students, snapshot: Path) -> dict:
    import ray

    return ray.get(
        students.evaluate.remote(
            str(snapshot),
            inputs.eval,
            cfg.data.task,
            cfg.eval.max_new_tokens,
            cfg.eval.batch_size,
            cfg.eval.num_examples_in_report,
            cfg.negatives.max_new_tokens,
        )
    )


def _summary(history: list[dict], student_dir: Path) -> dict:
    return {
        "accuracy_per_iteration": [h["accuracy"] for h in history],
        "final_accuracy": history[-1]["accuracy"],
        "examples": history[-1]["examples"],
        "student_dir": str(student_dir),
        "history": [{k: v for k, v in h.items() if k != "examples"} for h in history],
    }


def _run_baseline(cfg, method, seed, inputs, votes, init_dir, method_dir, students, timer, metrics) -> MethodResult:
    """DSS or fine-tuning: the data never change, so every iteration runs inside one Ray Train fit."""
    from actors.student_train import train_student

    items = build_items(cfg, method, inputs.train, votes, {})
    out_dir = method_dir / "students"
    storage = method_dir / "ray_train"
    shutil.rmtree(storage, ignore_errors=True)  # a fresh fit: Ray Train would resume a same-named one
    with timer.phase("train", method=method, iterations=cfg.run.iterations):
        result = train_student(
            cfg,
            method,
            items,
            str(init_dir),
            str(out_dir),
            iteration=0,
            storage_path=str(storage.resolve()),
            seed=seed,
            iterations_in_fit=cfg.run.iterations,
        )
    history = []
    for t, train_metrics in enumerate(result["iterations"]):
        with timer.phase("evaluate", method=method, iteration=t):
            evaluation = _evaluate(cfg, inputs, students, Path(train_metrics["student_dir"]))
        record = {
            "iteration": t,
            "accuracy": evaluation["accuracy"],
            "examples": evaluation["examples"],
            **{k: v for k, v in train_metrics.items() if isinstance(v, (int, float))},
        }
        metrics.log("iteration", method=method, **{k: v for k, v in record.items() if k != "examples"})
        print(f"[{method}] iteration {t + 1}/{cfg.run.iterations}: accuracy {record['accuracy']:.3f}", flush=True)
        history.append(record)
    return MethodResult(_summary(history, Path(result["iterations"][-1]["student_dir"])))


def _run_qcrd(cfg, seed, inputs, votes, init_dir, method_dir, services, timer, metrics, resume) -> MethodResult:
    import ray

    from actors.discriminator import DiscriminatorActor
    from actors.train_feed import StreamingFit
    from qcrd_ray.manifest import RunManifest, capture_rng_state, config_hash, read_manifest, write_manifest
    from qcrd_ray.schedule import SnapshotRing, alpha_disc_at, snapshot_for

    name = f"{cfg.run.name}/seed_{seed}"
    students = services.students
    judge = DiscriminatorActor.options(
        name=f"{name}/discriminator", num_cpus=0.5, scheduling_strategy=services.judge_strategy()
    ).remote(cfg.discriminator, str(init_dir), seed)
    manifest = read_manifest(method_dir) if resume else None
    if manifest is not None:
        ring = SnapshotRing.from_dict(manifest.snapshot_ring)
        history = list(manifest.metrics_history)
        optimizer_state = manifest.optimizer_state
        if manifest.discriminator_path:
            ray.get(judge.load.remote(manifest.discriminator_path))
        print(f"[qcrd] resuming after iteration {manifest.completed_iteration + 1}", flush=True)
    else:
        ring, history, optimizer_state = SnapshotRing.for_lag(cfg.negatives.lag), [], None
        ring.push(0, str(init_dir))
    start = len(history)
    judge_scores: dict[str, list[float]] = {}
    # One Ray Train fit for every iteration still to run: its workers wait for each iteration's items. It
    # starts first, so that its worker group comes up while the judge pretrains and the negatives are sampled.
    storage = method_dir / "ray_train" / f"from_iter_{start + 1:04d}"
    shutil.rmtree(storage, ignore_errors=True)  # a fit killed in its first iteration starts afresh
    fit = StreamingFit(cfg, ring.latest()[1], str(method_dir / "snapshots"), start, cfg.run.iterations - start,
                       str(storage.resolve()), seed, optimizer_state) if start < cfg.run.iterations else None  # fmt: skip
    with fit or contextlib.nullcontext():
        if manifest is None and cfg.run.use_discriminator and cfg.discriminator.pretrain_steps > 0:
            with timer.phase("judge_pretrain", method="qcrd"):
                groups = [
                    (ex.input, [r.text for r in v.positives], [r.text for r in v.negatives])
                    for ex, v in zip(inputs.train, votes, strict=True)
                    if v.positives
                ]
                info = ray.get(judge.pretrain.remote(groups))
            metrics.log("judge_pretrain", **{k: v for k, v in info.items() if isinstance(v, (int, float))})
        for t in range(start, cfg.run.iterations):
            started = time.perf_counter()
            student_samples: dict[str, list[str]] = {}
            if cfg.run.student_negatives:
                snapshot = ring.get(snapshot_for(t, cfg.negatives.lag))
                with timer.phase("negatives", method="qcrd", iteration=t):
                    student_samples = ray.get(
                        students.sample.remote(
                            snapshot,
                            [(ex.id, ex.input) for ex in inputs.train],
                            cfg.negatives.samples_per_question,
                            cfg.negatives.temperature,
                            cfg.negatives.max_new_tokens,
                            cfg.negatives.batch_size,
                            seed * 100_003 + t,
                        )
                    )
            items = build_items(cfg, "qcrd", inputs.train, votes, student_samples)
            if cfg.run.use_discriminator:
                with timer.phase("judge_score", method="qcrd", iteration=t):
                    items = score_items(judge, items)
                judge_scores = _score_sets(items, student_samples)
                for kind, scores in judge_scores.items():
                    metrics.log_scores(kind, scores)
            with timer.phase("train", method="qcrd", iteration=t):
                result = fit.train(t, items)
            optimizer_state = result["optimizer_state"]
            alpha_disc = alpha_disc_at(cfg.loss, t)
            if cfg.run.use_discriminator and (t + 1) % cfg.discriminator.update_interval == 0:
                with timer.phase("judge_update", method="qcrd", iteration=t):
                    ray.get(judge.update.remote(judge_groups(items), alpha_disc))
            for _, evicted in ring.push(t + 1, str(result["student_dir"])):
                if Path(evicted).is_relative_to(method_dir):  # snapshot 0 is shared with the other methods
                    shutil.rmtree(evicted, ignore_errors=True)
            with timer.phase("evaluate", method="qcrd", iteration=t):
                evaluation = _evaluate(cfg, inputs, students, Path(result["student_dir"]))
            judge_path = ray.get(judge.save.remote(str(method_dir / "judge" / f"iter_{t + 1:04d}")))
            record = {
                **{k: v for k, v in result.items() if isinstance(v, (int, float))},
                "iteration": t,
                "accuracy": evaluation["accuracy"],
                "examples": evaluation["examples"],
                "alpha_disc": alpha_disc,
                "seconds": time.perf_counter() - started,
            }
            history.append(record)
            metrics.log("iteration", method="qcrd", **{k: v for k, v in record.items() if k != "examples"})
            print(
                f"[qcrd] iteration {t + 1}/{cfg.run.iterations}: accuracy {record['accuracy']:.3f}, "
                f"loss {record.get('loss', float('nan')):.3f}, {record['seconds']:.0f} s",
                flush=True,
            )
            write_manifest(
                method_dir,
                RunManifest(
                    run_name=cfg.run.name,
                    config_hash=config_hash(cfg),
                    completed_iteration=t,
                    alpha_disc=alpha_disc,
                    snapshot_ring=ring.to_dict(),
                    discriminator_version=ray.get(judge.state.remote())["version"],
                    discriminator_path=judge_path,
                    data_cursor=t + 1,
                    rng_state=capture_rng_state(),
                    teacher_cache_key=None,
                    metrics_history=history,
                    optimizer_state=optimizer_state,
                ),
            )
    ray.kill(judge)
    return MethodResult(_summary(history, Path(ring.latest()[1])), judge_scores)


def _score_sets(items: list[TrainItem], student_samples: dict[str, list[str]]) -> dict[str, list[float]]:
    """Judge scores split into positives, student negatives and teacher negatives (the paper's Fig. 6)."""
    positives, student, teacher = [], [], []
    for it in items:
        positives += it.positive_scores
        n_student = len(student_samples.get(it.id, ()))  # build_items puts student negatives first
        student += it.negative_scores[:n_student]
        teacher += it.negative_scores[n_student:]
    return {"positives": positives, "student_negatives": student, "teacher_negatives": teacher}
