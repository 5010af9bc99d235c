"""A pool of identical actors: started side by side in one placement group, fed chunk by chunk.

``map_chunks`` sends chunk c of a job to replica c % N and gathers the results in chunk order; how a job is
cut into chunks is the core's decision (``qcrd_ray.sharding``), made without looking at N, so one replica and
several give the same result. Ray runs each actor's calls in the order they were submitted, so a call
submitted after another (a judge's new weights, then its next scores) sees its effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def replica_name(name: str, index: int) -> str:
    """Replica 0 keeps the pool's name (``{run}/seed_0/judge``); replica i >= 1 is ``{name}_{i}``."""
    return name if index == 0 else f"{name}_{index}"


def start_pool(actor_class, name: str, count: int, group, first_bundle: int, *args, **options) -> list:
    """``count`` replicas of ``actor_class``, replica i named ``replica_name(name, i)`` in bundle
    ``first_bundle + i`` of ``group``; ``args`` and ``options`` as for ``placement.start_actor``."""
    from actors.placement import start_actor

    if count < 1:
        raise ValueError(f"start_pool: {name}: count must be >= 1, got {count!r}")
    return [
        start_actor(actor_class, replica_name(name, i), group, first_bundle + i, *args, **options) for i in range(count)
    ]


def submit_chunks(pool: Sequence, method: str, calls: Sequence[Sequence[Any]]) -> list:
    """``pool[c % N].<method>.remote(*calls[c])`` for every chunk c, in order: one object reference per chunk."""
    if not pool:
        raise ValueError(f"submit_chunks: {method}: the actor pool is empty")
    return [getattr(pool[c % len(pool)], method).remote(*args) for c, args in enumerate(calls)]


def map_chunks(pool: Sequence, method: str, calls: Sequence[Sequence[Any]]) -> list:
    """``submit_chunks``, then every chunk's result, in chunk order (whatever replica finished first)."""
    import ray

    return ray.get(submit_chunks(pool, method, calls))


def broadcast(pool: Sequence, method: str, *args: Any) -> list:
    """The same call on every replica (large ``args`` are best ``ray.put`` once); their results, in pool order."""
    import ray

    return ray.get([getattr(actor, method).remote(*args) for actor in pool])


def kill_pool(pool: Sequence) -> None:
    import ray

    for actor in pool:
        ray.kill(actor)
