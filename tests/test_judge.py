"""The quality judge D on a real local Ray: pretraining separates good rationales from perturbed ones,
scoring, versions, save/load, and the Ray Serve deployment over real HTTP on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import random
import socket
import statistics

import pytest
import ray

from qcrd_ray.config import JudgeConfig, TinyModelConfig

CFG = JudgeConfig(
    encoder=None,  # a tiny random-init encoder over the tokenizer of tokenizer_dir
    tiny=TinyModelConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64),
    hidden_size=32,
    pretrain_steps=30,
    update_steps=3,
    batch_size=8,
    score_batch_size=16,
    lr=3e-3,
    max_length=48,
)


def arithmetic_groups(seed: int = 0) -> list[tuple[str, list[str], list[str]]]:
    """(question, positives, negatives): correct "a + b" rationales against scrambled ones with a wrong sum."""
    rng = random.Random(seed)
    groups = []
    for a in range(1, 8):
        for b in range(1, 6):
            s = a + b
            wrong = s + rng.choice([-2, -1, 1, 2])
            positives = [f"{a} plus {b} makes {s} so the answer is {s}", f"we add {a} and {b} to get {s}"]
            negatives = [f"{b} the is answer {wrong} plus so {a} makes"]
            groups.append((f"what is {a} + {b} ?", positives, negatives))
    return groups


def pairs_of(groups, which: int) -> list[tuple[str, str]]:
    return [(q, r) for q, *sets in groups for r in sets[which]]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from qcrd_ray.tokenizer import train_tokenizer

    texts = [t for q, p, n in arithmetic_groups() for t in (q, *p, *n)]
    path = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(texts, vocab_size=300).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def pretrained(_ray_session, tokenizer_dir):
    """A judge actor, its scores before pretraining, and what pretraining reported."""
    from actors.judge import JudgeActor

    judge = JudgeActor.options(num_cpus=0.5).remote(CFG, tokenizer_dir, 0)
    groups = arithmetic_groups()
    before = ray.get(judge.score.remote(pairs_of(groups, 0) + pairs_of(groups, 1)))
    info = ray.get(judge.pretrain.remote(groups))
    yield judge, before, info
    ray.kill(judge)


def test_pretraining_lowers_the_loss_and_separates_positives_from_negatives(pretrained):
    judge, before, info = pretrained
    groups = arithmetic_groups()
    assert info["steps"] == CFG.pretrain_steps and len(info["losses"]) == CFG.pretrain_steps
    assert info["num_groups"] == len(groups)
    # One negative per two positives: balancing adds one corrupted positive per group.
    assert info["num_augmented"] == len(groups)
    assert statistics.mean(info["losses"][-5:]) < statistics.mean(info["losses"][:5]) - 0.05
    n_pos = len(pairs_of(groups, 0))
    gap_before = statistics.mean(before[:n_pos]) - statistics.mean(before[n_pos:])
    pos = ray.get(judge.score.remote(pairs_of(groups, 0)))
    neg = ray.get(judge.score.remote(pairs_of(groups, 1)))
    gap_after = statistics.mean(pos) - statistics.mean(neg)
    assert gap_after > 0.15
    assert gap_after > gap_before + 0.15


def test_the_level_term_puts_positives_above_one_half_and_negatives_below(tokenizer_dir):
    """QCRD weighs by s and 1 - s, so the level matters: with the term on, D's scores sit on either side of 1/2."""
    from qcrd_ray.judge import QualityJudge

    groups = arithmetic_groups()
    judge = QualityJudge(dataclasses.replace(CFG, level_weight=1.0, pretrain_steps=80), tokenizer_dir, seed=0)
    judge.pretrain(groups)
    pos, neg = statistics.mean(judge.score(pairs_of(groups, 0))), statistics.mean(judge.score(pairs_of(groups, 1)))
    assert pos > 0.6 and neg < 0.4, (pos, neg)


def test_scores_are_one_per_pair_in_unit_interval_and_independent_of_batching(pretrained, tokenizer_dir):
    judge, _, _ = pretrained
    pairs = pairs_of(arithmetic_groups(), 0)[:37]  # 37 = two full batches of 16 and a ragged one
    scores = ray.get(judge.score.remote(pairs))
    assert len(scores) == 37 and all(0.0 <= s <= 1.0 for s in scores)
    one_by_one = [ray.get(judge.score.remote([p]))[0] for p in pairs[:5]]
    assert one_by_one == pytest.approx(scores[:5], abs=1e-5)
    assert ray.get(judge.score.remote([])) == []


