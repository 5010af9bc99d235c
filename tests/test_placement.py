"""Placement: a request no node can ever hold fails at once, with the phase and resources named."""

import pytest

from actors.placement import InfeasibleResources, check_feasible, reserve

SHAPES = [{"CPU": 8.0}, {"CPU": 16.0, "GPU": 1.0, "teacher": 1.0}]


def test_check_feasible_against_node_shapes():
    check_feasible("teacher", [{"GPU": 1, "teacher": 1}], SHAPES)
    check_feasible("train", [{"CPU": 4}] * 3, SHAPES)
    with pytest.raises(InfeasibleResources, match=r"teacher: no node can hold the bundle \{'GPU': 2"):
        check_feasible("teacher", [{"GPU": 2}], SHAPES)
    check_feasible("teacher", [{"GPU": 2}], SHAPES, autoscaling=True)  # only warns


def test_reserve_on_a_real_local_cluster(ray_local):
    import ray

    group = reserve("evaluate", [{"CPU": 1}], timeout_s=60)
    assert ray.get(group.ready(), timeout=10) is not None
    ray.util.remove_placement_group(group)
    with pytest.raises(InfeasibleResources, match="teacher: no node can hold the bundle"):
        reserve("teacher", [{"CPU": 1, "teacher": 1}])
