"""``num_replicas: auto``: the pools sized to the cluster's GPUs (or CPUs), by the rule cluster/SCALING.md states."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcrd_ray.config import ConfigError, load_config
from qcrd_ray.pool_sizing import (
    PoolSizes,
    fewest_replicas,
    pass_chunks,
    questions_per_iteration,
    size_pools,
    split_pools,
    wants_sizing,
    with_pool_sizes,
)

ROOT = Path(__file__).resolve().parents[1]
ON_GPUS = [
    "sampler.num_replicas=auto",
    "judge.num_replicas=auto",
    "sampler.num_gpus=1",
    "judge.num_gpus=1",
    "train.use_gpu=true",
    "train.num_workers=4",
]


def test_the_gpus_beside_the_fit_go_half_to_each_pool_trimmed_to_their_chunks():
    assert split_pools(0, [9], [9]) == split_pools(1, [9], [9]) == (1, 1)  # fewer than two: one of each shares
    assert split_pools(4, [9], [9]) == (2, 2)
    assert split_pools(5, [9], [9]) == (3, 2)  # the samplers take the odd one
    assert split_pools(8, [9], [9]) == (3, 3)  # 9 chunks: 4 replicas take 3 rounds, as 3 do
    assert split_pools(8, [2, 8], [1]) == (4, 1)  # the largest pass decides; one chunk needs one judge
    assert fewest_replicas(5, [6]) == 3 and fewest_replicas(7, []) == 1


def test_an_iterations_passes_count_its_drawn_questions_and_the_evaluations():
    cfg = load_config(None, ["eval.curve_size=256"])
    questions = questions_per_iteration(cfg, 1000)
    assert questions == 1000  # the default draws 1,920 positions of its 1,000 questions
    samplers, judges = pass_chunks(cfg, 1000, 1000)
    assert samplers == [-(-1000 // cfg.negatives.batch_size), -(-256 // cfg.eval.batch_size), -(-1000 // 64)]
    pairs = 1000 * (cfg.teacher.num_samples + cfg.negatives.samples_per_question)
    assert judges == [-(-pairs // cfg.judge.score_batch_size)]


def test_pools_on_gpus_take_what_the_fit_leaves():
    cfg = load_config(None, ON_GPUS)
    sizes = size_pools(cfg, {"CPU": 64.0, "GPU": 8.0}, 1000, 1000)
    assert sizes == PoolSizes("GPU", 8.0, 4.0, 2, 2)
    assert size_pools(cfg, {"CPU": 64.0, "GPU": 5.0}, 1000, 1000).samplers == 1  # one GPU beside the fit: shared
    assert size_pools(cfg, {"CPU": 64.0}, 1000, 1000) == PoolSizes("GPU", 0.0, 4.0, 1, 1)  # none yet (autoscaling)
    fixed = load_config(None, [*ON_GPUS, "judge.num_replicas=3"])
    sizes = size_pools(fixed, {"GPU": 16.0}, 1000, 1000)
    assert (sizes.samplers, sizes.judges) == (6, 3)  # a count the config gives stands; the samplers get half of 12


def test_pools_on_cpus_count_cpus_by_each_replicas_ask():
    cfg = load_config(None, ["sampler.num_replicas=auto", "judge.num_replicas=auto"])  # half a CPU each, fit on 1
    assert size_pools(cfg, {"CPU": 2.0}, 1000, 1000) == PoolSizes("CPU", 2.0, 1.0, 1, 1)  # a laptop: as today
    assert size_pools(cfg, {"CPU": 5.0}, 1000, 1000) == PoolSizes("CPU", 5.0, 1.0, 4, 4)


def test_the_sized_config_is_what_the_run_sees_and_a_record_round_trips():
    cfg = load_config(None, ON_GPUS)
    assert wants_sizing(cfg) and not wants_sizing(load_config(None))
    sizes = size_pools(cfg, {"GPU": 8.0}, 1000, 1000)
    sized = with_pool_sizes(cfg, sizes)
    assert (sized.sampler.num_replicas, sized.judge.num_replicas) == (2, 2) and not wants_sizing(sized)
    assert PoolSizes.from_dict(sizes.to_dict()) == sizes
    with pytest.raises(ValueError, match="samplers: expected an integer >= 1"):
        PoolSizes.from_dict({**sizes.to_dict(), "samplers": 0})
    with pytest.raises(ValueError, match="expected the keys"):
        PoolSizes.from_dict({"samplers": 2})
    assert (
        "2 student sampler(s) and 2 judge(s) for the 4 GPU(s) beside the fit's 4 (8 in the cluster)" in sizes.describe()
    )


def test_auto_is_the_only_word_a_replica_count_takes():
    with pytest.raises(ConfigError, match="sampler.num_replicas: expected int or one of 'auto'"):
        load_config(None, ["sampler.num_replicas=many"])
    with pytest.raises(ConfigError, match="judge.num_replicas: expected an integer >= 1 or auto"):
        load_config(None, ["judge.num_replicas=0"])
