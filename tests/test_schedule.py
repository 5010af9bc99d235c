"""The iteration schedule: a3 decay, which snapshot supplies negatives, and the snapshot ring."""

from __future__ import annotations

import json

import pytest

from qcrd_ray.config import LossConfig, TrainConfig
from qcrd_ray.schedule import SnapshotRing, alpha_judge_at, learning_rate, snapshot_for


def test_alpha_judge_decays_per_iteration():
    cfg = LossConfig(alpha_judge=0.5, alpha_judge_decay=0.9)
    assert alpha_judge_at(cfg, 0) == pytest.approx(0.5)
    assert alpha_judge_at(cfg, 1) == pytest.approx(0.45)
    assert alpha_judge_at(cfg, 3) == pytest.approx(0.5 * 0.9**3)
    assert alpha_judge_at(LossConfig(alpha_judge=0.5, alpha_judge_decay=1.0), 7) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="iteration"):
        alpha_judge_at(cfg, -1)


def test_snapshot_for_uses_the_oldest_available_during_the_first_lag_iterations():
    assert [snapshot_for(t, 3) for t in range(7)] == [0, 0, 0, 0, 1, 2, 3]
    assert [snapshot_for(t, 1) for t in range(4)] == [0, 0, 1, 2]
    with pytest.raises(ValueError, match="lag"):
        snapshot_for(2, 0)
    with pytest.raises(ValueError, match="iteration"):
        snapshot_for(-1, 2)


def test_ring_holds_lag_plus_one_and_evicts_the_oldest():
    ring = SnapshotRing.for_lag(2)
    assert ring.capacity == 3
    assert ring.oldest() is None and ring.latest() is None and len(ring) == 0
    assert ring.push(0, "snap/0") == []
    assert ring.push(1, "snap/1") == []
    assert ring.push(2, "snap/2") == []
    assert ring.push(3, "snap/3") == [(0, "snap/0")]
    assert 0 not in ring and 1 in ring
    assert ring.oldest() == (1, "snap/1") and ring.latest() == (3, "snap/3")
    assert ring.get(2) == "snap/2"
    with pytest.raises(KeyError, match="snapshot 0 is not in the ring"):
        ring.get(0)


def test_ring_serves_every_iterations_negatives_across_a_run():
    """Driving the ring as the driver does: the snapshot for t - j is always present when needed."""
    for lag in (1, 2, 5):
        ring = SnapshotRing.for_lag(lag)
        ring.push(0, "s0")
        deleted = []
        for t in range(12):
            source = snapshot_for(t, lag)
            assert ring.get(source) == f"s{source}"
            deleted += ring.push(t + 1, f"s{t + 1}")  # the snapshot after iteration t
            assert len(ring) <= lag + 1
        # Every evicted snapshot is one no later iteration asks for.
        assert [k for k, _ in deleted] == list(range(0, 13 - (lag + 1)))


def test_ring_push_order_and_repush():
    ring = SnapshotRing(2)
    ring.push(4, "a")
    assert ring.push(4, "a") == []  # a resumed run re-saving the same snapshot: nothing to delete
    assert ring.push(4, "b") == [(4, "a")]  # a new directory for the same iteration: delete the old one
    assert ring.get(4) == "b"
    with pytest.raises(ValueError, match="older than the latest"):
        ring.push(3, "c")
    with pytest.raises(ValueError, match="capacity"):
        SnapshotRing(0)


def test_ring_dict_round_trip_through_json():
    ring = SnapshotRing.for_lag(2)
    for k in range(5):
        ring.push(k, f"/runs/x/snapshots/{k}")
    data = json.loads(json.dumps(ring.to_dict()))
    again = SnapshotRing.from_dict(data)
    assert again == ring
    assert list(again) == [(2, "/runs/x/snapshots/2"), (3, "/runs/x/snapshots/3"), (4, "/runs/x/snapshots/4")]
    assert again.capacity == 3


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"capacity": 2}, "capacity' and 'snapshots"),
        ({"capacity": 1, "snapshots": [{"iteration": 0, "path": "a"}, {"iteration": 1, "path": "b"}]}, "exceed"),
        ({"capacity": 2, "snapshots": [{"iteration": 0}]}, r"snapshots\[0\]"),
        ({"capacity": 2, "snapshots": [{"iteration": 1, "path": "a"}, {"iteration": 1, "path": "b"}]}, "twice"),
        ({"capacity": 2, "snapshots": [{"iteration": 2, "path": "a"}, {"iteration": 1, "path": "b"}]}, "older"),
    ],
)
def test_ring_from_dict_rejects_malformed(data, match):
    with pytest.raises(ValueError, match=match):
        SnapshotRing.from_dict(data)


def test_an_iteration_counts_steps_or_epochs():
    from qcrd_ray.config import TrainConfig
    from qcrd_ray.schedule import steps_per_iteration

    assert steps_per_iteration(TrainConfig(steps_per_iteration=7), 1000) == 7
    epochs = TrainConfig(iteration_unit="epochs", epochs_per_iteration=2.0, batch_size=16)
    assert steps_per_iteration(epochs, 100) == 13  # ceil(2 * 100 / 16)
    assert steps_per_iteration(TrainConfig(iteration_unit="epochs", epochs_per_iteration=0.01), 10) == 1
    with pytest.raises(ValueError, match="no steps"):
        steps_per_iteration(epochs, 0)


def test_the_learning_rate_is_constant_or_decays_linearly_to_zero():
    linear = TrainConfig(lr=1e-3, warmup_ratio=0.0)
    constant = TrainConfig(lr=1e-3, lr_schedule="constant", warmup_ratio=0.0)
    assert [learning_rate(linear, step, 4) for step in range(4)] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert learning_rate(linear, 5, 4) == 0.0  # an epoch-sized iteration that ran longer than the others
    assert {learning_rate(constant, step, 4) for step in range(6)} == {1e-3}
    warm = TrainConfig(lr=1e-3, warmup_ratio=0.3)  # ceil(0.3 * 6) = 2 warmup steps
    assert [learning_rate(warm, step, 6) for step in range(6)] == pytest.approx(
        [5e-4, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4]
    )
    default = TrainConfig()  # the default run: 60 of its 5 x 120 steps rise to lr
    assert learning_rate(default, 0, 600) == pytest.approx(default.lr / 60)
    assert learning_rate(default, 59, 600) == learning_rate(default, 60, 600) == pytest.approx(default.lr)
