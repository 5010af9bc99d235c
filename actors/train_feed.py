"""The hand-over between the driver and the workers of a seed's Ray Train fit (``actors/student_train.py``).

The workers wait between stages (an index of a method) on an ``StageFeed`` (named
``{run}/seed_{s}/train_feed``): the driver ``put``s the fit's k-th stage and its items, every worker
``take``s them, trains, reports its checkpoint, and rank 0 ``finish``es k with the metrics the driver awaits.
A worker that dies mid-stage is restarted by Ray Train and asks for the unfinished stage again (its items stay
here until it is finished), from the checkpoint of the last stage this feed has seen finished (``progress``).
"""

from __future__ import annotations

import asyncio

import ray


@ray.remote(num_cpus=0)
class StageFeed:
    """Stage index -> [stage, ref to its items] on the way in, stage index -> metrics on the way out."""

    def __init__(self):
        self._items: dict[int, list] = {}
        self._finished: dict[int, dict] = {}
        self._done, self._last = 0, None  # stages finished, the last one's checkpoint directory name
        self._steps: dict[int, int] = {}  # stage index -> optimizer steps rank 0 has taken in it
        self._stopped = False
        self._changed = asyncio.Condition()

    async def put(self, index: int, box: list) -> None:
        """``box`` is ``[stage, ref]``: a ref nested in a list reaches the workers as a ref, not a copy per call."""
        async with self._changed:
            self._items[index] = box
            self._changed.notify_all()

    async def take(self, index: int) -> list | None:
        """Waits for the index's box; None once the driver has stopped the fit."""
        async with self._changed:
            await self._changed.wait_for(lambda: index in self._items or self._stopped)
            return self._items.get(index)

    async def step(self, index: int, steps: int) -> bool:
        """Rank 0 has taken ``steps`` optimizer steps of stage ``index`` (the driver's bar shows them); whether the
        driver has stopped the fit (the workers then leave the stage)."""
        self._steps[index] = steps
        return self._stopped

    async def steps(self, index: int) -> int:
        return self._steps.get(index, 0)

    async def finish(self, index: int, metrics: dict, checkpoint: str) -> None:
        """Stage ``index`` is trained and its ``checkpoint`` (a directory name in the fit's storage) reported."""
        async with self._changed:
            self._items.pop(index, None)
            self._steps.pop(index, None)
            self._finished[index] = metrics
            self._done, self._last = max(self._done, index + 1), checkpoint
            self._changed.notify_all()

    async def progress(self) -> tuple[int, str | None]:
        """How many stages are finished, and the last one's checkpoint: what a restarted worker resumes from."""
        return self._done, self._last

    async def result(self, index: int) -> dict:
        async with self._changed:
            await self._changed.wait_for(lambda: index in self._finished)
            return self._finished.pop(index)

    async def stop(self) -> None:
        async with self._changed:
            self._stopped = True
            self._changed.notify_all()
