"""Pools of student samplers and judges on a simulated 2-node Ray cluster (both nodes on 127.0.0.1).

The driver's own steps (``jobs.qcrd_run``: QCRD's negatives, judge scores before and after an online update,
evaluation) run once with one replica of each actor and once with two, from the same seed: everything they
return is identical, in order and value, and the two replicas of each pool do share the work.
"""

from __future__ import annotations

import pytest
import ray

from qcrd_ray.config import Config
from qcrd_ray.records import Rationale, Vote

SEED = 3
OVERRIDES = {
    "student.max_input_length": 64,
    "train.steps_per_iteration": 1,  # an iteration draws 8 of the 24 questions: only those are sampled and scored
    "train.batch_size": 8,
    "negatives.batch_size": 5,  # its 8 questions: 2 chunks, one per replica
    "negatives.samples_per_question": 2,
    "negatives.max_new_tokens": 8,
    "judge.tiny.d_model": 32,
    "judge.tiny.num_layers": 1,
    "judge.tiny.num_heads": 2,
    "judge.tiny.d_ff": 64,
    "judge.hidden_size": 32,
    "judge.pretrain_steps": 4,
    "judge.update_steps": 2,
    "judge.batch_size": 4,
    "judge.lr": 3e-3,
    "judge.score_batch_size": 16,  # 8 questions x (2 positives + up to 3 negatives), the held-out ones: 3 chunks
    "judge.max_length": 48,
    "eval.batch_size": 4,  # 10 examples: 3 chunks
    "eval.max_new_tokens": 4,
    "eval.rationale_max_new_tokens": 6,
    "eval.num_examples_in_report": 5,
}


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a worker node of 1 CPU each: a pool of 2 samplers and 2 judges (half a CPU each) fills both."""
    from conftest import TEST_NAMESPACE, _init_ray
    from ray.cluster_utils import Cluster

    was_running = ray.is_initialized()
    if was_running:
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, namespace=TEST_NAMESPACE)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    if was_running:
        _init_ray()  # the session's Ray, for the modules after this one


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """24 toy training questions with made-up votes, 10 eval questions, and a tiny random student (snapshot 0)."""
    from qcrd_ray.config import StudentConfig, TinyModelConfig
    from qcrd_ray.models import build_student, save_student
    from qcrd_ray.tokenizer import train_tokenizer
    from qcrd_ray.toy import generate_split

    train, evals = generate_split("train", 24, seed=0), generate_split("test", 10, seed=0)
    votes = []
    for i, ex in enumerate(train):
        answer = int(ex.rationales[0].answer)
        right = [
            Rationale(f"{ex.input} gives {answer} so the answer is {answer}", str(answer)),
            Rationale(f"we work it out to {answer}", str(answer)),
        ]
        wrong = [Rationale(f"it is {answer + 1} so the answer is {answer + 1}", str(answer + 1))]
        votes.append(Vote(ex.id, str(answer), tuple(right), tuple(wrong[: i % 2]), 3, 3, 2 / 3, True, (*right, *wrong)))
    texts = [ex.input for ex in train + evals] + [r.text for v in votes for r in v.samples]
    tokenizer = train_tokenizer([*texts, "explain: predict:"], vocab_size=300)
    student = StudentConfig(model=None, tiny=TinyModelConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64))
    run_dir = tmp_path_factory.mktemp("pools")
    snapshot = run_dir / "initial_student"
    save_student(build_student(student, tokenizer, seed=SEED), tokenizer, snapshot)
    return train, evals, votes, run_dir, snapshot


def run_steps(replicas: int, data) -> dict:
    """The driver's steps with pools of ``replicas`` samplers and judges; what each returned."""
    from actors.pool import broadcast
    from jobs.method_run import MethodContext, evaluate_and_record
    from jobs.qcrd_run import QcrdRun
    from jobs.seed_services import SeedServices
    from qcrd_ray.methods import build_items
    from qcrd_ray.metrics import MetricsLogger, PhaseTimer
    from qcrd_ray.records import FitResult

    train, evals, votes, run_dir, snapshot = data
    cfg = Config().replace(
        {**OVERRIDES, "run.name": f"pool{replicas}", "sampler.num_replicas": replicas, "judge.num_replicas": replicas}
    )
    seed_dir = run_dir / f"replicas_{replicas}"
    metrics = MetricsLogger(seed_dir / "metrics.jsonl", ray_metrics=False)
    services = SeedServices.start(cfg, SEED)
    try:
        ctx = MethodContext(
            cfg=cfg,
            seed=SEED,
            train=train,
            eval=evals,
            votes=votes,
            greedy_votes=None,
            seed_dir=seed_dir,
            services=services,
            fit=None,
            timer=PhaseTimer(metrics),
            metrics=metrics,
        )
        qcrd = QcrdRun(ctx, snapshot, seed_dir / "qcrd")
        snapshot_0 = FitResult(student_dir=str(snapshot), checkpoint="", metrics={})  # evaluated as a fit's
        assert len(services.samplers) == len(services.judges) == replicas
        qcrd.pretrain_judge()
        samples = qcrd.negatives(0)
        positions = qcrd.iteration_questions(0)
        items = build_items(cfg, "qcrd", [train[i] for i in positions], [votes[i] for i in positions], samples)
        scored = qcrd.score(0, items, samples)
        qcrd.update_judge(0, scored)
        rescored = qcrd.score(1, items, samples)
        out = {
            "questions": [train[i].id for i in positions],
            "samples": list(samples.items()),
            "scored": scored,
            "rescored": rescored,
            "versions": broadcast(services.judges, "version"),
            "qcrd_eval": evaluate_and_record(ctx, "qcrd", 0, snapshot_0, []),
            "finetune_eval": evaluate_and_record(ctx, "finetune", 0, snapshot_0, []),
            # did every replica do its share: a snapshot loaded, pairs scored
            "sampler_loads": broadcast(services.samplers, "num_loads"),
            "judge_scored": [len(s["last_scores"]) for s in broadcast(services.judges, "state")],
        }
        if replicas > 1:
            table = ray.util.placement_group_table(services.group)
            out["nodes"] = len(set(table["bundles_to_node_id"].values()))
        return out
    finally:
        services.stop()
        metrics.close()


