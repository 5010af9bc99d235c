"""benchmarks.scaling: a preset's plan has every phase and N, its work follows the data size, and the sampler and
judge pools divide their phases as jobs/qcrd_run.py deals them (chunk c to replica c % R) (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import scaling, scaling_work
from qcrd_ray.config import load_config
from qcrd_ray.pool_sizing import questions_per_iteration

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "esnli_t5_base.yaml"
COSTS = ROOT / "cluster" / "measured_costs.json"
PHASES = (
    "teacher sampling",
    "judge pretraining",
    "student negatives",
    "judge scoring",
    "judge online update",
    "student training (qcrd)",
    "evaluation",
)
LENGTHS = scaling_work.Lengths(*scaling_work.LENGTHS["esnli"], source="the script's table")


def plan(overrides: list[str] | None = None, n: int = 8, pools: tuple[int, int] | None = None) -> dict[str, float]:
    """Seconds per phase of the e-SNLI preset on N GPUs, with the config's pools or (samplers, judges); every
    training question sampled and scored each iteration (as before 2026-12-07), whose chunk counts divide evenly."""
    cfg = load_config(PRESET, overrides or [])
    proj = scaling.Projection(cfg, json.loads(COSTS.read_text(encoding="utf-8")), str(COSTS))
    run = scaling_work.phases(cfg, LENGTHS, every_question=True)
    p = proj.pools(n, run) if pools is None else scaling.Pools(n, proj.pools(n, run).workers, *pools)
    return {w.phase: proj.seconds(w, p) for w in run}


def test_main_prints_the_phases_for_each_n(capsys):
    scaling.main(["--config", str(PRESET), "--costs", str(COSTS), "--dss", str(ROOT.parent / "shared/data/dss")])
    out = capsys.readouterr().out
    work, hours = out.split("## Projected hours")
    for phase in PHASES:
        assert f"| {phase} |" in work
        assert f"| {phase} |" in hours
    assert "| phase | N = 1 | N = 8 | N = 64 |" in hours
    assert "| teacher sampling | openai actors | 549,367 |" in work  # e-SNLI's training set
    assert "| student negatives | sampler x 2, 250 chunks a pass |" in work  # 32,000 / negatives.batch_size 128
    assert "| judge pretraining | judge replica 0 |" in work
    assert "| GPUs: train workers / samplers / judges | 1 / 2 / 2 (shared) | 4 / 2 / 2 | 32 / 2 / 2 |" in hours
    assert "| **pools sized to N**: train workers / samplers / judges |" in hours
    assert (
        "| **total, pools sized to N** |" in hours
        and "size them when a run starts (qcrd_ray/pool_sizing.py): the fit keeps" in hours
    )
    assert "**Service pools.**" in hours and "--set sampler.num_replicas=" in hours
    assert "single actor" not in out.lower()
    assert "## Bottlenecks" in hours and "breaks at" in hours


def test_teacher_work_shrinks_with_max_train_examples():
    full = scaling_work.phases(load_config(PRESET), LENGTHS)[0]
    tenth = scaling_work.phases(load_config(PRESET, ["data.max_train_examples=54937"]), LENGTHS)[0]
    assert (full.phase, full.questions, tenth.questions) == ("teacher sampling", 549_367, 54_937)
    ratio = 54_937 / 549_367
    for field in ("samples", "gen_tokens", "tokens"):
        assert getattr(tenth, field) == pytest.approx(getattr(full, field) * ratio)


def test_doubling_the_sampler_pool_halves_negatives_and_evaluation_only():
    two, four = plan(n=64), plan(["sampler.num_replicas=4"], n=64)  # 64: the fit keeps its 32 workers
    assert four["student negatives"] == pytest.approx(two["student negatives"] / 2)  # 4,292 chunks a pass
    assert four["evaluation"] == pytest.approx(two["evaluation"] * 39 / 77)  # 154 chunks: 77 rounds, then 39
    for phase in ("judge pretraining", "judge scoring", "judge online update", "student training (qcrd)"):
        assert four[phase] == pytest.approx(two[phase])


def test_the_judge_pool_divides_scoring_while_pretraining_and_updates_stay_on_replica_0():
    one, eight = plan(["judge.num_replicas=1"]), plan(["judge.num_replicas=8"], n=64)
    assert eight["judge scoring"] == pytest.approx(one["judge scoring"] / 8)  # 25,752 chunks = 8 x 3,219
    assert eight["judge pretraining"] == pytest.approx(one["judge pretraining"])
    assert eight["judge online update"] == pytest.approx(one["judge online update"])
    assert eight["student negatives"] == pytest.approx(one["student negatives"])


def test_a_pass_takes_whole_rounds_of_chunks():
    """Eval is 154 chunks: 100 replicas take two rounds (no faster than 77), 154 take one."""
    one = plan(pools=(1, 1), n=1000)["evaluation"]
    assert plan(pools=(77, 1), n=1000)["evaluation"] == pytest.approx(one * 2 / 154)
    assert plan(pools=(100, 1), n=1000)["evaluation"] == pytest.approx(one * 2 / 154)
    assert plan(pools=(154, 1), n=1000)["evaluation"] == pytest.approx(one / 154)


def test_gpus_held_count_the_fit_and_every_replica():
    cfg = load_config(PRESET, ["sampler.num_replicas=3", "judge.num_replicas=5"])
    proj = scaling.Projection(cfg, json.loads(COSTS.read_text(encoding="utf-8")), str(COSTS))
    run = scaling_work.phases(cfg, LENGTHS)
    p = proj.pools(64, run)
    assert (p.workers, p.samplers, p.judges, p.fits) == (32, 3, 5, True)  # 56 free: 32 divides the batch of 64
    negatives = next(w for w in run if w.phase == "student negatives")
    assert proj.held(negatives, p) == 32 + 3 + 5
    assert proj.pools(8, run) == scaling.Pools(8, 8, 3, 5, fits=False)  # the pools alone need all 8: they share


def test_an_iteration_samples_and_scores_only_the_questions_its_batches_draw():
    """e-SNLI trains on 500 x 64 = 32,000 of its 549,367 questions an iteration: negatives and scoring 17.2x less
    than when every question was sampled and scored; a preset that trains on its whole set is unchanged."""
    cfg = load_config(PRESET)
    now, before = (
        {w.phase: w for w in scaling_work.phases(cfg, LENGTHS, every_question=every)} for every in (False, True)
    )
    assert now["student negatives"].questions == 32_000 * cfg.run.iterations
    for phase in ("student negatives", "judge scoring"):
        assert before[phase].tokens / now[phase].tokens == pytest.approx(549_367 / 32_000)
    assert now["student training (qcrd)"] == before["student training (qcrd)"]
    assert questions_per_iteration(load_config(PRESET, ["train.group_by_length=true"]), 549_367) == 549_367
    assert questions_per_iteration(load_config(ROOT / "configs/svamp_t5_base.yaml"), 700) == 700


@pytest.mark.parametrize("n", [8, 12, 64])
def test_pools_sized_to_n_keep_the_fit_and_split_the_rest(n):
    cfg = load_config(PRESET)
    proj = scaling.Projection(cfg, json.loads(COSTS.read_text(encoding="utf-8")), str(COSTS))
    run = scaling_work.phases(cfg, LENGTHS, every_question=True)  # chunks enough for every GPU
    p = proj.sized(n, run)
    assert p.workers == cfg.train.num_workers and p.samplers >= 1 and p.judges >= 1 and p.fits
    assert p.workers + p.samplers + p.judges <= n
    assert p.samplers + p.judges >= n - p.workers - 1  # e-SNLI has chunks enough for every GPU
    sized, config = (sum(proj.seconds(w, pools) for w in run) for pools in (p, proj.pools(n, run)))
    assert sized == pytest.approx(config) if n == 8 else sized < config / 1.5  # the preset is sized to N = 8


def test_on_one_gpu_everything_shares_it():
    cfg = load_config(PRESET)
    proj = scaling.Projection(cfg, json.loads(COSTS.read_text(encoding="utf-8")), str(COSTS))
    run = scaling_work.phases(cfg, LENGTHS)
    assert proj.sized(1, run) == scaling.Pools(1, 1, 1, 1, fits=False)
    assert [proj.seconds(w, proj.sized(1, run)) for w in run] == [proj.seconds(w, proj.pools(1, run)) for w in run]


def test_auto_pools_project_as_the_run_sizes_them():
    """``num_replicas: auto`` in a config is projected with the rule the driver sizes by; a count it gives stands."""
    cfg = load_config(PRESET, ["sampler.num_replicas=auto", "judge.num_replicas=auto"])
    proj = scaling.Projection(cfg, json.loads(COSTS.read_text(encoding="utf-8")), str(COSTS))
    run = scaling_work.phases(cfg, LENGTHS)
    assert (
        proj.pools(64, run) == proj.sized(64, run) == scaling.Pools(64, 4, 28, 30)
    )  # 250 chunks: 30 replicas take 9 rounds, as 28 do
    cfg = load_config(PRESET, ["sampler.num_replicas=auto", "judge.num_replicas=3"])
    proj = scaling.Projection(cfg, json.loads(COSTS.read_text(encoding="utf-8")), str(COSTS))
    assert (proj.pools(64, run).samplers, proj.pools(64, run).judges) == (28, 3)
