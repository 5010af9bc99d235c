"""One report over the seeds of several runs of the same config: more seeds, run apart, as if run together.

    python -m studies.pooled_seeds OUT RUN_DIR [RUN_DIR ...] [--methods finetune,dss,qcrd]

Each RUN_DIR is a finished run (its ``summary.json`` and ``config.json``); they must differ only in where they
wrote and in their baselines. Keeps ``--methods`` (those every run has, by default), refuses a seed that two runs
both hold, and writes OUT's report, summary.json and differences.json as ``python -m jobs.distill`` would for
all the seeds at once (``qcrd_ray.report.write_report``). Issue 32's half-widths: seeds 0-4 of the README's table
came from one run, the later ones each from its own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qcrd_ray.manifest import flatten_config
from qcrd_ray.report import write_report

MAY_DIFFER = ("run.output_dir", "run.name", "run.baselines")


def pooled_summaries(run_dirs: list[Path], methods: list[str] | None) -> list[dict]:
    """Every seed's summary of ``run_dirs``, in seed order, with only ``methods`` (default: those all share)."""
    configs = [json.loads((d / "config.json").read_text(encoding="utf-8")) for d in run_dirs]
    first = flatten_config(configs[0])
    for run_dir, config in zip(run_dirs[1:], configs[1:], strict=True):
        other = flatten_config(config)
        changed = [k for k in first.keys() & other.keys() if first[k] != other[k] and not k.startswith(MAY_DIFFER)]
        if changed:
            raise SystemExit(f"studies.pooled_seeds: {run_dir} ran another config than {run_dirs[0]}: {changed}")
        if first.keys() != other.keys():  # a key the code added between the runs, at a default that computes as before
            print(f"keys in one config only ({run_dir}): {sorted(first.keys() ^ other.keys())}")
    summaries, owner = [], {}
    for run_dir in run_dirs:
        for summary in json.loads((run_dir / "summary.json").read_text(encoding="utf-8")):
            if summary["seed"] in owner:
                raise SystemExit(
                    f"studies.pooled_seeds: seed {summary['seed']} is in {owner[summary['seed']]} and {run_dir}"
                )
            owner[summary["seed"]] = run_dir
            summaries.append(summary)
    shared = set.intersection(*(set(s["methods"]) for s in summaries))
    keep = methods or [m for m in summaries[0]["methods"] if m in shared]
    missing = [m for m in keep if m not in shared]
    if missing:
        raise SystemExit(f"studies.pooled_seeds: not every run has {missing}")
    for summary in summaries:
        summary["methods"] = {m: summary["methods"][m] for m in keep}
    return sorted(summaries, key=lambda s: s["seed"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--methods", type=lambda text: text.split(","), default=None)
    args = parser.parse_args(argv)
    summaries = pooled_summaries(args.runs, args.methods)
    report = write_report(args.out, summaries)
    print(f"{len(summaries)} seeds ({', '.join(str(s['seed']) for s in summaries)}): {report}")


if __name__ == "__main__":
    main()