def test_two_replicas_give_what_one_gives(two_nodes, data):
    one = run_steps(1, data)
    two = run_steps(2, data)
    assert two["nodes"] == 2  # the pools span both nodes

    # The iteration's questions alone, the ones its batches draw, are sampled and scored.
    assert len(one["questions"]) == 8 and [q for q, _ in one["samples"]] == one["questions"]
    assert [it.id for it in one["scored"]] == one["questions"]
    assert all(len(s) == 2 for _, s in one["samples"])
    assert two["samples"] == one["samples"]  # the same rationales for the same questions, in the same order
    assert two["scored"] == one["scored"]  # every judge score, exactly
    assert two["rescored"] == one["rescored"]  # after replica 0's update and the others' sync
    assert two["rescored"] != two["scored"]  # the update did change D, so the sync mattered
    assert one["versions"] == [2] and two["versions"] == [2, 2]  # pretrained, updated: every replica alike

    for key in ("qcrd_eval", "finetune_eval"):
        assert two[key] == one[key]
        assert len(one[key]["examples"]) == 5
    assert "rationale_accuracy" in one["qcrd_eval"] and "rationale_accuracy" not in one["finetune_eval"]

    assert all(loads >= 1 for loads in two["sampler_loads"])
    assert all(n > 0 for n in two["judge_scored"])


def test_auto_sizes_the_pools_to_the_clusters_gpus_and_a_resume_keeps_them(two_nodes, tmp_path, capsys):
    """``num_replicas: auto`` reads the GPUs the cluster has (a node of 4 joins the two), prints and records what it
    chose; a resume after the cluster grew sizes as the run began, a new run takes the new GPUs. The nodes' GPUs
    are Ray's logical resources: nothing here runs on one."""
    from jobs.distill import load_inputs
    from jobs.ray_cluster import POOLS_FILE, sized_pools
    from qcrd_ray.config import load_config
    from qcrd_ray.console import Console

    cfg = load_config(
        "configs/tiny.yaml",
        [
            *("sampler.num_replicas=auto", "judge.num_replicas=auto", "sampler.num_gpus=1", "judge.num_gpus=1"),
            *("train.use_gpu=true", "negatives.batch_size=8", "judge.score_batch_size=16", "eval.batch_size=8"),
        ],
    )
    inputs = load_inputs(cfg)
    questions = (len(inputs.train), len(inputs.eval))  # 64, 32: 8 chunks of negatives, 4 of evaluation, 16 of scoring
    grown = [two_nodes.add_node(num_cpus=1, num_gpus=4, node_ip_address="127.0.0.1")]
    try:
        two_nodes.wait_for_nodes()
        sized = sized_pools(cfg, tmp_path, False, questions, Console())
        assert (sized.sampler.num_replicas, sized.judge.num_replicas) == (2, 1)  # 3 GPUs beside the fit's 1
        assert (
            "pools sized to the cluster: 2 student sampler(s) and 1 judge(s) for the 3 GPU(s)"
            in capsys.readouterr().out
        )
        recorded = (tmp_path / POOLS_FILE).read_text()

        grown.append(two_nodes.add_node(num_cpus=1, num_gpus=4, node_ip_address="127.0.0.1"))
        two_nodes.wait_for_nodes()
        resumed = sized_pools(cfg, tmp_path, True, questions, Console())
        assert resumed == sized and (tmp_path / POOLS_FILE).read_text() == recorded
        assert "pools as the run began (pools.json)" in capsys.readouterr().out
        (tmp_path / "new").mkdir()
        fresh = sized_pools(cfg, tmp_path / "new", False, questions, Console())
        assert (fresh.sampler.num_replicas, fresh.judge.num_replicas) == (4, 3)  # 7 beside the fit: 4 + 3
    finally:
        for node in grown:
            two_nodes.remove_node(node)
