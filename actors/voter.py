"""The self-consistency voter: a Ray actor (named ``{run}/voter``) that votes on sample batches as they arrive.

The teacher phase sends each batch the moment the teacher finishes it, so voting overlaps sampling instead
of waiting for the last batch. The voting logic itself is the core's ``qcrd_ray.voting``; this actor only
accumulates the votes and the per-sample correctness it needs for the phase's statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import ray

from qcrd_ray.config import VotingConfig
from qcrd_ray.records import Example, Rationale, Vote


class Voter:
    """Votes batches of ``(example, teacher samples)`` and keeps what ``stats`` summarises."""

    def __init__(self, cfg: VotingConfig, task):
        self.cfg = cfg
        self.task = task
        self.votes: dict[str, Vote] = {}
        self.samples_correct: dict[str, list[bool]] = {}
        self.first_sample_correct: dict[str, bool] = {}
        self.batch_sizes: list[int] = []  # arrival order: shows the votes were streamed batch by batch

    def add(self, batch: Sequence[tuple[Example, Sequence[Rationale]]]) -> list[Vote]:
        """Vote every question of the batch; returns its votes in batch order."""
        from qcrd_ray.voting import sample_correctness, vote

        out = []
        for example, samples in batch:
            v = vote(example, samples, self.cfg, self.task.is_correct)
            # A question sent twice would count twice in the statistics: keep the latest only.
            self.votes[example.id] = v
            flags = sample_correctness(samples, example.label, self.task.is_correct)
            self.samples_correct[example.id] = flags
            self.first_sample_correct[example.id] = bool(flags and flags[0])
            out.append(v)
        self.batch_sizes.append(len(batch))
        return out

    def stats(self) -> dict:
        """``voting.agreement_stats`` plus the teacher's first-sample accuracy (what one call per question
        would give) next to ``single_sample_accuracy`` (all samples) and ``self_consistency_accuracy``."""
        from qcrd_ray.voting import agreement_stats

        ids = list(self.votes)
        stats = agreement_stats([self.votes[i] for i in ids], [self.samples_correct[i] for i in ids])
        stats["first_sample_accuracy"] = sum(self.first_sample_correct.values()) / len(ids) if ids else 0.0
        stats["num_samples"] = sum(len(self.samples_correct[i]) for i in ids)
        stats["num_batches"] = len(self.batch_sizes)
        return stats

    def history(self) -> list[int]:
        """The size of every batch received, in arrival order."""
        return list(self.batch_sizes)


VoterActor = ray.remote(num_cpus=0)(Voter)  # light work: it must not take a CPU slot from a teacher
VoterActor.__doc__ = "Ray actor around ``Voter``; ``create_voter`` names it f'{run}/voter'."


def create_voter(cfg: VotingConfig, task, run_name: str):
    """Start the run's voter actor, named ``{run_name}/voter``, in the caller's namespace."""
    from actors.placement import start_actor

    return start_actor(VoterActor, f"{run_name}/voter", None, 0, cfg, task)
