"""benchmarks.scaling: a preset's plan has every phase and N, and its work follows the data size (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import scaling
from qcrd_ray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "esnli_t5_base.yaml"
COSTS = ROOT / "cluster" / "measured_costs.json"
PHASES = ("teacher sampling", "judge pretraining", "student negatives", "judge scoring", "judge online update",
          "student training (qcrd)", "evaluation")  # fmt: skip


def test_main_prints_the_phases_for_each_n(capsys):
    scaling.main(["--config", str(PRESET), "--costs", str(COSTS), "--dss", str(ROOT.parent / "shared/data/dss")])
    out = capsys.readouterr().out
    work, hours = out.split("## Projected hours")
    for phase in PHASES:
        assert f"| {phase} |" in work
        assert f"| {phase} |" in hours
    assert "| phase | N = 1 | N = 8 | N = 64 |" in hours
    assert "| teacher sampling | openai actors | 549,367 |" in work  # e-SNLI's training set
    assert "## Bottlenecks" in hours and "breaks at" in hours


def test_teacher_work_shrinks_with_max_train_examples():
    lengths = scaling.Lengths(*scaling.LENGTHS["esnli"], source="the script's table")
    full = scaling.phases(load_config(PRESET), lengths)[0]
    tenth = scaling.phases(load_config(PRESET, ["data.max_train_examples=54937"]), lengths)[0]
    assert (full.phase, full.questions, tenth.questions) == ("teacher sampling", 549_367, 54_937)
    ratio = 54_937 / 549_367
    for field in ("samples", "gen_tokens", "tokens"):
        assert getattr(tenth, field) == pytest.approx(getattr(full, field) * ratio)
