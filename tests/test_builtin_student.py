"""The built-in pretrained student: its corpus never shows the task's sentences, and the shipped build computes."""

import re

import pytest

from qcrd_ray import builtin_student, shipped_student
from qcrd_ray.builtin_student import chain_text, pretraining_pairs, random_chain
from qcrd_ray.shipped_student import NAME, resolve_student
from qcrd_ray.toy import generate_split

# The task's sentences (toy.py's opening, operations and question): the student knows the words, never these
# (its copying of the words in random order forms one by chance, rarely).
TASK_SENTENCES = re.compile(
    r"\b[A-Z][a-z]+ has \d+ \w+\.|\b(He|She) (buys|finds) \d+ more|\b(He|She) gives \d+ to|\b(He|She) (loses|sells) \d+"
    r"|gives (him|her) \d+ more|The pile (doubles|triples)|How many \w+ does \w+ have"
)


def test_the_pretraining_corpus_is_not_the_task():
    pairs = pretraining_pairs(3000, seed=0)
    hits = [p for p in pairs if TASK_SENTENCES.search(p[0] + " " + p[1])]
    # Only the random word orders can form a clause, by chance, and rarely: 3 words in a row out of 80.
    assert all(a.startswith(("copy:", "numbers:")) and "." not in a for a, _ in hits) and len(hits) < 0.002 * len(pairs)
    assert all(TASK_SENTENCES.search(ex.input) for ex in generate_split("train", 50, seed=0))  # the pattern bites
    questions = {ex.input for ex in generate_split("train", 200, seed=0)}
    assert not questions & {a.split(": ", 1)[1] for a, _ in pairs}
    kinds = {a.split(":", 1)[0] for a, _ in pairs}
    assert kinds == {"compute", "result", "copy", "numbers", "fill"}


def test_chains_are_worked_out_right_and_stay_in_range():
    import random

    rng = random.Random(0)
    for _ in range(500):
        start, ops = random_chain(rng)
        asked, worked, result = chain_text(start, ops)
        value = start
        for (op, k), step in zip(ops, worked.split(". "), strict=True):
            value = value + k if op == "+" else value - k if op == "-" else value * k
            assert step.rstrip(".").endswith(f"= {value}") and 1 <= value <= 99
        assert result == value and asked.count(",") == len(ops) - 1
    assert chain_text(14, [("*", 3), ("-", 6)]) == ("14 * 3, - 6", "14 * 3 = 42. 42 - 6 = 36.", 36)


def test_other_names_pass_through():
    assert resolve_student("google-t5/t5-small") == "google-t5/t5-small"


@pytest.mark.skipif(not (shipped_student.SHIPPED_DIR / shipped_student.DONE_MARKER).is_file(), reason="not built")
def test_the_shipped_student_loads_by_name_and_computes():
    from qcrd_ray.config import StudentConfig
    from qcrd_ray.models import build_student, build_tokenizer, generate

    cfg = StudentConfig(model=NAME)
    tokenizer = build_tokenizer(cfg)
    model = build_student(cfg, tokenizer).eval()
    assert tokenizer.tokenize(" 57") == ["Ġ5", "7"]  # digits split
    out = generate(model, tokenizer, ["compute: 14 * 3, - 6"], max_new_tokens=32, max_input_length=64)
    assert out[0][0].strip() == "14 * 3 = 42. 42 - 6 = 36."
    # Held-out chains as the build measured them (build_info.json: 99.4% of 500 worked out exactly).
    held_out = builtin_student.evaluate_pretraining(model, tokenizer, n=100)
    assert held_out["compute_exact"] >= 0.95