def test_state_reports_version_steps_losses_and_last_scores(pretrained):
    judge, _, info = pretrained
    pairs = pairs_of(arithmetic_groups(), 1)[:6]
    scores = ray.get(judge.score.remote(pairs))
    state = ray.get(judge.state.remote())
    assert state["version"] == ray.get(judge.version.remote()) >= 1
    assert state["steps"] >= CFG.pretrain_steps
    assert state["last_scores"] == scores
    assert len(state["last_losses"]) >= 1


def test_every_update_increments_the_version_and_runs_update_steps(tokenizer_dir):
    from qcrd_ray.judge import QualityJudge

    judge = QualityJudge(CFG, tokenizer_dir, seed=1)
    assert judge.version() == 0
    groups = arithmetic_groups()[:6]
    no_negatives = [("what is 1 + 1 ?", ["1 plus 1 makes 2"], [])]
    info = judge.update(groups + no_negatives, lr_scale=1.0)
    assert (info["version"], info["steps"], info["num_groups"], info["lr_scale"]) == (1, CFG.update_steps, 6, 1.0)
    assert judge.update(groups, lr_scale=0.9)["version"] == 2
    assert judge.state()["steps"] == 2 * CFG.update_steps
    # Nothing usable: still a new version (the iteration happened), but no step taken.
    assert judge.update(no_negatives, lr_scale=0.81)["steps"] == 0
    assert judge.version() == 3
    with pytest.raises(ValueError, match="lr_scale"):
        judge.update(groups, lr_scale=-1.0)


def test_a3_decay_shrinks_the_online_update(tokenizer_dir):
    """a3_t / a3_0 scales the judge's online learning rate: a decayed a3 moves D's weights less (issue 14.4)."""
    import torch

    from qcrd_ray.config import LossConfig
    from qcrd_ray.judge import QualityJudge
    from qcrd_ray.schedule import judge_lr_scale

    loss = LossConfig()
    groups = arithmetic_groups()[:4]

    def update_size(iteration: int) -> float:
        judge = QualityJudge(CFG, tokenizer_dir, seed=2)
        before = [p.detach().clone() for p in judge.model.parameters()]
        judge.update(groups, judge_lr_scale(loss, iteration))
        return (
            sum(float((p.detach() - b).norm() ** 2) for p, b in zip(judge.model.parameters(), before, strict=True))
            ** 0.5
        )

    sizes = [update_size(t) for t in (0, 5, 20)]
    assert sizes[0] > sizes[1] > sizes[2] > 0
    # Adam's step is about lr per weight, so the update's size follows a3_t / a3_0 = 0.9 ** t.
    assert sizes[1] / sizes[0] == pytest.approx(0.9**5, rel=0.15)

    judge = QualityJudge(CFG, tokenizer_dir, seed=2)
    before = {k: v.clone() for k, v in judge.model.state_dict().items()}
    assert judge.update(groups, judge_lr_scale(LossConfig(alpha_judge=0.0), 0))["steps"] == 0  # a3 = 0: no updates
    assert all(torch.equal(v, before[k]) for k, v in judge.model.state_dict().items())


def test_a_replica_that_loads_the_weights_scores_as_the_one_that_trained(tokenizer_dir):
    """The judge pool's sync (actors.judge.sync_replicas): replica 0 trains, the others load its weights()."""
    import torch

    from qcrd_ray.judge import QualityJudge

    groups = arithmetic_groups()
    pairs = pairs_of(groups, 0)[:8] + pairs_of(groups, 1)[:8]
    trained, other = QualityJudge(CFG, tokenizer_dir, seed=0), QualityJudge(CFG, tokenizer_dir, seed=0)
    assert trained.score(pairs) == other.score(pairs)  # built alike from one seed
    trained.update(groups[:6], lr_scale=1.0)
    assert trained.score(pairs) != other.score(pairs)
    weights = trained.weights()
    assert all(t.device.type == "cpu" for t in weights["model"].values())
    assert other.load_weights(weights) == trained.version() == 1
    assert other.score(pairs) == trained.score(pairs)
    assert other.state()["steps"] == trained.state()["steps"] == CFG.update_steps
    weights["model"]["head.0.bias"] += 1.0  # a copy: the trained judge keeps its own
    assert not torch.equal(trained.model.state_dict()["head.0.bias"], weights["model"]["head.0.bias"])


