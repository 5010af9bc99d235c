"""A pool of identical actors: started side by side in one placement group, fed chunk by chunk.

``map_chunks`` sends chunk c of a job to replica c % N and gathers the results in chunk order; how a job is
cut into chunks is the core's decision (``qcrd_ray.sharding``), made without looking at N, so one replica and
several give the same result. Ray runs each actor's calls in the order they were submitted, so a call
submitted after another (a judge's new weights, then its next scores) sees its effect. Every pool of the
project (student samplers, judges, teachers) is started with ``start_pool`` and ended with ``kill_pool``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def replica_name(name: str, index: int, numbered: bool = False) -> str:
    """Replica 0 keeps the pool's name (``{run}/seed_0/judge``) and replica i >= 1 is ``{name}_{i}``; in a
    ``numbered`` pool (the teachers: ``{run}/teacher_0``, ``{run}/teacher_1``, ...) every replica is ``{name}_{i}``."""
    return name if index == 0 and not numbered else f"{name}_{index}"


def start_pool(
    actor_class, name: str, count: int, group, first_bundle: int, *args, numbered: bool = False, **options
) -> list:
    """``count`` replicas of ``actor_class``, replica i named ``replica_name(name, i, numbered)`` in bundle
    ``first_bundle + i`` of ``group``; ``args`` and ``options`` as for ``placement.start_actor``."""
    from actors.placement import start_actor

    if count < 1:
        raise ValueError(f"start_pool: {name}: count must be >= 1, got {count!r}")
    return [
        start_actor(actor_class, replica_name(name, i, numbered), group, first_bundle + i, *args, **options)
        for i in range(count)
    ]


def submit_chunks(pool: Sequence, method: str, calls: Sequence[Sequence[Any]]) -> list:
    """``pool[c % N].<method>.remote(*calls[c])`` for every chunk c, in order: one object reference per chunk."""
    if not pool:
        raise ValueError(f"submit_chunks: {method}: the actor pool is empty")
    return [getattr(pool[c % len(pool)], method).remote(*args) for c, args in enumerate(calls)]


def map_chunks(
    pool: Sequence, method: str, calls: Sequence[Sequence[Any]], progress=None, sizes: Sequence[int] | None = None
) -> list:
    """``submit_chunks``, then every chunk's result, in chunk order (whatever replica finished first)."""
    return gather_chunks(submit_chunks(pool, method, calls), progress, sizes)


def gather_chunks(refs: Sequence, progress=None, sizes: Sequence[int] | None = None) -> list:
    """The results of submitted chunks, in order. A ``progress`` (``qcrd_ray.console.PhaseProgress``) advances
    by chunk c's ``sizes[c]`` (1) as each one ends."""
    import ray

    if progress is not None:
        index = {ref: c for c, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            progress.update(sizes[index[done[0]]] if sizes else 1)
    return ray.get(list(refs))


def broadcast(pool: Sequence, method: str, *args: Any) -> list:
    """The same call on every replica (large ``args`` are best ``ray.put`` once); their results, in pool order."""
    import ray

    return ray.get([getattr(actor, method).remote(*args) for actor in pool])


def kill_pool(pool: Sequence, name: str | None = None, *, numbered: bool = False, group=None) -> None:
    """End every replica for good (Ray restarts none). Given the pool's ``name`` (and ``numbered``, as
    ``start_pool`` got them), wait until Ray has released each replica's name (``end_actor``), so that a pool of
    the same name can start at once; given its placement ``group``, remove that too (frees its GPUs)."""
    import ray

    for i, actor in enumerate(pool):
        if name is None:
            ray.kill(actor)
        else:
            end_actor(actor, replica_name(name, i, numbered))
    if group is not None:
        ray.util.remove_placement_group(group)


class ActorNotReleasedError(RuntimeError):
    """Ray kept a killed actor's name past the wait: the next actor of that name cannot start."""


def end_actor(actor, name: str, timeout_s: float = 60.0) -> None:
    """Kill a named actor and wait until Ray has released its name, so the next phase (or the next seed of
    the driver) can start an actor of the same name at once."""
    import ray

    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name)
        except ValueError:  # no live actor of that name any more
            return
        time.sleep(0.05)
    raise ActorNotReleasedError(f"actor {name!r} still alive {timeout_s:.0f} s after ray.kill")
