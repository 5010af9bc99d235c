"""The teacher sample cache: round trip, keys, torn last lines, damaged files."""

from __future__ import annotations

import json

import pytest

from qcrd_ray.config import TeacherConfig
from qcrd_ray.sample_cache import CacheKey, SampleCache, prompt_template_sha, sha256_text
from qcrd_ray.tasks import get_task

KEY = CacheKey(model="builtin:arith", template_sha="abc", num_samples=2, temperature=0.7, seed=0)
PROMPTS = {f"q{i}": f"Q: question {i}\nA:" for i in range(5)}


def batch(ids, tag="x"):
    return [(i, PROMPTS[i], [f"{tag} {i} a", f"{tag} {i} b"]) for i in ids]


def test_round_trip_over_two_batches_and_a_reopen(tmp_path):
    with SampleCache(tmp_path, KEY) as cache:
        assert cache.lookup(PROMPTS) == {}
        assert cache.append(batch(["q0", "q1"])) == 2
        # Flushed per batch: a second reader sees it while the writer is still open.
        assert SampleCache(tmp_path, KEY).done_ids(PROMPTS) == {"q0", "q1"}
        cache.append(batch(["q3"]))
    again = SampleCache(tmp_path, KEY)
    done = again.lookup(PROMPTS)
    assert done == {"q0": ("x q0 a", "x q0 b"), "q1": ("x q1 a", "x q1 b"), "q3": ("x q3 a", "x q3 b")}
    rows = [json.loads(line) for line in again.path.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q0", "q1", "q3"]
    assert rows[0]["prompt_sha"] == sha256_text(PROMPTS["q0"])
    key_file = json.loads(again.path.with_suffix(".key.json").read_text())
    assert key_file["num_samples"] == 2 and key_file["model"] == "builtin:arith"


def test_a_changed_prompt_is_not_a_hit(tmp_path):
    with SampleCache(tmp_path, KEY) as cache:
        cache.append(batch(["q0", "q1"]))
    changed = {**PROMPTS, "q1": "Q: another question\nA:"}
    assert SampleCache(tmp_path, KEY).done_ids(changed) == {"q0"}


def test_every_key_field_selects_its_own_file(tmp_path):
    variants = [
        CacheKey("other-model", "abc", 2, 0.7, 0),
        CacheKey("builtin:arith", "def", 2, 0.7, 0),
        CacheKey("builtin:arith", "abc", 3, 0.7, 0),
        CacheKey("builtin:arith", "abc", 2, 1.0, 0),
        CacheKey("builtin:arith", "abc", 2, 0.7, 1),
        CacheKey("builtin:arith", "abc", 2, 0.7, 0, top_p=0.9),
        CacheKey("builtin:arith", "abc", 2, 0.7, 0, max_new_tokens=64),
        CacheKey("builtin:arith", "abc", 2, 0.7, 0, backend="vllm"),
    ]
    names = {SampleCache(tmp_path, k).path.name for k in [KEY, *variants]}
    assert len(names) == len(variants) + 1
    assert SampleCache(tmp_path, KEY).path.name.startswith("builtin_arith-K2-T0.7-s0-")


def test_key_from_teacher_config_and_template_hash():
    arith, svamp = get_task("arith"), get_task("svamp")
    assert prompt_template_sha(arith.prompt) == prompt_template_sha(arith.prompt)
    assert prompt_template_sha(arith.prompt) != prompt_template_sha(svamp.prompt)
    key = CacheKey.for_teacher(TeacherConfig(num_samples=5, temperature=0.7, seed=3), "t")
    assert (key.model, key.num_samples, key.temperature, key.seed, key.template_sha) == (
        "builtin:stories",  # the default teacher
        5,
        0.7,
        3,
        "t",
    )


def test_torn_last_line_is_ignored_then_cut_before_the_next_append(tmp_path):
    with SampleCache(tmp_path, KEY) as cache:
        cache.append(batch(["q0", "q1"]))
    whole = cache.path.read_bytes()
    # A crash in the middle of writing q2's record.
    cache.path.write_bytes(whole + b'{"id": "q2", "prompt_sha": "12", "compl')
    assert SampleCache(tmp_path, KEY).done_ids(PROMPTS) == {"q0", "q1"}
    with SampleCache(tmp_path, KEY) as resumed:
        resumed.append(batch(["q2", "q4"], tag="y"))
    text = cache.path.read_text()
    assert text.startswith(whole.decode()) and text.endswith("\n")
    assert [json.loads(line)["id"] for line in text.splitlines()] == ["q0", "q1", "q2", "q4"]
    assert SampleCache(tmp_path, KEY).lookup(PROMPTS)["q2"] == ("y q2 a", "y q2 b")


def test_a_damaged_line_is_skipped_with_file_and_line_and_its_question_sampled_again(tmp_path, capsys):
    with SampleCache(tmp_path, KEY) as cache:
        cache.append(batch(["q0", "q1", "q2"]))
    lines = cache.path.read_text().splitlines()
    cache.path.write_text(lines[0] + "\n" + '{"id": "q1", "prompt_sha": 3\n' + lines[2] + "\n")
    assert SampleCache(tmp_path, KEY).done_ids(PROMPTS) == {"q0", "q2"}  # q1 is sampled again
    assert f"{cache.path}: 1 damaged record(s) ignored (line 2)" in capsys.readouterr().err


def test_wrong_number_of_completions_is_refused(tmp_path):
    with (
        SampleCache(tmp_path, KEY) as cache,
        pytest.raises(ValueError, match="has 1 completions, the cache key says K=2"),
    ):
        cache.append([("q0", PROMPTS["q0"], ["only one"])])
    assert not cache.path.exists() or cache.path.read_text() == ""


def test_a_record_with_fewer_completions_than_k_is_not_done(tmp_path):
    tmp_path.joinpath(SampleCache(tmp_path, KEY).path.name).write_text(
        json.dumps({"id": "q0", "prompt_sha": sha256_text(PROMPTS["q0"]), "completions": ["a"]}) + "\n"
    )
    assert SampleCache(tmp_path, KEY).done_ids(PROMPTS) == set()