def test_pretrain_without_any_positive_raises(tokenizer_dir):
    from qcrd_ray.judge import QualityJudge

    judge = QualityJudge(CFG, tokenizer_dir, seed=0)
    with pytest.raises(ValueError, match="positive"):
        judge.pretrain([("what is 1 + 1 ?", [], ["1 plus 1 makes 3"])])


def test_a_judge_needs_the_student_dir():
    from qcrd_ray.judge import QualityJudge

    with pytest.raises(ValueError, match="student_dir"):
        QualityJudge(CFG, None, seed=0)


def test_save_and_load_give_identical_scores_and_version(pretrained, tokenizer_dir, tmp_path, ray_local):
    from actors.judge import JudgeActor
    from qcrd_ray.judge import resolve_judge_dir

    judge, _, _ = pretrained
    pairs = pairs_of(arithmetic_groups(), 0)[:10] + pairs_of(arithmetic_groups(), 1)[:10]
    version = ray.get(judge.version.remote())
    path = ray.get(judge.save.remote(str(tmp_path / "judge")))
    assert path.endswith(f"v{version:04d}")
    assert resolve_judge_dir(tmp_path / "judge") == resolve_judge_dir(path)
    other = JudgeActor.options(num_cpus=0.5).remote(CFG, tokenizer_dir, 99)
    try:
        assert ray.get(other.score.remote(pairs)) != ray.get(judge.score.remote(pairs))
        assert ray.get(other.load.remote(str(tmp_path / "judge"))) == version
        assert ray.get(other.score.remote(pairs)) == ray.get(judge.score.remote(pairs))
        assert ray.get(other.state.remote())["steps"] == ray.get(judge.state.remote())["steps"]
    finally:
        ray.kill(other)
    with pytest.raises(FileNotFoundError, match="not a saved judge"):
        resolve_judge_dir(tmp_path)


