"""The built-in toy task (qcrd_ray/toy.py) and its tiny teacher (qcrd_ray/builtin_teacher.py)."""

from __future__ import annotations

import json
import random
import re

import pytest

from qcrd_ray.builtin_teacher import (
    DONE_MARKER,
    TeacherRecipe,
    build_teacher,
    evaluate_teacher,
    train_teacher_tokenizer,
)
from qcrd_ray.tasks import get_task
from qcrd_ray.toy import (
    MAX_VALUE,
    completion_text,
    computations,
    equation,
    generate_split,
    parse_answer,
    prompt_text,
    slipped_rationale,
    split_of,
    teacher_training_text,
)

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def test_equation_parenthesises_a_sum_before_a_product_and_evaluates_to_the_chain():
    assert equation(9, [("+", 2), ("*", 3), ("-", 4)]) == "(9 + 2) * 3 - 4"
    assert equation(9, [("*", 2), ("+", 3)]) == "9 * 2 + 3"
    assert get_task("arith").value(equation(9, [("-", 2), ("+", 1), ("*", 2)])) == 16


def test_generate_split_is_deterministic_in_split_and_seed():
    first = generate_split("train", 200, seed=3)
    assert first == generate_split("train", 200, seed=3)
    assert [ex.input for ex in first] != [ex.input for ex in generate_split("train", 200, seed=4)]
    assert len({ex.id for ex in first}) == 200
    assert len({ex.input for ex in first}) == 200


def test_splits_are_disjoint_whatever_the_seed():
    train = {ex.input for seed in (0, 1000) for ex in generate_split("train", 3000, seed=seed)}
    validation = {ex.input for ex in generate_split("validation", 300, seed=0)}
    test = {ex.input for ex in generate_split("test", 300, seed=0)} | {
        ex.input for ex in generate_split("test", 300, seed=7)
    }
    assert not train & validation and not train & test and not validation & test
    assert {split_of(q) for q in test} == {"test"}


def test_gold_rationales_compute_correctly_step_by_step():
    for ex in generate_split("validation", 300, seed=1):
        (gold,) = ex.rationales
        assert gold.source == "gold" and gold.answer == str(int(gold.answer))
        assert get_task("arith").value(ex.label) == int(gold.answer)  # the label is the equation
        steps = computations(gold.text)
        # One computed sentence per operation of the story (the sentences between the opening and the question).
        assert len(steps) == len(re.findall(r"\.", ex.input)) - 1
        assert 2 <= len(steps) <= 4
        start = int(re.match(r"\w+ has (\d+) ", ex.input).group(1))
        value = start
        for a, op, b, c in steps:
            assert a == value and OPS[op](a, b) == c
            assert 1 <= c <= MAX_VALUE
            value = c
        assert str(value) == gold.answer
        assert ex.label == equation(start, [(op, b) for _, op, b, _ in steps])


def test_slips_make_the_answer_differ_and_propagate():
    rng = random.Random(0)
    for ex in generate_split("train", 300, seed=2):
        gold_steps = computations(ex.rationales[0].text)
        text, answer = slipped_rationale(ex.rationales[0].text, rng)
        steps = computations(text)
        assert answer != ex.rationales[0].answer and str(steps[-1][3]) == answer
        assert len(steps) == len(gold_steps)
        # Exactly one step is wrong (a wrong result, or a different operation than the story's); every other
        # step computes correctly from the value before it, so the slip carries through to the answer.
        wrong = [
            i
            for i, (s, g) in enumerate(zip(steps, gold_steps, strict=True))
            if OPS[g[1]](s[0], s[2]) != s[3] or s[1] != g[1]
        ]
        assert len(wrong) == 1
        for prev, cur in zip(steps, steps[1:], strict=False):
            assert cur[0] == prev[3]
        assert all(0 <= v <= MAX_VALUE for a, _, _, c in steps for v in (a, c))
        # The story text around the computations is untouched.
        assert re.sub(r"\d+", "N", text.replace("+", "?").replace("-", "?").replace("*", "?")) == re.sub(
            r"\d+", "N", ex.rationales[0].text.replace("+", "?").replace("-", "?").replace("*", "?")
        )


