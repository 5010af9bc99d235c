"""QCRD's iterations for one seed (``QcrdRun``), as ``jobs.method_run.run_method`` starts them.

A QCRD iteration t works on the questions its batches draw (``student_iteration.iteration_positions``, known
before it starts) in six named steps: ``negatives`` (sample the student snapshot of iteration t - j; with
``negatives.sample_ahead``, while t - 1 trains) -> ``score`` (the judge weighs every positive and negative) ->
``train`` (the fit trains the student for one iteration) -> ``update_judge`` (its online update on what was
scored) -> ``evaluate`` (the new snapshot, recorded as every method records it) -> ``checkpoint`` (the
manifest, its ``latest`` marker last). ``--resume`` picks up after the last manifest: snapshot ring, judge (with
its optimizer and random state), optimizer state and history come back from it.

Negatives and judge scores run on pools of actors (``sampler.num_replicas`` student samplers,
``judge.num_replicas`` judges), cut into fixed chunks dealt round-robin, so any N gives the result of one
replica. The judge trains on its replica 0; ``actors.judge.sync_replicas`` hands the others its weights.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import ray  # this module is imported once the driver has set Ray's environment up (jobs.distill.run)

from actors.judge import sync_replicas
from actors.pool import broadcast, gather_chunks, map_chunks, submit_chunks
from actors.student_train import Stage
from jobs.method_run import MethodContext, MethodResult, evaluate_and_record, fit_note, summarize
from qcrd_ray.judge_separation import HeldOut, held_out_ids, separation
from qcrd_ray.manifest import (
    RunManifest,
    atomic_write_text,
    check_resumable,
    config_hash,
    file_hashes,
    read_manifest,
    verify_files,
    write_manifest,
)
from qcrd_ray.methods import (
    build_items,
    judge_pairs,
    pretrain_groups,
    scores_by_kind,
    update_groups,
    with_scores,
)
from qcrd_ray.records import Example, FitResult, TrainItem, Vote
from qcrd_ray.schedule import SnapshotRing, judge_lr_scale, snapshot_for
from qcrd_ray.sharding import chunk_seed, chunks, concat, merge_samples
from qcrd_ray.student_iteration import iteration_positions

JUDGE_SCORES_FILE = "judge_scores.json"  # in a QCRD method dir: the last iteration's scores, by kind


@dataclass(frozen=True)
class PendingNegatives:
    """An iteration's student negatives on their way: snapshot ``snapshot`` samples chunk c (``sizes[c]``
    questions) into ``refs[c]``."""

    snapshot: int
    refs: list
    sizes: list[int]


class QcrdRun:
    """QCRD's iterations for one seed: the snapshot ring, the judge pool, the streaming fit, and the history."""

    def __init__(self, ctx: MethodContext, init_dir: Path, method_dir: Path):
        self.ctx, self.cfg, self.method_dir = ctx, ctx.cfg, method_dir
        self.method = ctx.cfg.run.method  # the one contrastive method of a run: baselines are never contrastive
        self.run_dir = ctx.seed_dir.parent  # checkpoints are loaded from inside it only
        self.evicted: list[str] = []  # snapshots out of the ring, deleted once the next manifest is written
        self.files: dict[str, str] = {}  # the last manifest's file hashes, reused for the files it already had
        self.judges = ctx.services.start_judge(init_dir, ctx.seed) if self.cfg.run.use_judge else []
        # The questions the judge never trains on, where its separation is measured every iteration.
        judge = self.cfg.judge
        self.held_out_ids = held_out_ids([ex.id for ex in ctx.train], judge.holdout_fraction, ctx.seed)
        self.held_out = HeldOut.build(ctx.train, ctx.votes, self.held_out_ids, ctx.seed, judge.mask_probability)
        self.separation: dict[str, float] = {}  # the judge's held-out AUCs in the iteration it weighs
        self.manifest = read_manifest(method_dir) if ctx.resume else None
        if self.manifest is not None:
            check_resumable(self.manifest, self.cfg, method_dir)
            self.ring = SnapshotRing.from_dict(self.manifest.snapshot_ring)
            verify_files(
                self.run_dir,
                self.manifest,
                [self.manifest.optimizer_state, self.manifest.judge_path, *(path for _, path in self.ring)],
            )
            self.history = list(self.manifest.metrics_history)
            self.files = dict(self.manifest.files)
            self.optimizer_state = self.manifest.optimizer_state
            if self.judges and self.manifest.judge_path:
                broadcast(self.judges, "load", self.manifest.judge_path)  # every replica: the same D again
            print(f"[{self.method}] resuming after iteration {self.manifest.completed_iteration + 1}", flush=True)
        else:
            self.ring, self.history, self.optimizer_state = SnapshotRing.for_lag(self.cfg.negatives.lag), [], None
            self.ring.push(0, str(init_dir))
        # The last scored iteration's judge scores (the report's figure); a resumed seed with nothing left to
        # score reads them back.
        scores = method_dir / JUDGE_SCORES_FILE
        self.judge_scores: dict[str, list[float]] = (
            json.loads(scores.read_text()) if self.manifest and scores.is_file() else {}
        )

    def run(self) -> MethodResult:
        first = len(self.history)
        ahead = self.sample_ahead(first)  # sampled while the judge pretrains: their snapshot needs no judge
        if not self.history:
            self.pretrain_judge()
        for t in range(first, self.cfg.run.iterations):
            student_samples = self.negatives(t, ahead)
            positions = self.iteration_questions(t)
            train, votes = [self.ctx.train[i] for i in positions], [self.ctx.votes[i] for i in positions]
            items = self.score(t, build_items(self.cfg, self.method, train, votes, student_samples), student_samples)
            ahead = self.sample_ahead(t + 1)  # sampled while t trains
            result = self.train(t, items, positions)
            self.update_judge(t, items)
            figures = {
                "judge_lr_scale": self.lr_scale(t),
                "questions_sampled": len(student_samples),
                "questions_trained": len(items),
                **self.separation,
            }
            fit = replace(result, metrics={**result.metrics, **figures})
            evaluate_and_record(self.ctx, self.method, t, fit, self.history)
            self.checkpoint(t, result.student_dir)
        self.ctx.services.stop_judges()
        return MethodResult(summarize(self.history, self.ring.latest()[1]), self.judge_scores)

    # -- the steps ---------------------------------------------------------------------------------------------

    def pretrain_judge(self) -> None:
        """Replica 0 of the judge pool pretrains; the others take its weights."""
        if not self.judges or self.cfg.judge.pretrain_steps == 0:
            return
        with self.ctx.timer.phase("judge_pretrain", method=self.method) as progress:
            train, votes = self.judge_training()
            info = ray.get(self.judges[0].pretrain.remote(pretrain_groups(self.cfg, train, votes)))
            sync_replicas(self.judges)
            progress.note = f"{info['steps']} steps, loss {info['loss_first']:.3f} -> {info['loss_last']:.3f}"
        self.ctx.metrics.log(
            "judge_pretrain", method=self.method, **{k: v for k, v in info.items() if isinstance(v, (int, float))}
        )

    def judge_training(self) -> tuple[list[Example], list[Vote]]:
        """The training questions (and their votes) the judge may train on: all but the held-out ones."""
        kept = [(ex, v) for ex, v in zip(self.ctx.train, self.ctx.votes, strict=True) if ex.id not in self.held_out_ids]
        return [ex for ex, _ in kept], [v for _, v in kept]

    def iteration_questions(self, t: int) -> list[int]:
        """The positions, in the training questions, of those iteration t's batches draw (all of them under
        ``train.group_by_length``): the only ones it samples, scores and trains on."""
        positions = iteration_positions(len(self.ctx.train), self.cfg, self.ctx.seed, t)
        return list(range(len(self.ctx.train))) if positions is None else positions

    def submit_negatives(self, t: int) -> PendingNegatives | None:
        """Start sampling iteration t's negatives from snapshot t - j (the oldest one there is, early on) for its
        questions, over the sampler pool: chunk c of ``negatives.batch_size`` questions with ``chunk_seed(base,
        c)``, base the iteration's seed, so when it runs, and on how many replicas, changes nothing."""
        if not self.cfg.run.student_negatives:
            return None
        lagged = snapshot_for(t, self.cfg.negatives.lag)
        snapshot = self.ring.get(lagged)
        questions = [(self.ctx.train[i].id, self.ctx.train[i].input) for i in self.iteration_questions(t)]
        question_chunks = chunks(questions, self.cfg.negatives.batch_size)
        base = self.ctx.seed * 100_003 + t
        calls = [
            (snapshot, chunk, self.cfg.negatives, chunk_seed(base, c), self.cfg.student.max_input_length)
            for c, chunk in enumerate(question_chunks)
        ]
        self.ctx.metrics.log("negatives_submitted", method=self.method, iteration=t, snapshot=lagged)
        refs = submit_chunks(self.ctx.services.samplers, "sample", calls)
        return PendingNegatives(lagged, refs, [len(chunk) for chunk in question_chunks])

    def sample_ahead(self, t: int) -> PendingNegatives | None:
        """Iteration t's negatives submitted now, before the work in front of them ends (``negatives.sample_ahead``):
        their snapshot, t - j, exists once t - 1 has started (at the latest it is the one t - 1 starts from)."""
        if self.cfg.negatives.sample_ahead and t < self.cfg.run.iterations:
            return self.submit_negatives(t)
        return None

    def negatives(self, t: int, ahead: PendingNegatives | None = None) -> dict[str, list[str]]:
        """Iteration t's student negatives by question id: those sampled ahead, or sampled now."""
        pending = ahead or self.submit_negatives(t)
        if pending is None:
            return {}
        with self.ctx.timer.phase("negatives", method=self.method, iteration=t) as progress:
            progress.expect(sum(pending.sizes), "questions")
            samples = merge_samples(gather_chunks(pending.refs, progress, pending.sizes))
            progress.note = f"{sum(map(len, samples.values()))} samples of snapshot {pending.snapshot}"
            return samples

    def score(self, t: int, items: list[TrainItem], student_samples: dict[str, list[str]]) -> list[TrainItem]:
        """The judge's score for every positive and negative (neutral without a judge), and for the held-out
        questions' rationales of each kind (its separation), over the judge pool in chunks of
        ``judge.score_batch_size`` pairs, concatenated in order."""
        if not self.judges:
            return items
        item_pairs = judge_pairs(items)
        probe = self.held_out.pairs(self.ctx.train, student_samples)
        pairs = [*item_pairs, *(pair for kind_pairs in probe.values() for pair in kind_pairs)]
        calls = [(chunk,) for chunk in chunks(pairs, self.cfg.judge.score_batch_size)]
        with self.ctx.timer.phase("judge_score", method=self.method, iteration=t) as progress:
            progress.expect(len(pairs), "rationales")
            scores = concat(map_chunks(self.judges, "score", calls, progress, [len(chunk) for (chunk,) in calls]))
            progress.note = f"{len(pairs)} rationales"
        items = with_scores(items, scores[: len(item_pairs)])
        rest = iter(scores[len(item_pairs) :])
        self.separation = separation({kind: [next(rest) for _ in kind_pairs] for kind, kind_pairs in probe.items()})
        if self.separation:
            aucs = ", ".join(f"{key.removeprefix('judge_auc_')} {auc:.2f}" for key, auc in self.separation.items())
            print(f"[{self.method}] iteration {t + 1}: the judge's held-out AUC against {aucs}", flush=True)
        self.judge_scores = scores_by_kind(items, student_samples)
        atomic_write_text(self.method_dir / JUDGE_SCORES_FILE, json.dumps(self.judge_scores))
        for kind, kind_scores in self.judge_scores.items():
            self.ctx.metrics.log_scores(kind, kind_scores, method=self.method, iteration=t)
        return items

    def train(self, t: int, items: list[TrainItem], positions: list[int]) -> FitResult:
        """Iteration t in the seed's fit: from the latest snapshot (and, resumed, the manifest's optimizer
        state) when QCRD's engine is not built yet; in memory after. The workers get one entry per training
        question, ``items[k]`` at ``positions[k]`` and None where no batch draws."""
        handed: list[TrainItem | None] = [None] * len(self.ctx.train)
        for position, item in zip(positions, items, strict=True):
            handed[position] = item
        stage = Stage(self.method, t, self.ring.latest()[1], str(self.method_dir / "snapshots"), self.optimizer_state)
        with self.ctx.timer.phase("train", method=self.method, iteration=t) as progress:
            result = self.ctx.fit.train(stage, handed, progress)
            progress.note = fit_note(result)
        self.optimizer_state = result.checkpoint
        return result

    def lr_scale(self, t: int) -> float:
        return judge_lr_scale(self.cfg.loss, t)

    def update_judge(self, t: int, items: list[TrainItem]) -> None:
        """Replica 0 of the judge pool updates online; the others take its weights before they score again."""
        if not self.judges or (t + 1) % self.cfg.judge.update_interval != 0:
            return
        with self.ctx.timer.phase("judge_update", method=self.method, iteration=t):
            trained = [it for it in items if it.id not in self.held_out_ids]
            ray.get(self.judges[0].update.remote(update_groups(trained), self.lr_scale(t)))
            sync_replicas(self.judges)

    def checkpoint(self, t: int, student_dir: str) -> None:
        """Push iteration t's student into the ring, save the judge (replica 0's: every replica holds the same
        D), then write the manifest with the sha256 of every file it names. The snapshot the previous iteration
        evicted is deleted only now, so the previous manifest stays whole for as long as this one is the latest
        (a damaged latest falls back to it)."""
        evicted = [path for _, path in self.ring.push(t + 1, str(student_dir))]
        judge_path = None
        if self.judges:
            judge_path = ray.get(self.judges[0].save.remote(str(self.method_dir / "judge" / f"iter_{t + 1:04d}")))
        kept = [p for p in (self.optimizer_state, judge_path, *(path for _, path in self.ring)) if p]
        manifest = RunManifest(
            run_name=self.cfg.run.name,
            config_hash=config_hash(self.cfg),
            completed_iteration=t,
            snapshot_ring=self.ring.to_dict(),
            judge_path=judge_path,
            optimizer_state=self.optimizer_state,
            metrics_history=tuple(self.history),
            files=file_hashes(self.run_dir, kept, self.files),
        )
        write_manifest(self.method_dir, manifest)
        self.files = manifest.files
        for path in self.evicted:
            if Path(path).is_relative_to(self.method_dir):  # snapshot 0 is shared with the other methods
                shutil.rmtree(path, ignore_errors=True)
        self.evicted = evicted
