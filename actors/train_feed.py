"""One Ray Train fit for every QCRD iteration: the driver feeds each iteration's items to the waiting workers.

A QCRD iteration's items exist only once the previous student has been sampled and judged, so a fit per
iteration would start a new worker group each time: processes, imports, DeepSpeed init and a checkpoint load,
about a minute on a laptop and a gang-scheduled GPU group on a cluster. Instead the workers wait between
iterations on an ``IterationFeed`` (named ``{run}/seed_{s}/train_feed``): the driver ``put``s iteration t's
items, every worker ``take``s them, trains, reports its checkpoint, and rank 0 ``finish``es t with the
metrics the driver awaits. A worker that dies mid-iteration is restarted by Ray Train from the last reported
checkpoint and asks for the unfinished iteration again; its items stay here until it is finished.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ray

from actors.placement import start_actor
from actors.student_train import checkpoint_name, fit_name, train_student, validate_items
from qcrd_ray.config import Config
from qcrd_ray.records import TrainItem


@ray.remote(num_cpus=0)
class IterationFeed:
    """Iteration -> its items (boxed object ref) on the way in, iteration -> metrics on the way out."""

    def __init__(self):
        self._items: dict[int, list] = {}
        self._finished: dict[int, dict] = {}
        self._stopped = False
        self._changed = asyncio.Condition()

    async def put(self, iteration: int, box: list) -> None:
        """``box`` is ``[ref]``: a ref nested in a list reaches the workers as a ref, not as a copy per call."""
        async with self._changed:
            self._items[iteration] = box
            self._changed.notify_all()

    async def take(self, iteration: int) -> list | None:
        """Waits for the iteration's box; None once the driver has stopped the fit."""
        async with self._changed:
            await self._changed.wait_for(lambda: iteration in self._items or self._stopped)
            return self._items.get(iteration)

    async def finish(self, iteration: int, metrics: dict) -> None:
        async with self._changed:
            self._items.pop(iteration, None)
            self._finished[iteration] = metrics
            self._changed.notify_all()

    async def result(self, iteration: int) -> dict:
        async with self._changed:
            await self._changed.wait_for(lambda: iteration in self._finished)
            return self._finished.pop(iteration)

    async def stop(self) -> None:
        async with self._changed:
            self._stopped = True
            self._changed.notify_all()


class StreamingFit:
    """A Ray Train fit of QCRD iterations ``first .. first + count - 1``, fed one iteration at a time.

    Use as a context manager; ``train(t, items)`` returns iteration t's metrics once it is trained (with
    ``optimizer_state``: the checkpoint a later fit resumes from). Leaving the block stops the fit, also when
    the driver fails between iterations, so no worker waits for items that will never come.
    """

    def __init__(self, cfg: Config, init_dir: str, out_dir: str, first: int, count: int, storage_path: str,
                 seed: int, optimizer_state: str | None = None):  # fmt: skip
        self.cfg = cfg
        self.checkpoints = Path(storage_path) / fit_name(cfg, "qcrd", seed, first)
        self.feed = start_actor(IterationFeed, f"{cfg.run.name}/seed_{seed}/train_feed", None, 0)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qcrd-fit")  # fit() blocks
        self._fit = self._pool.submit(train_student, cfg, "qcrd", None, init_dir, out_dir, first, storage_path,
                                      seed, count, optimizer_state, self.feed)  # fmt: skip

    def train(self, iteration: int, items: list[TrainItem]) -> dict:
        """Hand iteration ``iteration`` its items and wait until the workers have trained and reported it."""
        validate_items(items, self.cfg.train.num_workers, "actors/train_feed.py: StreamingFit.train")
        ray.get(self.feed.put.remote(iteration, [ray.put(list(items))]))
        pending = self.feed.result.remote(iteration)
        while not ray.wait([pending], timeout=1.0)[0]:
            if self._fit.done():
                self._fit.result()  # raises the fit's own error
                raise RuntimeError(f"StreamingFit: the fit ended before iteration {iteration + 1} was trained")
        checkpoint = str(self.checkpoints / checkpoint_name(iteration))
        return {**ray.get(pending), "optimizer_state": checkpoint, "checkpoint": checkpoint}

    def __enter__(self) -> StreamingFit:
        return self

    def __exit__(self, *exc) -> None:
        try:
            ray.get(self.feed.stop.remote())
            if exc[0] is None:
                self._fit.result()  # a clean exit surfaces a failed fit
        finally:
            self._pool.shutdown(wait=True)
            ray.kill(self.feed)
