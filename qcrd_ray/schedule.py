"""The iteration schedule: steps per iteration, the learning rate, the judge's decaying weight, which snapshot supplies
negatives, the snapshot ring.

Iterations are 0-based. Snapshot k is the student after k iterations, so snapshot 0 is the initial student
and iteration t trains the weights of snapshot t into snapshot t + 1 (docs/METHOD.md sections 3 and 6).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from qcrd_ray.config import LossConfig, TrainConfig


def _check_iteration(iteration: int) -> None:
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration: expected an integer >= 0, got {iteration!r}")


def steps_per_iteration(train: TrainConfig, num_questions: int) -> int:
    """Optimizer steps in one iteration: ``train.steps_per_iteration``, or for ``iteration_unit: epochs``
    ``ceil(epochs_per_iteration * num_questions / batch_size)`` (at least 1)."""
    if train.iteration_unit == "steps":
        return train.steps_per_iteration
    if num_questions < 1:
        raise ValueError(f"steps_per_iteration: an epoch of {num_questions} questions has no steps")
    return max(1, math.ceil(train.epochs_per_iteration * num_questions / train.batch_size))


def learning_rate(train: TrainConfig, step: int, total_steps: int) -> float:
    """The student's learning rate at ``step`` (0-based) of a run of ``total_steps``, as transformers' Trainer
    has it (``warmup_ratio``, ``get_linear_schedule_with_warmup``): rising to ``train.lr`` over the first
    ``ceil(warmup_ratio * total_steps)`` steps, then ``train.lr`` (``lr_schedule: constant``) or decaying
    linearly to 0 at ``total_steps`` (``linear``). A function of the step alone, so a resumed run takes the
    same steps as an unbroken one."""
    warmup = math.ceil(train.warmup_ratio * total_steps)
    if step < warmup:
        return train.lr * (step + 1) / warmup
    if train.lr_schedule == "constant":
        return train.lr
    return train.lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def alpha_judge_at(loss_cfg: LossConfig, iteration: int) -> float:
    """The judge's loss weight a3 at ``iteration``: ``alpha_judge * alpha_judge_decay ** iteration``."""
    _check_iteration(iteration)
    return loss_cfg.alpha_judge * loss_cfg.alpha_judge_decay**iteration


def judge_lr_scale(loss_cfg: LossConfig, iteration: int) -> float:
    """How strongly the judge's online update after ``iteration`` acts: a3_t / a3_0 (0 when a3 is 0).

    D has its own optimizer, and AdamW's steps do not depend on the scale of the loss, so a3 acts on the
    learning rate of D's online updates: ``judge.lr * a3_t / a3_0``.
    """
    if loss_cfg.alpha_judge == 0:
        _check_iteration(iteration)
        return 0.0
    return alpha_judge_at(loss_cfg, iteration) / loss_cfg.alpha_judge


def snapshot_for(iteration: int, lag: int) -> int:
    """The snapshot whose samples are the student negatives at ``iteration``: ``max(0, iteration - lag)``.

    During the first ``lag`` iterations snapshot t - j does not exist yet; the oldest one, the initial student
    (snapshot 0), stands in for it.
    """
    _check_iteration(iteration)
    if isinstance(lag, bool) or not isinstance(lag, int) or lag < 1:
        raise ValueError(f"negatives.lag: expected an integer >= 1, got {lag!r}")
    return max(0, iteration - lag)


class SnapshotRing:
    """The last ``capacity`` student snapshots, as ``iteration -> path``, oldest first.

    With lag j the ring holds j + 1 snapshots (``for_lag``): at the start of iteration t that is snapshots
    t - j .. t, and pushing snapshot t + 1 afterwards evicts t - j, which no later iteration needs.
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"SnapshotRing capacity: expected an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self._entries: OrderedDict[int, str] = OrderedDict()

    @classmethod
    def for_lag(cls, lag: int) -> SnapshotRing:
        """A ring large enough for negatives from iteration t - ``lag`` (capacity ``lag + 1``)."""
        snapshot_for(0, lag)  # validates lag
        return cls(lag + 1)

    def push(self, iteration: int, path: str) -> list[tuple[int, str]]:
        """Add snapshot ``iteration`` stored at ``path``; returns the evicted ``(iteration, path)`` entries.

        The caller deletes the evicted directories. Iterations must not go backwards; pushing the newest
        iteration again (a resumed run re-saving it) replaces its path and returns the old one unless unchanged.
        """
        _check_iteration(iteration)
        path = str(path)
        latest = self.latest()
        if latest is not None and iteration < latest[0]:
            raise ValueError(f"SnapshotRing.push: iteration {iteration} is older than the latest snapshot {latest[0]}")
        evicted: list[tuple[int, str]] = []
        if latest is not None and iteration == latest[0]:
            if latest[1] == path:
                return evicted
            evicted.append(latest)
        self._entries[iteration] = path
        while len(self._entries) > self.capacity:
            evicted.append(self._entries.popitem(last=False))
        return evicted

    def get(self, iteration: int) -> str:
        """The path of snapshot ``iteration``; KeyError naming the held iterations if it is not in the ring."""
        try:
            return self._entries[iteration]
        except KeyError:
            raise KeyError(f"snapshot {iteration} is not in the ring (holding {list(self._entries)})") from None

    def oldest(self) -> tuple[int, str] | None:
        return next(iter(self._entries.items()), None)

    def latest(self) -> tuple[int, str] | None:
        return next(reversed(self._entries.items()), None)

    def __contains__(self, iteration: object) -> bool:
        return iteration in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(list(self._entries.items()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SnapshotRing):
            return NotImplemented
        return self.capacity == other.capacity and list(self) == list(other)

    def __repr__(self) -> str:
        return f"SnapshotRing(capacity={self.capacity}, snapshots={dict(self._entries)})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"capacity": c, "snapshots": [{"iteration": k, "path": p}, ...]}``, oldest first."""
        return {"capacity": self.capacity, "snapshots": [{"iteration": k, "path": p} for k, p in self._entries.items()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SnapshotRing:
        """Inverse of ``to_dict``; raises ValueError naming the field that is malformed."""
        if not isinstance(data, dict) or "capacity" not in data or "snapshots" not in data:
            raise ValueError(f"snapshot ring: expected a mapping with 'capacity' and 'snapshots', got {data!r}")
        ring = cls(data["capacity"])
        entries = data["snapshots"]
        if not isinstance(entries, list):
            raise ValueError(f"snapshot ring.snapshots: expected a list, got {entries!r}")
        if len(entries) > ring.capacity:
            raise ValueError(f"snapshot ring.snapshots: {len(entries)} entries exceed capacity {ring.capacity}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or set(entry) != {"iteration", "path"} or not isinstance(entry["path"], str):
                raise ValueError(
                    f"snapshot ring.snapshots[{i}]: expected {{'iteration': int, 'path': str}}, got {entry!r}"
                )
            if entry["iteration"] in ring:
                raise ValueError(f"snapshot ring.snapshots[{i}]: iteration {entry['iteration']} appears twice")
            ring.push(entry["iteration"], entry["path"])
        return ring
