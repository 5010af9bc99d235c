"""How pooled work is cut up (qcrd_ray.sharding) and how a chunked evaluation is merged (no Ray here)."""

from __future__ import annotations

import pytest

from qcrd_ray.config import EvalConfig, StudentConfig, TinyModelConfig
from qcrd_ray.evaluation import decode_evaluation, evaluate_student, evaluation_chunks, merge_evaluations
from qcrd_ray.records import Example
from qcrd_ray.sharding import chunk_bounds, chunk_seed, chunks, concat, merge_samples

EXAMPLES = [Example(f"e{i}", f"what is {i} + {i % 3 + 1} ?", str(i + i % 3 + 1)) for i in range(7)]


def test_chunks_cover_the_items_in_order():
    assert chunk_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunk_bounds(6, 3) == [(0, 3), (3, 6)]
    assert chunk_bounds(0, 3) == []
    assert chunks(list("abcdefg"), 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert chunks(list("ab"), 128) == [["a", "b"]]
    with pytest.raises(ValueError, match="size must be >= 1"):
        chunk_bounds(3, 0)


def test_chunk_seeds_are_stable_and_distinct():
    seeds = {chunk_seed(base, c) for base in range(50) for c in range(50)}
    assert len(seeds) == 2500
    assert chunk_seed(7, 2) == chunk_seed(7, 2) and all(0 <= s < 2**63 for s in seeds)
    # base * 1000 + c would give (base 0, chunk 1000) the seed of (base 1, chunk 0); a hash does not
    assert chunk_seed(0, 1000) != chunk_seed(1, 0)
    # fixed across processes and Python versions: a resumed run samples what an unbroken one would
    assert chunk_seed(0, 0) == int.from_bytes(__import__("hashlib").sha256(b"qcrd-chunk:0:0").digest()[:8]) >> 1


def test_merging_keeps_chunk_order_and_refuses_a_question_twice():
    merged = merge_samples([{"q1": ["a"], "q2": ["b", "c"]}, {}, {"q3": ["d"]}])
    assert list(merged) == ["q1", "q2", "q3"] and merged["q2"] == ["b", "c"]
    with pytest.raises(ValueError, match="'q2' came back from two chunks"):
        merge_samples([{"q2": ["b"]}, {"q2": ["c"]}])
    assert concat([[0.1, 0.2], [], [0.3]]) == [0.1, 0.2, 0.3]


def test_evaluation_chunks_explain_what_one_call_would():
    cfg = EvalConfig(batch_size=3, num_examples_in_report=4)
    assert evaluation_chunks(7, cfg, explains=True) == [(0, 3, 3), (3, 6, 3), (6, 7, 1)]
    # a student that does not explain (fine-tuning) decodes no rationale, not even for the report's examples
    assert evaluation_chunks(7, cfg, explains=False) == [(0, 3, 0), (3, 6, 0), (6, 7, 0)]
    assert evaluation_chunks(2, EvalConfig(batch_size=3, num_examples_in_report=0), explains=False) == [(0, 2, 0)]


def test_merge_scores_over_all_examples_not_per_chunk():
    """Chunks of 3 and 1 examples: 2/3 right and 0/1 right is 2/4 overall, not the chunks' mean (1/3)."""
    examples = [Example(f"q{i}", f"x{i}", label) for i, label in enumerate(["1", "2", "3", "4"])]
    parts = [
        {"predictions": ["1", "2", "9"], "rationales": ["so the answer is 1", "no answer here", "so the answer is 3"]},
        {"predictions": ["8"], "rationales": ["so the answer is 4"]},
    ]
    merged = merge_evaluations(parts, examples, "arith", True, 2)
    assert merged["accuracy"] == 0.5 and merged["rationale_accuracy"] == 0.75
    assert merged["predictions"] == ["1", "2", "9", "8"]
    assert [e["input"] for e in merged["examples"]] == ["x0", "x1"]
    assert merged["examples"][1] == {
        "input": "x1",
        "label": "2",
        "prediction": "2",
        "rationale": "no answer here",
        "rationale_answer": None,
    }
    # without explaining: no rationale, no answer read from one, no rationale accuracy
    short = merge_evaluations(
        [{"predictions": ["1", "2", "9"], "rationales": []}, {"predictions": ["4"], "rationales": []}],
        examples,
        "arith",
        False,
        3,
    )
    assert short["rationale_accuracy"] is None and short["accuracy"] == 0.75 and len(short["examples"]) == 3
    assert {(e["rationale"], e["rationale_answer"]) for e in short["examples"]} == {(None, None)}
    with pytest.raises(ValueError, match="3 predictions for 4 examples"):
        merge_evaluations(parts[:1], examples, "arith", False, 2)
    with pytest.raises(ValueError, match="3 rationales for 4 examples"):
        merge_evaluations([parts[0], {"predictions": ["8"], "rationales": []}], examples, "arith", True, 2)


@pytest.fixture(scope="module")
def tiny_student():
    from qcrd_ray.models import build_student
    from qcrd_ray.tokenizer import train_tokenizer

    texts = [ex.input for ex in EXAMPLES] + ["explain: 3 plus 4 makes 7 so the answer is 7", "predict: 7"]
    tokenizer = train_tokenizer(texts, vocab_size=300)
    cfg = StudentConfig(model=None, tiny=TinyModelConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64))
    return build_student(cfg, tokenizer, seed=0), tokenizer


@pytest.mark.parametrize("explains", [True, False])
def test_chunks_decoded_in_any_order_merge_into_one_evaluation(tiny_student, explains):
    """What a pool does: each chunk decoded on its own (here last chunk first), merged in chunk order."""
    model, tokenizer = tiny_student
    cfg = EvalConfig(batch_size=3, max_new_tokens=4, rationale_max_new_tokens=6, num_examples_in_report=4)
    whole = evaluate_student(model, tokenizer, EXAMPLES, "arith", cfg, explains=explains, max_input_length=64)
    spans = evaluation_chunks(len(EXAMPLES), cfg, explains)
    decoded = {
        c: decode_evaluation(model, tokenizer, EXAMPLES[start:stop], cfg, max_input_length=64, explained=explained)
        for c, (start, stop, explained) in reversed(list(enumerate(spans)))
    }
    merged = merge_evaluations([decoded[c] for c in range(len(spans))], EXAMPLES, "arith", explains, 4)
    assert merged == whole
    assert len(whole["predictions"]) == 7 and len(whole["examples"]) == 4
    assert sum(len(d["rationales"]) for d in decoded.values()) == (7 if explains else 0)
    assert (whole["rationale_accuracy"] is None) != explains
