"""The hand-over between the driver and a streaming fit's workers, on a real local Ray (no fit needed)."""

from __future__ import annotations

import pytest


@pytest.fixture
def feed(ray_local):
    from actors.train_feed import StageFeed

    actor = StageFeed.remote()
    yield actor
    ray_local.kill(actor)


def test_workers_wait_for_the_driver_and_the_driver_for_the_workers(ray_local, feed):
    ray = ray_local
    take = feed.take.remote(0)  # a worker asks before the driver has the items
    assert not ray.wait([take], timeout=0.5)[0]
    items = ray.put(["item a", "item b"])
    ray.get(feed.put.remote(0, ["stage 0", items]))
    box = ray.get(take)
    assert box[0] == "stage 0" and ray.get(box[1]) == ["item a", "item b"]  # the nested ref arrives as a ref
    assert ray.get(box[1]) == ray.get(ray.get(feed.take.remote(0))[1])  # a restarted worker gets them again
    result = feed.result.remote(0)
    assert not ray.wait([result], timeout=0.5)[0]
    ray.get(feed.finish.remote(0, {"loss": 1.5}))
    assert ray.get(result) == {"loss": 1.5}


def test_stop_releases_a_waiting_worker(ray_local, feed):
    take = feed.take.remote(3)
    ray_local.get(feed.stop.remote())
    assert ray_local.get(take) is None
    assert ray_local.get(feed.take.remote(4)) is None
