"""Pools sized to the cluster: ``sampler.num_replicas: auto`` and ``judge.num_replicas: auto``.

The rule (``cluster/SCALING.md`` projects with it): the Ray Train fit keeps its ``train.num_workers``; the GPUs it
leaves go one replica each to the student samplers and the judges, half each (the samplers take an odd one), and
each pool is then trimmed to the fewest replicas that take as few rounds of its passes' chunks (a pass's chunks
are dealt round-robin, so 5 replicas on 6 chunks take as long as 3). With fewer than two GPUs beside the fit, one
of each shares what there is. A count the config gives stands. Pools on the CPU (``num_gpus: 0``) count CPUs
instead: a replica takes its ``num_cpus``, a train worker one CPU.

Even halves, not a split by each pool's hours: those take measured rates (``benchmarks/scaling.py`` has them for
the presets' GPUs), which a run does not know when it starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from qcrd_ray.config import Config
from qcrd_ray.schedule import steps_per_iteration

AUTO = "auto"


@dataclass(frozen=True)
class PoolSizes:
    """What ``auto`` came to: ``samplers`` and ``judges`` replicas, from ``capacity`` GPUs (or CPUs) of which the
    fit kept ``fit``."""

    unit: str  # "GPU" or "CPU"
    capacity: float
    fit: float
    samplers: int
    judges: int

    def to_dict(self) -> dict:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict) -> PoolSizes:
        """``to_dict``'s output back; ValueError naming what does not fit."""
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            raise ValueError(f"expected the keys {sorted(f.name for f in fields(cls))}")
        for key in ("samplers", "judges"):
            if not isinstance(data[key], int) or data[key] < 1:
                raise ValueError(f"{key}: expected an integer >= 1, got {data[key]!r}")
        return cls(**data)

    def describe(self) -> str:
        return (
            f"{self.samplers} student sampler(s) and {self.judges} judge(s) for the {self.capacity - self.fit:g} "
            f"{self.unit}(s) beside the fit's {self.fit:g} ({self.capacity:g} in the cluster)"
        )


def questions_per_iteration(cfg: Config, num_questions: int) -> int:
    """The training questions an iteration samples and scores: those its batches draw (min(questions, steps x
    batch), as ``student_iteration.iteration_positions`` draws them); every one under ``train.group_by_length``."""
    if cfg.train.group_by_length:
        return num_questions
    return min(num_questions, steps_per_iteration(cfg.train, num_questions) * cfg.train.batch_size)


def fewest_replicas(replicas: int, passes: Sequence[int]) -> int:
    """The fewest replicas that take as few rounds of chunks as ``replicas`` do over every pass (chunk counts)."""
    return max([math.ceil(c / math.ceil(c / replicas)) for c in passes if c] or [1])


def split_pools(beside_fit: int, sampler_passes: Sequence[int], judge_passes: Sequence[int]) -> tuple[int, int]:
    """(samplers, judges) for ``beside_fit`` devices the fit leaves: half each, trimmed to what the chunks use."""
    if beside_fit < 2:
        return 1, 1
    samplers = (beside_fit + 1) // 2
    return fewest_replicas(samplers, sampler_passes), fewest_replicas(beside_fit - samplers, judge_passes)


def pass_chunks(cfg: Config, num_train: int, num_eval: int) -> tuple[list[int], list[int]]:
    """The chunk counts of one iteration's passes on each pool: the samplers' negatives and evaluations (the curve's
    and the last one), the judges' scoring (at most every teacher sample and student negative of a question)."""
    questions = questions_per_iteration(cfg, num_train)
    curve = num_eval if cfg.eval.curve_size is None else min(num_eval, cfg.eval.curve_size)
    pairs = questions * (cfg.teacher.num_samples + cfg.negatives.samples_per_question)
    sampler = [math.ceil(questions / cfg.negatives.batch_size)]
    sampler += [math.ceil(n / cfg.eval.batch_size) for n in (curve, num_eval)]
    return sampler, [math.ceil(pairs / cfg.judge.score_batch_size)]


def size_pools(cfg: Config, resources: dict[str, float], num_train: int, num_eval: int) -> PoolSizes:
    """The pools for a cluster whose resources (``ray.cluster_resources()``) are ``resources``."""
    on_gpu = cfg.sampler.num_gpus > 0 or cfg.judge.num_gpus > 0
    unit = "GPU" if on_gpu else "CPU"
    capacity = float(resources.get(unit, 0.0))
    fit = cfg.train.num_workers if on_gpu == cfg.train.use_gpu else 0
    per_replica = max(
        (section.num_gpus if on_gpu else section.num_cpus) for section in (cfg.sampler, cfg.judge)
    )  # both pools' replicas counted alike, by the larger ask
    beside = int((capacity - fit) // per_replica) if per_replica > 0 else 0
    samplers, judges = split_pools(beside, *pass_chunks(cfg, num_train, num_eval))
    if cfg.sampler.num_replicas != AUTO:
        samplers = cfg.sampler.num_replicas
    if cfg.judge.num_replicas != AUTO:
        judges = cfg.judge.num_replicas
    return PoolSizes(unit, capacity, float(fit), samplers, judges)


def with_pool_sizes(cfg: Config, sizes: PoolSizes) -> Config:
    """``cfg`` with its replica counts set to ``sizes``: what every actor, manifest and record of the run sees."""
    return replace(
        cfg,
        sampler=replace(cfg.sampler, num_replicas=sizes.samplers),
        judge=replace(cfg.judge, num_replicas=sizes.judges),
    )


def wants_sizing(cfg: Config) -> bool:
    return AUTO in (cfg.sampler.num_replicas, cfg.judge.num_replicas)