def test_teacher_training_text_has_the_teacher_format_and_the_asked_error_rate():
    examples = generate_split("train", 1000, seed=5)
    rng = random.Random(0)
    clean = [teacher_training_text(ex, rng, 0.0) for ex in examples]
    answers = [ex.rationales[0].answer for ex in examples]
    assert clean[0] == prompt_text(examples[0].input) + completion_text(examples[0].rationales[0].text, answers[0])
    assert all(parse_answer(text) == a for text, a in zip(clean, answers, strict=True))
    always = [teacher_training_text(ex, rng, 1.0) for ex in examples[:200]]
    assert all(parse_answer(text) != a for text, a in zip(always, answers[:200], strict=True))
    some = [teacher_training_text(ex, random.Random(i), 0.3) for i, ex in enumerate(examples)]
    slipped = sum(parse_answer(text) != a for text, a in zip(some, answers, strict=True)) / len(examples)
    assert 0.25 < slipped < 0.35
    with pytest.raises(ValueError, match="error_rate"):
        teacher_training_text(examples[0], rng, 1.5)


def test_completion_format_parses():
    question = generate_split("test", 1)[0].input
    assert prompt_text(question) == f"Q: {question}\nA:"
    completion = completion_text("Tom has 3 apples. He buys 4 more: 3 + 4 = 7.", "7")
    assert completion == " Tom has 3 apples. He buys 4 more: 3 + 4 = 7. So the answer is 7."
    assert parse_answer(completion) == "7"
    assert parse_answer(" ... So the answer is -3.") == "-3"
    assert parse_answer(" ... So the answer is 012.") == "12"
    assert parse_answer(" Tom has 3 apples: 3 + 4 = 7.") is None


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        generate_split("dev", 3)
    with pytest.raises(ValueError, match="size"):
        generate_split("train", -1)


def test_teacher_tokenizer_splits_digits_and_appends_no_eos():
    examples = generate_split("train", 300)
    tok = train_teacher_tokenizer([teacher_training_text(ex, random.Random(0), 0.0) for ex in examples], vocab_size=400)
    ids = tok(" 47 + 5 = 52.", add_special_tokens=True)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert all(len(p.lstrip("Ġ")) == 1 for p in pieces if p.lstrip("Ġ").isdigit() or p.lstrip("Ġ")[:1].isdigit())
    assert tok.eos_token_id not in ids
    assert tok.decode(ids) == " 47 + 5 = 52."
    assert tok.padding_side == "left"


