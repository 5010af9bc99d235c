"""Student negatives from a saved tiny T5 snapshot, sampled through the sampler actor on a real local Ray."""

from __future__ import annotations

import time

import pytest
import ray

from qcrd_ray.config import EvalConfig, NegativesConfig, StudentConfig, TinyModelConfig

QUESTIONS = [("q1", "what is 3 + 4 ?"), ("q2", "what is 2 + 5 ?"), ("q3", "what is 6 + 1 ?")]
EVAL = EvalConfig(max_new_tokens=6, batch_size=2, num_examples_in_report=2, rationale_max_new_tokens=8)
TEXTS = [text for _, text in QUESTIONS] + ["explain: 3 plus 4 makes 7 so the answer is 7", "predict: 7"]


def neg(samples: int, max_new_tokens: int, batch_size: int) -> NegativesConfig:
    return NegativesConfig(samples_per_question=samples, max_new_tokens=max_new_tokens, batch_size=batch_size)


def save_tiny_student(path, architecture: str = "seq2seq", seed: int = 0) -> str:
    from qcrd_ray.models import build_student, save_student
    from qcrd_ray.tokenizer import train_tokenizer

    cfg = StudentConfig(
        model=None, architecture=architecture, tiny=TinyModelConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64)
    )
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    save_student(build_student(cfg, tokenizer, seed=seed), tokenizer, path)
    return str(path)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return save_tiny_student(tmp_path_factory.mktemp("snapshot"))


@pytest.fixture(scope="module")
def sampler(_ray_session):
    from actors.student_sampler import StudentSamplerActor

    actor = StudentSamplerActor.options(num_cpus=0.5).remote()
    yield actor
    ray.kill(actor)


def test_num_samples_rationales_per_question(sampler, snapshot):
    out = ray.get(sampler.sample.remote(snapshot, QUESTIONS, neg(3, 8, 2), 0, 64))
    assert sorted(out) == ["q1", "q2", "q3"]
    assert all(len(samples) == 3 and all(isinstance(s, str) for s in samples) for samples in out.values())
    # A random tiny model at temperature 1.5 does not repeat itself over nine draws.
    assert len({s for samples in out.values() for s in samples}) > 1


def test_same_seed_same_samples_and_snapshot_loaded_once(sampler, snapshot):
    first = ray.get(sampler.sample.remote(snapshot, QUESTIONS, neg(2, 8, 3), 11, 64))
    loads = ray.get(sampler.num_loads.remote())
    again = ray.get(sampler.sample.remote(snapshot, QUESTIONS, neg(2, 8, 3), 11, 64))
    other = ray.get(sampler.sample.remote(snapshot, QUESTIONS, neg(2, 8, 3), 12, 64))
    assert first == again
    assert first != other
    assert ray.get(sampler.num_loads.remote()) == loads  # served from the cache


def test_batch_size_does_not_change_what_each_question_gets(sampler, snapshot):
    one = ray.get(sampler.sample.remote(snapshot, QUESTIONS, neg(1, 8, 8), 5, 64))
    assert set(one) == {"q1", "q2", "q3"} and all(len(v) == 1 for v in one.values())
    assert ray.get(sampler.sample.remote(snapshot, [], neg(1, 8, 8), 5, 64)) == {}


def test_evaluate_decodes_greedily_from_the_cached_snapshot(sampler, snapshot):
    """The actor's evaluation is ``evaluate_student`` on the snapshot it already holds (no second load)."""
    from qcrd_ray.evaluation import accuracy, evaluate_student
    from qcrd_ray.models import load_student
    from qcrd_ray.records import Example

    examples = [Example(qid, text, "7") for qid, text in QUESTIONS]
    ray.get(sampler.sample.remote(snapshot, QUESTIONS, neg(1, 4, 3), 0, 64))  # the snapshot is now cached
    loads = ray.get(sampler.num_loads.remote())
    result = ray.get(sampler.evaluate.remote(snapshot, examples, "arith", EVAL, explains=True, max_input_length=64))
    assert ray.get(sampler.num_loads.remote()) == loads
    model, tokenizer = load_student(snapshot)
    local = evaluate_student(model, tokenizer, examples, "arith", EVAL, explains=True, max_input_length=64)
    assert result["predictions"] == local["predictions"] and len(result["predictions"]) == 3
    assert result["accuracy"] == accuracy("arith", result["predictions"], ["7"] * 3)
    assert [e["input"] for e in result["examples"]] == [text for _, text in QUESTIONS[:2]]
    # A student that never learnt explain: (fine-tuning) is not asked for a rationale, not even for the report.
    label_only = evaluate_student(model, tokenizer, examples, "arith", EVAL, explains=False, max_input_length=64)
    assert label_only["predictions"] == local["predictions"] and label_only["rationales"] is None
    assert [(e["rationale"], e["rationale_answer"]) for e in label_only["examples"]] == [(None, None)] * 2


