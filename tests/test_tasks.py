"""Tasks: inputs, labels, answer comparison, prompts and the parsing of teacher output."""

import re

import pytest

from qcrd_ray.tasks import EXPLAIN, NLI_LABELS, NLI_SEPARATOR, PREDICT, TASKS, canonical_number, get_task

ALL = ("arith", "svamp", "cqa", "anli1", "esnli")
CQA_ROW = {
    "id": "x1",
    "question": "A beaver is know for building prowess, their supplies come from where?",
    "choices": ["british columbia", "body of water", "wooded area", "pay debts", "zoo"],
    "answer": "wooded area",
}
CQA_INPUT = (
    "A beaver is know for building prowess, their supplies come from where?\nAnswer Choices:\n"
    "(a) british columbia\n(b) body of water\n(c) wooded area\n(d) pay debts\n(e) zoo"
)


def test_registry_and_prefixes():
    assert set(TASKS) == set(ALL)
    assert all(get_task(name).name == name for name in ALL)
    with pytest.raises(ValueError, match="unknown task 'gsm8k'.*arith, svamp, cqa, anli1, esnli"):
        get_task("gsm8k")
    assert (PREDICT, EXPLAIN) == ("predict: ", "explain: ")


def test_format_input_and_gold_label():
    assert get_task("cqa").format_input(CQA_ROW) == CQA_INPUT
    assert get_task("cqa").gold_label(CQA_ROW) == "wooded area"
    nli_row = {"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": 2}
    for name in ("anli1", "esnli"):
        task = get_task(name)
        assert task.format_input(nli_row) == "A man sleeps. </s> A man is awake."
        assert [task.gold_label({**nli_row, "label": i}) for i in range(3)] == list(NLI_LABELS)
        assert task.gold_label({**nli_row, "label": "neutral"}) == "neutral"
        for bad in (3, -1, True, "maybe"):
            with pytest.raises(ValueError, match="field 'label'"):
                task.gold_label({**nli_row, "label": bad})
    svamp_row = {"input": "Luke scored 84 points in 2 rounds.\nHow many per round?", "label": "( 84.0 / 2.0 )"}
    assert get_task("svamp").format_input(svamp_row) == svamp_row["input"]
    assert get_task("svamp").gold_label(svamp_row) == "( 84.0 / 2.0 )"
    with pytest.raises(ValueError, match="field 'label'.*unexpected character 'x'"):
        get_task("svamp").gold_label({"input": "q", "label": "( x + 1 )"})
    with pytest.raises(KeyError):
        get_task("cqa").format_input({"question": "q"})


def test_normalize():
    assert canonical_number(5.0) == "5" and canonical_number(0.1 + 0.2) == "0.3" and canonical_number(-0.0) == "0"
    assert get_task("arith").normalize(" 5.0 ") == "5"
    assert get_task("arith").normalize("$1,200.") == "1200"
    assert get_task("svamp").normalize("5.0") == "5"
    assert get_task("svamp").normalize("( 84.0 / 2.0 )") == "( 84 / 2 )"
    assert get_task("svamp").normalize("(84/2).") == "( 84 / 2 )"
    assert get_task("cqa").normalize("  Wooded   Area. ") == "wooded area"
    assert get_task("esnli").normalize("Entailment.") == "entailment"


def test_is_correct():
    svamp = get_task("svamp")
    assert svamp.is_correct("(2 * 21)", "( 84.0 / 2.0 )")  # equations compared by value, as DSS does
    assert svamp.is_correct("42", "( 84.0 / 2.0 )")
    assert not svamp.is_correct("(84 - 2)", "( 84.0 / 2.0 )")
    assert not svamp.is_correct("( 84 / x", "( 84.0 / 2.0 )")  # a prediction that fails to parse is wrong
    assert not svamp.is_correct("__import__('os')", "( 84.0 / 2.0 )")
    assert not svamp.is_correct("( some - 8 )", "( some - 8 )")  # neither side has a value
    arith = get_task("arith")
    assert arith.is_correct("5.0", "5") and not arith.is_correct("five", "5") and not arith.is_correct("6", "5")
    cqa = get_task("cqa")
    assert cqa.is_correct("Wooded area.", "wooded area") and not cqa.is_correct("zoo", "wooded area")
    assert get_task("anli1").is_correct("Neutral", "neutral") and not get_task("anli1").is_correct(
        "neutral", "entailment"
    )


@pytest.mark.parametrize("name", ALL)
def test_prompt_ends_with_the_question(name):
    task = get_task(name)
    question = CQA_INPUT if name == "cqa" else "Premise text. </s> Hypothesis text." if "nli" in name else "Q1?"
    prompt = task.prompt(question)
    assert prompt.endswith(f"Q: {task.teacher_question(question)}\nA:")
    if name == "arith":
        assert prompt == "Q: Q1?\nA:"  # zero-shot: what the built-in teacher is trained on
        return
    assert 2 <= len(task.exemplars) <= 4
    for ex in task.exemplars:
        shot = f"Q: {task.teacher_question(ex.question)}\nA: {ex.rationale} So the answer is {ex.answer}.\n\n"
        assert shot in prompt
    assert prompt.count("\nA:") == len(task.exemplars) + 1


def test_nli_teacher_question_spells_out_premise_and_hypothesis():
    rendered = get_task("esnli").teacher_question(f"A dog runs.{NLI_SEPARATOR}An animal moves.")
    assert rendered.startswith("Premise: A dog runs.\nHypothesis: An animal moves.\n")
    assert "</s>" not in rendered


