"""Every preset's projected hours, now and as they were when each iteration sampled and scored every training
question (until 2026-12-07): the "Every preset" table of cluster/SCALING.md.

    python -m benchmarks.scaling_presets [--costs cluster/measured_costs.json] [--dss ../shared/data/dss]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.scaling import Projection, hours, row
from benchmarks.scaling_work import measure_lengths, phases, split_sizes
from qcrd_ray.config import load_config
from qcrd_ray.pool_sizing import questions_per_iteration

GPUS = (1, 8, 64)


def totals(proj: Projection, run: list) -> tuple[list[float], float]:
    """Seconds at each of GPUS with the config's pools, and at 64 GPUs with pools sized to them."""
    config_pools = [sum(proj.seconds(w, proj.pools(n, run)) for w in run) for n in GPUS]
    sized = proj.sized(GPUS[-1], run)
    return config_pools, sum(proj.seconds(w, sized) for w in run)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--costs", default="cluster/measured_costs.json")
    parser.add_argument("--dss", default="../shared/data/dss", help="the DSS release, for mean lengths")
    args = parser.parse_args(argv)
    costs = json.loads(Path(args.costs).read_text(encoding="utf-8"))
    print(
        row(
            "preset",
            "train questions",
            "an iteration's",
            f"hours at N = {' / '.join(map(str, GPUS))}, before",
            "now",
            "pools sized to N = 64, before",
            "now",
            "the longest phase at N = 8, now",
        )
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for path in sorted(Path("configs").glob("*_t5_*.yaml")):
        cfg = load_config(str(path), [])
        proj, lengths = Projection(cfg, costs, args.costs), measure_lengths(Path(args.dss), cfg.data.task)
        q, _ = split_sizes(cfg)
        before, sized_before = totals(proj, phases(cfg, lengths, every_question=True))
        run = phases(cfg, lengths)
        now, sized_now = totals(proj, run)
        longest = max(run, key=lambda w: proj.seconds(w, proj.pools(8, run)))
        print(
            row(
                path.stem,
                f"{q:,}",
                f"{questions_per_iteration(cfg, q):,}",
                " / ".join(hours(x) for x in before),
                " / ".join(hours(x) for x in now),
                hours(sized_before),
                hours(sized_now),
                f"{longest.phase}, {hours(proj.seconds(longest, proj.pools(8, run)))} h",
            )
        )


if __name__ == "__main__":
    main()
