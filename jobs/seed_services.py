"""A seed's long-lived actors beside its Ray Train fit: the student samplers and the judges, in one placement
group. Every method of the seed uses the samplers (negatives, evaluation); QCRD starts and stops the judges."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import ray  # imported once the driver has set Ray's environment up (jobs.distill.run)
from ray.util.placement_group import PlacementGroup

from actors.judge import JudgeActor
from actors.placement import reserve
from actors.pool import kill_pool, start_pool
from actors.student_sampler import StudentSamplerActor
from qcrd_ray.config import Config
from qcrd_ray.models import judge_encoder


@dataclass
class SeedServices:
    """A seed's long-lived actors beside the trainer: the pool of student samplers (negatives, evaluation) for
    every method, and slots for QCRD's pool of judges, packed in one placement group
    (``{run}/seed_{s}/services``), a bundle per replica with what ``sampler`` and ``judge`` ask for. By default
    one replica of each at half a CPU: together they fill one CPU of one node, so a whole CPU stays free for a
    Ray Train worker even on a 2-CPU laptop or a cluster of 1-CPU nodes."""

    cfg: Config
    name: str  # {run}/seed_{s}
    samplers: list  # StudentSamplerActor replicas: bundles 0 .. S - 1
    group: PlacementGroup  # the samplers' bundles, then the judges' (S .. S + J - 1)
    judges: list = field(default_factory=list)  # JudgeActor replicas, once QCRD has started them

    @classmethod
    def start(cls, cfg: Config, seed: int) -> SeedServices:
        name = f"{cfg.run.name}/seed_{seed}"
        bundles = [_bundle(cfg.sampler)] * cfg.sampler.num_replicas + [_bundle(cfg.judge)] * cfg.judge.num_replicas
        group = reserve(
            "student services",
            bundles,
            strategy="PACK",
            timeout_s=cfg.cluster.placement_timeout_s,
            autoscaling=cfg.cluster.autoscaling,
            name=f"{name}/services",
        )
        samplers = start_pool(
            StudentSamplerActor,
            f"{name}/student_sampler",
            cfg.sampler.num_replicas,
            group,
            0,
            cfg.sampler.num_gpus > 0,
            2,  # snapshots cached: the latest and the one negatives come from
            cfg.sampler.dtype,
            num_cpus=cfg.sampler.num_cpus,
            num_gpus=cfg.sampler.num_gpus,
        )
        for sampler in samplers:
            sampler.warm_up.remote()  # imports overlap the first fit's start-up instead of the first evaluation
        return cls(cfg, name, samplers, group)

    def start_judge(self, student_dir: Path, seed: int) -> list:
        """``judge.num_replicas`` judges on the initial student ``student_dir``, all built alike from ``seed`` (the
        same D until replica 0 trains). ``judge.encoder`` is resolved here, where a relative path means what the
        user meant: an actor's working directory is not the driver's."""
        judge = replace(self.cfg.judge, encoder=judge_encoder(self.cfg.judge.encoder, student_dir))
        self.judges = start_pool(
            JudgeActor,
            f"{self.name}/judge",
            judge.num_replicas,
            self.group,
            self.cfg.sampler.num_replicas,
            judge,
            str(student_dir),
            seed,
            num_cpus=judge.num_cpus,
            num_gpus=judge.num_gpus,
        )
        return self.judges

    def stop_judges(self) -> None:
        kill_pool(self.judges)
        self.judges = []

    def stop(self) -> None:
        kill_pool(self.samplers)
        self.stop_judges()
        ray.util.remove_placement_group(self.group)


def _bundle(section) -> dict[str, float]:
    """A placement-group bundle for an actor's ``num_cpus`` / ``num_gpus`` (no GPU key when it asks for none)."""
    return {"CPU": section.num_cpus, **({"GPU": section.num_gpus} if section.num_gpus > 0 else {})}