@pytest.mark.parametrize("name", ["svamp", "cqa", "anli1", "esnli"])
def test_parse_output_round_trips_the_exemplars(name):
    task = get_task(name)
    for ex in task.exemplars:
        runaway = ex.completion() + "\n\nQ: Some next question?\nA: Something else. So the answer is (a) other."
        parsed = task.parse_output(runaway)
        assert parsed.text == ex.rationale
        assert parsed.source == "teacher"
        assert parsed.answer == task.extract_answer(ex.answer)
        gold = re.sub(r"^\([a-e]\) ", "", ex.answer) if name == "cqa" else ex.answer  # CQA labels are the choice text
        assert parsed.answer is not None and task.is_correct(parsed.answer, gold)


def test_parse_output_arith_completion():
    text = " Tom has 3 apples. He buys 4 more: 3 + 4 = 7. He gives 2 away: 7 - 2 = 5. So the answer is 5."
    parsed = get_task("arith").parse_output(text)
    assert parsed.text == "Tom has 3 apples. He buys 4 more: 3 + 4 = 7. He gives 2 away: 7 - 2 = 5."
    assert parsed.answer == "5"
    assert get_task("arith").parse_output(" 3 + 4 = 7. So the answer is 3 + 4 = 7.").answer == "7"
    assert get_task("arith").parse_output(" So the answer is 12 apples.").answer == "12"


def test_parse_output_cuts_runaway_and_takes_the_last_marker():
    arith = get_task("arith")
    text = (
        " I thought the answer is 3, but 3 + 1 = 4. So the answer is 4.\n\nQ: Ann has 9 pens.\nA: So the answer is 9."
    )
    parsed = arith.parse_output(text)
    assert parsed.answer == "4" and parsed.text == "I thought the answer is 3, but 3 + 1 = 4."
    assert arith.parse_output("Two and two. The answer is 4.").answer == "4"  # "The answer is" is accepted
    assert (
        arith.parse_output("The movie was filmed in 1971, so the answer is 8.").text == "The movie was filmed in 1971"
    )
    no_answer = arith.parse_output("  Tom has 3 apples and keeps thinking  \nQ: next")
    assert no_answer.answer is None and no_answer.text == "Tom has 3 apples and keeps thinking"
    assert arith.parse_output("FAQ: 2 + 2 = 4. So the answer is 4.").text == "FAQ: 2 + 2 = 4."
    assert arith.parse_output("So the answer is .").answer is None


def test_parse_output_cqa_choices():
    cqa = get_task("cqa")
    assert cqa.parse_output("Beavers use wood. So the answer is (c) wooded area.").answer == "wooded area"
    assert cqa.parse_output("Beavers use wood. So the answer is (c).", question=CQA_INPUT).answer == "wooded area"
    assert cqa.parse_output("Beavers use wood. So the answer is (c).").answer is None  # no choices to map it to
    assert cqa.parse_output("Beavers use wood. So the answer is Wooded Area.").answer == "wooded area"


def test_parse_output_svamp_answers():
    svamp = get_task("svamp")
    assert svamp.parse_output("10 * 45 is 450. The answer is (10 * 45).").answer == "( 10 * 45 )"
    assert svamp.parse_output("10 * 45 is 450. So the answer is 450.").answer == "450"
    assert svamp.parse_output("So the answer is $1,250 dollars.").answer == "1250"
    assert svamp.parse_output("So the answer is ((491 - 21").answer is None  # unbalanced: no equation
    assert svamp.parse_output("So the answer is x = 10 - 4.").answer == "10 - 4"


def test_parse_dss_rules():
    cqa = get_task("cqa")
    assert cqa.parse_dss(
        "Of the above choices, only wooded areas fit. So the answer is (c) wooded area.\n\nQ: Next?\nAnswer Choices:\n"
        "(a) x\nA: So the answer is (a) x."
    ) == ("Of the above choices, only wooded areas fit.", "wooded area")
    assert cqa.parse_dss("Only these hold shirts. So the answer is one of these four.") is None
    svamp = get_task("svamp")
    assert svamp.parse_dss("So 10 * 45 is 450. The answer is (10 * 45).\n\nQ: There are 15 trees.") == (
        "So 10 * 45 is 450.",
        "(10 * 45)",
    )
    assert svamp.parse_dss("So 11 / 3 = 3.33333") is None
    assert svamp.parse_dss("Adam has 9. The answer is ((491 - 21") is None
    esnli = get_task("esnli")
    assert esnli.parse_dss(
        "The packages are not from lunch.\nAnswer: neutral\n\nPremise: Two women.\nHypothesis: x"
    ) == (
        "The packages are not from lunch.",
        "neutral",
    )
    assert esnli.parse_dss("A toddler is a child. A child is a person.") is None
    anli = get_task("anli1")
    assert anli.parse_dss("The store is in London. So the answer is contradiction.\n\nPremise: The season.\nHyp") == (
        "The store is in London.",
        "contradiction",
    )
    assert anli.parse_dss("Stoops was born in 1960, so the answer is contradiction.\n\nPremise: x") is None  # DSS: case
    assert get_task("arith").parse_dss(" 3 + 4 = 7. So the answer is 7.") == ("3 + 4 = 7.", "7")


@pytest.mark.parametrize("task", ["arith", "svamp"])
def test_an_absurd_number_is_an_unparsed_answer_not_a_crash(task):
    """A 400-digit number overflows a float: the sample is unparsed (issue 16), and grading it is wrong."""
    big = "9" * 400
    t = get_task(task)
    assert t.parse_output(f"3 + 4 = 7. So the answer is {big}.").answer is None
    assert not t.is_correct(big, "7")
    assert t.answer_from_rationale(f"3 + 4 = {big}.") is None
