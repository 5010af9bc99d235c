"""Serve a run's saved judge over HTTP with Ray Serve, so that anything outside the run can ask it.

    python -m jobs.serve_judge --judge runs/qcrd/seed_0/qcrd/judge [--host 127.0.0.1] [--port 8000]

``--judge`` is a judge save root (its ``LATEST`` version is served) or one version directory. Answers
``POST /score {"question": str, "rationales": [str, ...]}`` with ``{"scores": [...], "version": v}`` and
``GET /version``. Joins the cluster named by ``RAY_ADDRESS``, else starts a local Ray on 127.0.0.1, and
serves until interrupted.
"""

from __future__ import annotations

import argparse
import time

from jobs.ray_cluster import init_ray
from qcrd_ray.config import ClusterConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qcrd serve-judge", description=__doc__.split("\n")[0])
    parser.add_argument("--judge", required=True, help="a judge save root or version directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    init_ray(ClusterConfig())
    from actors.judge import deploy_judge

    print(f"[qcrd] judge served at {deploy_judge(args.judge, args.host, args.port)}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
