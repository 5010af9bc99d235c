"""One iteration of student training: ``steps`` optimizer steps of the method's loss on a worker's shard.

Plain torch on any engine that has ``backward``, ``step``, ``train``, ``module`` and ``optimizer`` (DeepSpeed's, in
``actors/student_train.py``'s Ray Train loop; the benchmarks' in-process one). Batches, dropout and the
``sampling`` aggregation draw from seeds of (run seed, iteration, rank), so a rerun or a resumed run sees the
same draws on any machine.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from qcrd_ray.config import Config
from qcrd_ray.methods import encoded_length, get_method, student_loss
from qcrd_ray.records import TrainItem
from qcrd_ray.schedule import learning_rate, steps_per_iteration


@dataclass(frozen=True)
class Slot:
    """Where a worker's iteration sits: the method, the run seed, the iteration (0-based), the worker's rank
    in a world of ``world`` workers, and how many optimizer steps it takes."""

    method: str
    seed: int
    iteration: int
    steps: int
    rank: int = 0
    world: int = 1


class EngineView:
    """The student as ``rationale_ce`` sees it: the module's attributes, calls through the DeepSpeed engine.

    The engine's own ``config`` is DeepSpeed's, and its ``forward`` does ZeRO bookkeeping and autocast that
    a direct call of the module would skip.
    """

    def __init__(self, engine):
        self._engine = engine

    def __call__(self, *args, **kwargs):
        return self._engine(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._engine.module, name)


def iteration_seed(seed: int, iteration: int, rank: int, stream: str = "train") -> int:
    """A 63-bit seed from (run seed, iteration, rank): the same inputs give the same draws on any machine."""
    return random.Random(f"qcrd-student/{stream}/{seed}/{iteration}/{rank}").getrandbits(63)


# Batches per length group: 10% of the default's rationale tokens are padding this way, 27% in random batches.
GROUP_BATCHES = 16


def batch_indices(
    num_items: int,
    micro_batch: int,
    steps: int,
    generator,
    lengths: Sequence[int] | None = None,
) -> list[list[int]]:
    """Indices into a worker's shard for each step: fresh permutations of the shard, one after another.

    With ``lengths`` (one per item, ``train.group_by_length``) each permutation is cut into groups of
    ``GROUP_BATCHES`` batches and each group sorted longest first, as transformers' ``group_by_length`` does:
    a batch holds questions of similar length, so it pads less, and every question still comes once per pass.
    """
    if num_items < 1:
        raise ValueError("batch_indices: this worker's shard is empty")
    if lengths is not None and len(lengths) != num_items:
        raise ValueError(f"batch_indices: {len(lengths)} lengths for {num_items} items")
    group = GROUP_BATCHES * micro_batch
    order: list[int] = []
    while len(order) < micro_batch * steps:
        permutation = torch.randperm(num_items, generator=generator).tolist()
        if lengths is not None:
            groups = [permutation[s : s + group] for s in range(0, num_items, group)]
            permutation = [i for g in groups for i in sorted(g, key=lambda i: -lengths[i])]
        order += permutation
    return [order[s * micro_batch : (s + 1) * micro_batch] for s in range(steps)]


class FitStopped(Exception):
    """The driver stopped the fit in the middle of a stage (Ctrl-C, SIGTERM): the stage is left unsaved."""


def _stop_requested(local: bool, slot: Slot, device) -> bool:
    """Rank 0's answer, on every rank (a broadcast), so that every worker leaves at the same step."""
    if slot.world == 1:
        return local
    flag = torch.tensor([float(local)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def iteration_positions(num_items: int, cfg: Config, seed: int, iteration: int) -> list[int] | None:
    """The positions, in an iteration's list of ``num_items`` items (one per training question), that its
    batches draw on any of ``train.num_workers`` workers: ``train_iteration``'s draws, made ahead, so that
    only those questions are sampled, scored and handed over. None (all of them) under ``train.group_by_length``,
    whose batches follow the items' lengths, and those depend on the negatives."""
    if cfg.train.group_by_length:
        return None
    world = cfg.train.num_workers
    steps = steps_per_iteration(cfg.train, num_items)
    drawn: set[int] = set()
    for rank in range(world):
        order = torch.Generator().manual_seed(iteration_seed(seed, iteration, rank, "batches"))
        shard = len(range(rank, num_items, world))  # items[rank::world]
        for batch in batch_indices(shard, cfg.train.batch_size // world, steps, order):
            drawn.update(rank + i * world for i in batch)
    return sorted(drawn)


def train_iteration(
    engine,
    tokenizer,
    shard: list[TrainItem | None],
    cfg: Config,
    slot: Slot,
    on_step: Callable[[int], bool | None] | None = None,
) -> dict:
    """``slot.steps`` optimizer steps on this worker's shard (None where ``iteration_positions`` says no batch
    draws); metrics averaged over steps and workers, and ``questions_drawn`` summed over them.
    ``on_step(n)`` is called on every rank after the n-th step (rank 0's reports the progress); a true answer
    from rank 0's stops the iteration on every rank with ``FitStopped``.

    Each step's learning rate follows ``schedule.learning_rate`` over the run's ``run.iterations`` iterations.
    A figure a step does not have (NaN: no question of its batch had a negative) is left out of its mean.
    """
    torch.manual_seed(iteration_seed(slot.seed, slot.iteration, slot.rank, "dropout"))
    order = torch.Generator().manual_seed(iteration_seed(slot.seed, slot.iteration, slot.rank, "batches"))
    sampling = torch.Generator().manual_seed(iteration_seed(slot.seed, slot.iteration, slot.rank, "sampling"))
    micro = cfg.train.batch_size // slot.world
    model = EngineView(engine)
    engine.train()
    keys = ("loss", "loss_pred", *get_method(slot.method).metrics)
    per_step = []
    drawn: set[int] = set()
    started = time.perf_counter()
    done, total = slot.iteration * slot.steps, cfg.run.iterations * slot.steps  # the run's steps, before and all
    lengths = [encoded_length(item, slot.method) for item in shard] if cfg.train.group_by_length else None
    for step, indices in enumerate(batch_indices(len(shard), micro, slot.steps, order, lengths)):
        for group in engine.optimizer.param_groups:
            group["lr"] = learning_rate(cfg.train, done + step, total)
        drawn.update(indices)
        loss, parts = student_loss(model, tokenizer, [shard[i] for i in indices], slot.method, cfg, generator=sampling)
        if not math.isfinite(parts["loss"]):  # stop before a NaN reaches the weights and a report
            raise FloatingPointError(
                f"{slot.method} iteration {slot.iteration + 1}, step {step + 1}: the loss is not "
                f"finite ({', '.join(f'{k} {v:.4g}' for k, v in parts.items())})"
            )
        engine.backward(loss)
        engine.step()
        per_step.append([parts[k] for k in keys])
        if on_step is not None and _stop_requested(bool(on_step(step + 1)), slot, engine.device):
            raise FitStopped(f"{slot.method} iteration {slot.iteration + 1}: stopped after step {step + 1}")
    seconds = time.perf_counter() - started
    values = torch.tensor(per_step, dtype=torch.float64, device=engine.device)  # [steps, keys]
    counts = (~values.isnan()).to(values.dtype)
    values = values.nan_to_num(0.0)
    drawn_total = torch.tensor(len(drawn), dtype=torch.float64, device=engine.device)  # shards are disjoint
    if slot.world > 1:
        dist.all_reduce(values)
        dist.all_reduce(counts)
        dist.all_reduce(drawn_total)
    curve = values / counts.clamp(min=1)  # [steps, keys]: the mean over workers
    means = values.sum(dim=0) / counts.sum(dim=0)  # [keys]: NaN only where no step had the figure
    return {
        **{k: float(means[j]) for j, k in enumerate(keys)},
        "loss_first": float(curve[0, 0]),
        "loss_last": float(curve[-1, 0]),
        "steps": slot.steps,
        "samples": slot.steps * cfg.train.batch_size,
        "samples_per_s": slot.steps * cfg.train.batch_size / max(seconds, 1e-9),
        "questions_drawn": int(drawn_total),
        "seconds": seconds,
    }