def test_a_minimal_teacher_trains_saves_reloads_and_is_evaluated(tmp_path, monkeypatch):
    """The real build path at a toy scale (seconds): completion-only loss, save_pretrained, Auto* reload,
    left-padded sampling with k samples per question."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qcrd_ray import builtin_teacher

    recipe = TeacherRecipe(
        num_questions=64,
        vocab_size=300,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        steps=3,
        batch_size=8,
        warmup_steps=1,
    )
    info = build_teacher(tmp_path, recipe, seed=0, log_every=0)
    assert json.loads((tmp_path / DONE_MARKER).read_text())["recipe"] == info["recipe"]
    tok = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.config.model_type == "llama" and model.generation_config.eos_token_id == tok.eos_token_id
    assert tok.eos_token_id not in tok("Q: x\nA:")["input_ids"]  # the reloaded tokenizer appends nothing either

    # It trained: on held-out questions, the reloaded teacher's loss per token is below that of the same seed's
    # initialisation (build_teacher seeds torch, then builds the model). Measured on 2 cores: 5.47 against
    # 5.69 (ln 300 = 5.70; other initialisations 5.69-5.71); a fall of 0.1 leaves half of it as slack.
    held_out = [teacher_training_text(ex, random.Random(0), 0.0) for ex in generate_split("validation", 32, seed=0)]
    torch.manual_seed(0)
    untrained = type(model)(model.config).eval()
    before, after = text_loss(untrained, tok, held_out), text_loss(model, tok, held_out)
    assert after < before - 0.1, (before, after)

    # It is evaluated as evaluate_teacher's docstring says. A 3-step teacher answers nothing, so the answers
    # read from its 4 x 3 samples are scripted (in the order they are parsed) and the figures hand-computed:
    #   q0: gold, wrong, none   -> 1 right, 2 parsed; the vote ties 1-1 and goes to the answer seen first: right
    #   q1: gold, none, none    -> 1 right, 1 parsed; voted right
    #   q2: wrong, wrong, gold  -> 1 right, 3 parsed; voted wrong
    #   q3: none, none, none    -> 0 right, 0 parsed; no vote: wrong
    # accuracy 3 / 12, sc_accuracy 2 / 4, parse_rate 6 / 12.
    test = generate_split("test", 4)
    gold = [ex.rationales[0].answer for ex in test]
    script = [
        [gold[0], "-1", None],
        [gold[1], None, None],
        ["-1", "-1", gold[2]],
        [None, None, None],
    ]
    parsed_texts: list[str] = []

    def scripted_parse(text: str) -> str | None:
        q, s = divmod(len(parsed_texts), 3)
        parsed_texts.append(text)
        return script[q][s]

    monkeypatch.setattr(builtin_teacher, "parse_answer", scripted_parse)
    result = evaluate_teacher(tmp_path, test, k=3, max_new_tokens=8)
    assert len(parsed_texts) == 12 and all(isinstance(t, str) for t in parsed_texts)
    assert result["num_questions"] == 4 and result["k"] == 3
    assert result["accuracy"] == 3 / 12 and result["sc_accuracy"] == 2 / 4 and result["parse_rate"] == 6 / 12
    assert result["example_completion"] == parsed_texts[0]


def text_loss(model, tokenizer, texts: list[str]) -> float:
    """Mean cross-entropy per token of ``texts`` under a causal LM (right-padded, padding masked)."""
    import torch

    tokenizer.padding_side = "right"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    with torch.no_grad():
        return model(**enc, labels=labels).loss.item()


def test_shipped_teacher_matches_its_recipe_and_writes_parseable_answers():
    """The shipped build is what ``ensure_builtin_teacher`` returns (no build), and it answers the task."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qcrd_ray.builtin_teacher import SHIPPED_ROOT, ensure_builtin_teacher

    path = ensure_builtin_teacher("arith")
    assert path.parent == SHIPPED_ROOT and (path / DONE_MARKER).is_file()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    test = generate_split("test", 8)
    enc = tok([prompt_text(ex.input) for ex in test], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=96, pad_token_id=tok.pad_token_id)
    completions = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    answers = [parse_answer(c) for c in completions]
    assert all(a is not None for a in answers), completions
    right = sum(a == ex.rationales[0].answer for a, ex in zip(answers, test, strict=True))
    assert right >= 5, completions  # greedy: mostly right


def test_ensure_builds_into_the_cache_once_and_reuses_it(tmp_path, monkeypatch):
    """Another recipe (here a toy-sized one) is built into the cache, renamed into place, then reused."""
    from qcrd_ray import builtin_teacher

    small = TeacherRecipe(
        num_questions=64,
        vocab_size=300,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        steps=2,
        batch_size=8,
        warmup_steps=1,
    )
    monkeypatch.setitem(builtin_teacher.RECIPES, "arith", small)
    monkeypatch.setenv("QCRD_CACHE", str(tmp_path / "default"))  # the shipped build is of another recipe
    assert builtin_teacher.ensure_builtin_teacher("arith").parent == tmp_path / "default"
    path = builtin_teacher.ensure_builtin_teacher("arith", cache_dir=tmp_path, seed=0)
    assert path == tmp_path / builtin_teacher.teacher_dir_name("arith") and (path / DONE_MARKER).is_file()
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]  # the temp dir was renamed, not left
    built_at = (path / DONE_MARKER).stat().st_mtime_ns
    assert builtin_teacher.ensure_builtin_teacher("arith", cache_dir=tmp_path, seed=0) == path
    assert (path / DONE_MARKER).stat().st_mtime_ns == built_at
