"""The voter actor: votes as batches arrive, statistics, and its place in the teacher phase."""

from __future__ import annotations

import re

import pytest

from actors.voter import create_voter
from jobs.teacher_phase import TeacherPhaseError, run_teacher_phase
from qcrd_ray.config import VotingConfig, from_dict
from qcrd_ray.records import Example, Rationale
from qcrd_ray.tasks import get_task
from qcrd_ray.toy import generate_split

ARITH = get_task("arith")


def example(qid: str, label: str, *answers: str | None) -> tuple[Example, list[Rationale]]:
    samples = [Rationale(text=f"{qid} reasoning {i}", answer=a) for i, a in enumerate(answers)]
    return Example(id=qid, input=f"question {qid}", label=label), samples


def test_voter_votes_each_batch_and_reports_accuracies(ray_local):
    voter = create_voter(VotingConfig(), ARITH, "vt")
    try:
        assert ray_local.get_actor("vt/voter")
        first = ray_local.get(voter.add.remote([example("a", "5", "5", "5", "4"), example("b", "7", "3", "3", "7")]))
        assert [v.example_id for v in first] == ["a", "b"]
        assert first[0].majority == "5" and len(first[0].positives) == 2 and len(first[0].negatives) == 1
        assert first[1].majority == "3" and first[1].majority_correct is False
        # Votes come back per batch, before the next batch exists.
        assert ray_local.get(voter.history.remote()) == [2]
        ray_local.get(voter.add.remote([example("c", "9", "9", None, "9")]))
        stats = ray_local.get(voter.stats.remote())
    finally:
        ray_local.kill(voter)
    assert stats["num_questions"] == 3 and stats["num_batches"] == 2 and stats["num_samples"] == 9
    assert stats["self_consistency_accuracy"] == pytest.approx(2 / 3)
    assert stats["single_sample_accuracy"] == pytest.approx(5 / 9)  # 2 + 1 + 2 correct samples of 9
    assert stats["first_sample_accuracy"] == pytest.approx(2 / 3)  # a: 5 yes, b: 3 no, c: 9 yes
    assert stats["parsed_fraction"] == pytest.approx(8 / 9)


def phase_cfg(tmp_path, model, name: str, **teacher):
    teacher = {
        "model": str(model),
        "num_samples": 2,
        "max_new_tokens": 24,
        "batch_size": 2,
        "cache_dir": str(tmp_path / "cache"),
        "min_parsed_share": 0.0,
        **teacher,
    }  # a random LM parses nothing
    return from_dict({"run": {"name": name}, "teacher": teacher})


PROGRESS = re.compile(r"teacher: (\d+)/(\d+) questions, (\d+) samples, [\d.]+ samples/s, (\d+) voted")


def test_votes_stream_in_before_the_last_batch_is_sampled(ray_local, tiny_causal_lm, tmp_path):
    examples = generate_split("train", 12, seed=9)  # 6 batches, sampled one after another by one actor
    lines: list[str] = []
    result = run_teacher_phase(phase_cfg(tmp_path, tiny_causal_lm, "stream"), examples, ARITH, progress=lines.append)
    counts = [tuple(map(int, m.groups())) for m in map(PROGRESS.match, lines) if m]
    assert counts and counts[-1][:3] == (12, 12, 24)
    # Some batch was voted while the teacher still had questions to sample.
    assert any(voted > 0 and done < total for done, total, _, voted in counts), lines
    assert [v.example_id for v in result.votes] == [ex.id for ex in examples]
    assert result.stats["num_batches"] == 6 and result.stats["num_questions"] == 12


def test_dataset_backend_votes_the_examples_own_teacher_rationales(ray_local, tmp_path):
    rows = [example("a", "5", "5", "5", "2"), example("b", "7", "7"), example("c", "1")]
    gold = Rationale(text="gold reasoning", answer="1", source="gold")
    examples = [Example(e.id, e.input, e.label, (*s, gold)) for e, s in rows]
    cfg = from_dict({"run": {"name": "ds"}, "teacher": {"backend": "dataset", "batch_size": 2}})
    result = run_teacher_phase(cfg, examples, ARITH, progress=lambda line: None)
    assert (result.num_sampled, result.num_cached, result.cache_path) == (0, 0, None)
    assert [v.num_samples for v in result.votes] == [3, 1, 0]  # the gold rationale is not a sample
    assert result.votes[0].majority == "5" and result.votes[1].majority == "7" and result.votes[2].majority is None
    assert result.stats["num_batches"] == 2 and result.stats["self_consistency_accuracy"] == pytest.approx(2 / 3)


def test_duplicate_example_ids_are_refused(ray_local, tmp_path):
    ex = generate_split("train", 1, seed=0)[0]
    cfg = from_dict({"run": {"name": "dup"}, "teacher": {"backend": "dataset"}})
    with pytest.raises(TeacherPhaseError, match=f"example id '{ex.id}' appears more than once"):
        run_teacher_phase(cfg, [ex, ex], ARITH)