def test_an_update_after_load_matches_the_unbroken_judge(tokenizer_dir, tmp_path):
    """A resumed run's judge (saved, then loaded into a fresh one of another seed) updates exactly as the
    unbroken one: weights, Adam's moments, the batch order and dropout's generator all come back."""
    from qcrd_ray.judge import QualityJudge

    groups = arithmetic_groups()
    judge = QualityJudge(CFG, tokenizer_dir, seed=0)
    judge.pretrain(groups[:20])
    judge.save(str(tmp_path / "judge"))
    resumed = QualityJudge(CFG, tokenizer_dir, seed=7)
    resumed.load(str(tmp_path / "judge"))
    assert judge.update(groups, 0.5)["losses"] == resumed.update(groups, 0.5)["losses"]
    pairs = pairs_of(groups, 0)[:6] + pairs_of(groups, 1)[:6]
    assert judge.score(pairs) == resumed.score(pairs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_deployment_answers_over_http_with_the_actors_scores(pretrained, tmp_path, ray_local):
    import httpx
    from ray import serve

    from actors.judge import deploy_judge

    judge, _, _ = pretrained
    path = ray.get(judge.save.remote(str(tmp_path / "served")))
    question = "what is 3 + 4 ?"
    rationales = ["3 plus 4 makes 7 so the answer is 7", "4 the is answer 9 plus so 3 makes", "we add 3 and 4 to get 7"]
    expected = ray.get(judge.score.remote([(question, r) for r in rationales]))
    port = _free_port()
    url = deploy_judge(str(tmp_path / "served"), host="127.0.0.1", port=port, name="test_judge")
    try:
        assert url == f"http://127.0.0.1:{port}/score"
        reply = httpx.post(url, json={"question": question, "rationales": rationales}, timeout=60)
        assert reply.status_code == 200
        body = reply.json()
        assert body["version"] == ray.get(judge.version.remote())
        assert body["scores"] == pytest.approx(expected, abs=1e-5)
        bad = httpx.post(url, json={"question": question, "rationales": "not a list"}, timeout=60)
        assert bad.status_code == 400 and "rationales" in bad.json()["error"]
        assert httpx.get(f"http://127.0.0.1:{port}/version", timeout=60).json() == {"version": body["version"]}
    finally:
        serve.shutdown()
    assert path.endswith(f"v{body['version']:04d}")


def test_a_fresh_judge_scores_one_half_on_every_seed(tokenizer_dir):
    """The head's last layer starts at zero: no seed starts with its weights inverted (issue 33)."""
    from qcrd_ray.judge import QualityJudge

    pairs = pairs_of(arithmetic_groups(), 0)[:5] + pairs_of(arithmetic_groups(), 1)[:5]
    for seed in (0, 1, 2):
        assert QualityJudge(CFG, tokenizer_dir, seed=seed).score(pairs) == pytest.approx([0.5] * len(pairs))


def test_judge_encoder_resolves_the_student_builtin_names_and_relative_paths(tmp_path, monkeypatch):
    from qcrd_ray.models import judge_encoder
    from qcrd_ray.shipped_student import SHIPPED_DIR

    assert judge_encoder(None, tmp_path) is None
    assert judge_encoder("student", tmp_path) == str(tmp_path.resolve())
    assert judge_encoder("builtin:arith-student", tmp_path) == str(SHIPPED_DIR.resolve())
    (tmp_path / "encoder").mkdir()
    monkeypatch.chdir(tmp_path)
    assert judge_encoder("encoder", "elsewhere") == str((tmp_path / "encoder").resolve())
    assert judge_encoder("google-t5/t5-base", "elsewhere") == "google-t5/t5-base"  # a hub name stays


@pytest.mark.parametrize("student", ["seq2seq", "causal"])
def test_a_judge_on_the_students_own_model_pretrains_saves_loads_and_resumes(student, tiny_causal_lm, tmp_path):
    """judge.encoder: student builds D on the initial student's encoder (a T5's; a decoder-only model's
    transformer), and a saved D comes back whole: the resumed judge updates and scores as the unbroken one."""
    import torch
    from transformers import AutoModelForCausalLM, T5ForConditionalGeneration

    from qcrd_ray.judge import QualityJudge
    from qcrd_ray.shipped_student import SHIPPED_DIR

    student_dir = str(SHIPPED_DIR) if student == "seq2seq" else str(tiny_causal_lm)
    cfg = dataclasses.replace(CFG, encoder="student", pretrain_steps=4, update_steps=2, max_length=64)
    judge = QualityJudge(cfg, student_dir, seed=0)
    model_class = T5ForConditionalGeneration if student == "seq2seq" else AutoModelForCausalLM
    embeddings = model_class.from_pretrained(student_dir).get_input_embeddings().weight
    assert torch.equal(judge.model.encoder.get_input_embeddings().weight, embeddings)
    groups = arithmetic_groups()
    pairs = pairs_of(groups, 0)[:4] + pairs_of(groups, 1)[:4]
    assert judge.score(pairs) == pytest.approx([0.5] * len(pairs))
    judge.pretrain(groups[:12])
    judge.save(str(tmp_path / "judge"))
    # nothing saved names where the student was loaded from: equal judges of two run dirs are equal bytes
    assert not any(student_dir in f.read_text() for f in (tmp_path / "judge").rglob("*.json"))
    resumed = QualityJudge(cfg, student_dir, seed=7)
    resumed.load(str(tmp_path / "judge"))
    assert type(resumed.model.encoder) is type(judge.model.encoder)
    assert judge.score(pairs) == resumed.score(pairs)
    assert judge.update(groups, 0.5)["losses"] == resumed.update(groups, 0.5)["losses"]
    assert judge.score(pairs) == resumed.score(pairs)


def test_compute_dtype_auto_is_bf16_on_a_gpu_and_fp32_on_the_cpu():
    import torch

    from qcrd_ray.precision import compute_dtype

    assert compute_dtype("auto", "cpu") == torch.float32 and compute_dtype("auto", "cuda") == torch.bfloat16
    assert compute_dtype("bf16", "cpu") == torch.bfloat16 and compute_dtype("fp32", "cuda") == torch.float32


def test_a_bf16_judge_trains_and_scores_near_the_fp32_one(tokenizer_dir):
    """``judge.dtype: bf16`` autocasts D's passes (its weights and optimizer stay fp32): it trains, and its
    scores stay within bf16's rounding of the fp32 judge's."""
    import torch

    from qcrd_ray.judge import QualityJudge

    groups = arithmetic_groups()
    pairs = pairs_of(groups, 0)[:4] + pairs_of(groups, 1)[:4]
    judges = {
        dtype: QualityJudge(dataclasses.replace(CFG, dtype=dtype), tokenizer_dir, seed=0) for dtype in ("fp32", "bf16")
    }
    for judge in judges.values():
        judge.pretrain(groups)
    assert judges["bf16"].dtype == torch.bfloat16
    assert {p.dtype for p in judges["bf16"].model.parameters()} == {torch.float32}
    assert judges["bf16"].score(pairs) == pytest.approx(judges["fp32"].score(pairs), abs=0.05)
    assert judges["bf16"].score(pairs) != judges["fp32"].score(pairs)  # computed in bf16 indeed
