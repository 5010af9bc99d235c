"""``studies.pooled_seeds``: several runs' seeds as one run's, only if they ran the same config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qcrd_ray.config import load_config
from studies.pooled_seeds import pooled_summaries


def a_run(root: Path, name: str, seeds: list[int], methods: list[str], overrides: list[str] = ()) -> Path:
    run_dir = root / name
    run_dir.mkdir()
    config = load_config(None, [f"run.output_dir=runs/{name}", *overrides])
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    summaries = [{"seed": s, "methods": {m: {"final_accuracy": s / 10} for m in methods}} for s in seeds]
    (run_dir / "summary.json").write_text(json.dumps(summaries))
    return run_dir


def test_the_seeds_of_runs_of_one_config_pool_in_seed_order_with_the_methods_they_share(tmp_path):
    first = a_run(tmp_path, "first", [0, 1], ["finetune", "dss", "dss_greedy", "qcrd"], ["run.baselines=[dss_greedy]"])
    more = a_run(tmp_path, "more", [3, 2], ["finetune", "dss", "qcrd"])
    pooled = pooled_summaries([first, more], None)
    assert [s["seed"] for s in pooled] == [0, 1, 2, 3]
    assert all(list(s["methods"]) == ["finetune", "dss", "qcrd"] for s in pooled)
    assert [s["seed"] for s in pooled_summaries([first, more], ["qcrd"])] == [0, 1, 2, 3]
    with pytest.raises(SystemExit, match=r"not every run has \['dss_greedy'\]"):
        pooled_summaries([first, more], ["dss_greedy"])


def test_a_seed_in_two_runs_or_another_config_is_refused(tmp_path):
    first = a_run(tmp_path, "first", [0, 1], ["dss"])
    with pytest.raises(SystemExit, match="seed 1 is in"):
        pooled_summaries([first, a_run(tmp_path, "again", [1], ["dss"])], None)
    with pytest.raises(SystemExit, match=r"ran another config .*train.lr"):
        pooled_summaries([first, a_run(tmp_path, "other", [2], ["dss"], ["train.lr=1e-3"])], None)
