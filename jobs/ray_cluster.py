"""Ray for a run: join the cluster named by config or ``RAY_ADDRESS``, or start a local one on 127.0.0.1, and size
the run's actor pools to what the cluster has (``num_replicas: auto``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TextIO

from jobs.run_log import libraries_into, workers_into
from qcrd_ray.config import ClusterConfig, Config, ConfigError
from qcrd_ray.console import Console
from qcrd_ray.pool_sizing import PoolSizes, size_pools, wants_sizing, with_pool_sizes


def local_env_vars() -> dict[str, str]:
    """What a local run's Ray workers inherit: the HF_/QCRD_ settings, every core for torch, loopback.

    Ray caps a worker's OMP_NUM_THREADS at its CPU request (1 for a train worker); on a laptop the phases run
    one after another, so whichever is running may use every core. A value the user exported wins.
    """
    env = {k: v for k, v in os.environ.items() if k.startswith(("HF_", "QCRD_"))}
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    # Workers that ask for their node's address (Ray Train's process group) then get 127.0.0.1 too.
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def stay_on_loopback(cluster: ClusterConfig) -> None:
    """Keep a local run on 127.0.0.1: a no-op when the run joins a cluster.

    Ray otherwise binds the host's interface address, whatever ``_node_ip_address`` says. It reads the
    setting when it is imported, so this runs before anything imports ray; the raylet and every worker
    inherit it from this process.
    """
    if cluster.address or os.environ.get("RAY_ADDRESS"):
        return
    if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        raise RuntimeError("stay_on_loopback: ray was imported first; export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # A laptop has no spot nodes to lose, and the watcher is one more process per Ray Train fit (the raylet,
    # hence every worker, inherits this process's environment).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")


def init_ray(cluster: ClusterConfig, log: TextIO | None = None) -> str | None:
    """Join the cluster named by config or RAY_ADDRESS, else start a local Ray bound to loopback; the
    dashboard's address. With ``log`` (a quiet console) Ray's own lines and its workers' output go there."""
    stay_on_loopback(cluster)
    import ray

    if log is not None:
        libraries_into(log)  # before ray.init: its first lines too
    dashboard = None if ray.is_initialized() else ray_init(cluster)
    if log is not None:
        workers_into(log)
    return dashboard


def ray_init(cluster: ClusterConfig) -> str | None:
    """``ray.init`` as ``init_ray`` says; the dashboard's address (None without a dashboard)."""
    import ray

    address = cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        return ray.init(address=address, namespace=cluster.namespace).dashboard_url or None
    options = dict(
        address="local",  # a cluster is joined only when named: a `ray start` left on this machine is not one
        num_cpus=cluster.num_cpus,
        namespace=cluster.namespace,
        _node_ip_address="127.0.0.1",
        dashboard_host="127.0.0.1",
        runtime_env={"env_vars": local_env_vars()},
        _metrics_export_port=cluster.metrics_export_port,
    )
    try:
        return ray.init(**options).dashboard_url or None
    except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception when a busy node starts too slowly
        print(f"[qcrd] local Ray did not start ({err}); trying once more", flush=True)
        ray.shutdown()
        return ray.init(**options).dashboard_url or None


POOLS_FILE = "pools.json"


def sized_pools(cfg: Config, run_dir: Path, resume: bool, num_questions: tuple[int, int], console: Console) -> Config:
    """``cfg`` with ``num_replicas: auto`` sized to the cluster Ray has joined (``qcrd_ray.pool_sizing``) for a
    run of ``num_questions`` (training, evaluation), the sizes printed and kept in ``run_dir/pools.json``; a
    resume takes them from there, whatever the cluster has now (every manifest's config hash covers them, so an
    iteration is never resumed on other pools)."""
    if not wants_sizing(cfg):
        return cfg
    import ray

    path = run_dir / POOLS_FILE
    if resume and path.is_file():
        try:
            sizes = PoolSizes.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
            raise ConfigError(f"{path}: --resume: the run's pool sizes are unreadable ({err})") from None
        console.say(f"[qcrd] pools as the run began ({path.name}): {sizes.describe()}")
    else:
        sizes = size_pools(cfg, ray.cluster_resources(), *num_questions)
        path.write_text(json.dumps(sizes.to_dict(), indent=2) + "\n")
        console.say(f"[qcrd] pools sized to the cluster: {sizes.describe()}")
    return with_pool_sizes(cfg, sizes)
