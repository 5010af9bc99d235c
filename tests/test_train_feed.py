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
    assert ray.get(feed.steps.remote(0)) == 0  # the steps rank 0 has taken, for the driver's bar
    assert ray.get(feed.step.remote(0, 3)) is False  # go on: the driver has not stopped the fit
    assert ray.get(feed.steps.remote(0)) == 3
    ray.get(feed.finish.remote(0, {"loss": 1.5}, "checkpoint_0000"))
    assert ray.get(result) == {"loss": 1.5}
    assert ray.get(feed.progress.remote()) == (1, "checkpoint_0000")


def test_stop_releases_a_waiting_worker_and_a_training_one(ray_local, feed):
    take = feed.take.remote(3)
    ray_local.get(feed.stop.remote())
    assert ray_local.get(take) is None
    assert ray_local.get(feed.step.remote(2, 7)) is True  # a worker mid-stage hears it at its next step
    assert ray_local.get(feed.take.remote(4)) is None


def _reported(root, name: str, completed: int, metrics: dict):
    """A stage's checkpoint as ``_worker`` reports it: its state file names the stages done and their metrics."""
    import json

    import ray.train

    from actors.student_train import TRAIN_STATE_FILE

    (root / name).mkdir()
    state = {"completed": completed, "method": "qcrd", "checkpoint": name, "metrics": metrics}
    (root / name / TRAIN_STATE_FILE).write_text(json.dumps(state))
    return ray.train.Checkpoint(str(root / name))


def test_a_restarted_worker_resumes_from_the_feeds_last_finished_stage(ray_local, feed, tmp_path):
    """Killed right after its report, a worker leaves a checkpoint Ray Train had not registered: restarting
    from the one before would ask for a stage the driver is past. The feed's newer one wins."""
    from actors.student_train import _resume_point

    older = _reported(tmp_path, "checkpoint_0000", 1, {"loss": 2.0})
    _reported(tmp_path, "checkpoint_0001", 2, {"loss": 1.0})
    assert _resume_point(None, feed, str(tmp_path), 0) == (None, {"completed": 0, "method": None})
    for index in (0, 1):
        ray_local.get(feed.finish.remote(index, {"loss": 2.0 - index}, f"checkpoint_{index:04d}"))
    checkpoint, state = _resume_point(older, feed, str(tmp_path), 0)
    assert checkpoint.path.endswith("checkpoint_0001") and state["completed"] == 2


def test_a_stage_reported_but_never_handed_over_is_finished_by_the_restarted_worker(ray_local, feed, tmp_path):
    """Killed between its report and ``finish``: the restarted worker hands the driver the stage's metrics."""
    from actors.student_train import _resume_point

    reported = _reported(tmp_path, "checkpoint_0000", 1, {"loss": 1.5})
    result = feed.result.remote(0)
    assert _resume_point(reported, feed, str(tmp_path), 1)[1]["completed"] == 1  # rank 1 leaves it to rank 0
    assert not ray_local.wait([result], timeout=0.5)[0]
    checkpoint, state = _resume_point(reported, feed, str(tmp_path), 0)
    assert checkpoint is reported and state["completed"] == 1
    assert ray_local.get(result) == {"loss": 1.5}
    assert ray_local.get(feed.progress.remote()) == (1, "checkpoint_0000")