def test_a_rewritten_snapshot_is_reloaded(tmp_path):
    from actors.student_sampler import StudentSampler

    path = save_tiny_student(tmp_path / "slot", seed=0)
    sampler = StudentSampler()
    a = sampler.sample(path, QUESTIONS, neg(2, 8, 4), 3, 64)
    assert sampler.num_loads() == 1
    time.sleep(0.01)  # distinct mtimes on coarse file systems, not a timing assertion
    save_tiny_student(tmp_path / "slot", seed=1)  # a ring slot reused in place: different weights
    b = sampler.sample(path, QUESTIONS, neg(2, 8, 4), 3, 64)
    assert sampler.num_loads() == 2
    assert a != b


def test_cache_keeps_at_most_cache_size_snapshots(tmp_path):
    from actors.student_sampler import StudentSampler

    sampler = StudentSampler(cache_size=1)
    p0 = save_tiny_student(tmp_path / "s0", seed=0)
    p1 = save_tiny_student(tmp_path / "s1", seed=1)
    for path in (p0, p1, p0):
        sampler.sample(path, QUESTIONS[:1], neg(1, 4, 1), 0, 64)
    assert sampler.num_loads() == 3


def test_causal_student_is_prompted_with_explain_and_a_causal_prompt(tmp_path):
    from actors.student_sampler import StudentSampler
    from qcrd_ray.models import generate, load_student
    from qcrd_ray.scoring import causal_prompt
    from qcrd_ray.tasks import EXPLAIN

    path = save_tiny_student(tmp_path / "causal", architecture="causal")
    out = StudentSampler().sample(path, QUESTIONS, neg(2, 6, 2), 0, 64)
    assert all(len(v) == 2 for v in out.values())
    model, tokenizer = load_student(path)
    prompts = [causal_prompt(EXPLAIN + text) for _, text in QUESTIONS]
    expected = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=6,
        do_sample=True,
        temperature=1.5,
        num_return_sequences=2,
        batch_size=2,
        seed=0,
        max_input_length=64,
    )
    assert [out[qid] for qid, _ in QUESTIONS] == expected


def test_bad_arguments_raise(tmp_path, snapshot):
    from actors.student_sampler import StudentSampler

    sampler = StudentSampler()
    with pytest.raises(ValueError, match="samples_per_question"):
        sampler.sample(snapshot, QUESTIONS, neg(0, 4, 2), 0, 64)
    with pytest.raises(ValueError, match="temperature"):
        sampler.sample(snapshot, QUESTIONS, NegativesConfig(temperature=0.0), 0, 64)
    with pytest.raises(ValueError, match="unique"):
        sampler.sample(snapshot, [("q1", "a"), ("q1", "b")], neg(1, 4, 2), 0, 64)
    with pytest.raises(FileNotFoundError, match="snapshot"):
        sampler.sample(str(tmp_path / "missing"), QUESTIONS, neg(1, 4, 2), 0, 64)
    with pytest.raises(ValueError, match="cache_size"):
        StudentSampler(cache_size=0)


def test_the_seed_services_ask_for_what_the_sampler_and_judge_sections_say(_ray_session):
    """Nothing hard-codes a resource: the services' placement group has a bundle per replica of each section,
    the samplers' first (no GPU here); the judges' wait for QCRD to start them."""
    from jobs.seed_services import SeedServices
    from qcrd_ray.config import Config

    cfg = Config().replace(
        {"run.name": "res", "sampler.num_cpus": 0.25, "judge.num_cpus": 0.5, "judge.num_replicas": 2}
    )
    services = SeedServices.start(cfg, seed=3)
    try:
        group = ray.util.get_placement_group("res/seed_3/services")
        assert group.bundle_specs == [{"CPU": 0.25}, {"CPU": 0.5}, {"CPU": 0.5}]
        assert len(services.samplers) == 1 and services.judges == []
        assert ray.get(services.samplers[0].num_loads.remote()) == 0  # the sampler runs in its bundle
        assert ray.get(ray.get_actor("res/seed_3/student_sampler").num_loads.remote()) == 0
    finally:
        services.stop()


def test_a_sampler_in_bf16_casts_its_snapshots_and_samples(snapshot):
    """``sampler.dtype: bf16`` (what ``auto`` picks on a GPU) loads the snapshot in bf16; it still samples."""
    import torch

    from actors.student_sampler import StudentSampler

    sampler = StudentSampler(dtype="bf16")
    out = sampler.sample(snapshot, QUESTIONS, neg(1, 8, 3), 0, 64)
    assert sorted(out) == ["q1", "q2", "q3"] and all(len(v) == 1 for v in out.values())
    model, _ = sampler._load(snapshot)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert StudentSampler().dtype == torch.float32  # auto, on the CPU
