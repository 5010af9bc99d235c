"""Placement: check that the cluster can ever satisfy a phase's resource request, then reserve it.

A placement group the cluster can never satisfy stays pending forever and the run hangs without a word.
``check_feasible`` compares each bundle with every node the cluster has and raises ``InfeasibleResources`` naming the phase and the resources. On an
autoscaling cluster (``cluster.autoscaling``) nodes that fit may not exist yet: the check only warns, and
``reserve`` bounds the wait instead.
"""

from __future__ import annotations

from collections.abc import Mapping


class InfeasibleResources(RuntimeError):
    """No node of this cluster (present or startable) can hold one bundle of a phase's request."""


def _fits(bundle: Mapping[str, float], node: Mapping[str, float]) -> bool:
    return all(node.get(name, 0.0) >= amount for name, amount in bundle.items() if amount > 0)


def node_shapes() -> list[dict[str, float]]:
    """Total resources of every alive node of the cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def check_feasible(
    phase: str,
    bundles: list[Mapping[str, float]],
    shapes: list[dict[str, float]] | None = None,
    autoscaling: bool = False,
) -> None:
    """Raise ``InfeasibleResources`` if some bundle fits no node shape (``autoscaling`` only warns)."""
    shapes = node_shapes() if shapes is None else shapes
    for bundle in bundles:
        if not any(_fits(bundle, shape) for shape in shapes):
            offered = (
                "; ".join(
                    ", ".join(f"{k}={v:g}" for k, v in sorted(s.items()) if not k.startswith("node:")) for s in shapes
                )
                or "no nodes"
            )
            message = (
                f"{phase}: no node can hold the bundle {dict(bundle)}; nodes offer: {offered}. "
                f"Lower the request in the config or add a node type that offers it (cluster/)."
            )
            if autoscaling:
                print(f"warning: {message} (waiting for the autoscaler)", flush=True)
                return
            raise InfeasibleResources(message)


def reserve(
    phase: str,
    bundles: list[dict[str, float]],
    *,
    strategy: str = "PACK",
    timeout_s: float = 600.0,
    autoscaling: bool = False,
    name: str = "",
):
    """A ready placement group for ``bundles`` after the feasibility check; raises if not ready in time.

    ``name`` shows in the dashboard's placement-group view (and lets the owner find it again)."""
    import ray
    from ray.util.placement_group import placement_group

    check_feasible(phase, bundles, autoscaling=autoscaling)
    group = placement_group(bundles, strategy=strategy, name=name)
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        ray.util.remove_placement_group(group)
        raise InfeasibleResources(f"{phase}: placement group {bundles} not ready after {timeout_s:.0f} s")
    return group


def start_actor(actor_class, name: str, group, bundle_index: int, *args, **options):
    """The one way the project starts an actor: named (``{run}/...``, so the dashboard tells the story) and,
    given a placement group, in one of its bundles (the processes it starts too); ``options`` as for
    ``ActorClass.options`` (num_cpus, num_gpus, max_restarts, ...), ``args`` for its constructor."""
    if group is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            group, bundle_index, placement_group_capture_child_tasks=True
        )
    return actor_class.options(name=name, **options).remote(*args)
