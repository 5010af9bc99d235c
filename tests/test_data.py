"""Data readers on the real DSS release (when shipped) and on small malformed files."""

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from qcrd_ray.config import DataConfig
from qcrd_ray.data import (
    DataError,
    ParseReport,
    load_dss,
    load_examples,
    load_jsonl,
    save_jsonl,
    split_validation,
)
from qcrd_ray.records import Example, Rationale
from qcrd_ray.tasks import NLI_LABELS, get_task

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DSS = DATA / "dss"


def _present_splits() -> list[tuple[str, str]]:
    """(task, split) for every gold file of the release that has its teacher outputs next to it."""
    if not DSS.is_dir():
        return []
    found = []
    for task in ("cqa", "svamp", "anli1", "esnli"):
        for gold in sorted((DSS / task).glob(f"{task}_*.json")):
            split = gold.stem[len(task) + 1 :]
            if (DSS / task / "llm" / f"{split}_CoT_0.json").is_file():
                found.append((task, split))
    return found


@cache
def _dss(task: str, split: str) -> tuple[tuple[Example, ...], ParseReport]:
    examples, report = load_dss(DSS, task, split)
    return tuple(examples), report


@pytest.mark.parametrize(("task", "split"), _present_splits())
def test_real_dss_parse_rate(task, split):
    examples, report = _dss(task, split)
    gold_rows = sum(1 for line in (DSS / task / f"{task}_{split}.json").open() if line.strip())
    print(f"\nparse rate {task}/{split}: {report.parsed}/{report.total} = {report.rate:.2%}")
    assert len(examples) == gold_rows == report.total  # unparsed records are kept, not dropped
    assert report.rate >= 0.95
    assert len(report.unparsed_ids) == report.total - report.parsed
    unparsed = set(report.unparsed_ids)
    assert len({ex.id for ex in examples}) == len(examples)
    for ex in examples:
        assert ex.input and ex.label
        if ex.id in unparsed:
            assert ex.rationales == ()
        else:
            (rationale,) = ex.rationales
            assert rationale.source == "teacher" and rationale.text and rationale.answer
            assert "Q:" not in rationale.text and "Premise:" not in rationale.text  # the runaway is cut
    if task in ("anli1", "esnli"):
        assert {ex.label for ex in examples} == set(NLI_LABELS)
        assert " </s> " in examples[0].input


def test_real_dss_rows_stay_aligned_with_their_teacher_outputs():
    """MANIFEST.md's known facts: PaLM's answer equals gold for 74.3% of cqa train and 73.0% of esnli test."""
    present = set(_present_splits())
    if not {("cqa", "train"), ("esnli", "test")} <= present:
        pytest.skip("the DSS release is not shipped under ../shared/data/dss")
    for task, split, expected in (("cqa", "train", 74.3), ("esnli", "test", 73.0)):
        examples, _ = _dss(task, split)
        # The facts were counted on the raw strings (case-sensitive), as the DSS metric compares them.
        outputs = []
        for k in range(len(list((DSS / task / "llm").glob(f"{split}_CoT_*.json")))):
            outputs += json.loads((DSS / task / "llm" / f"{split}_CoT_{k}.json").read_text())
        raw = [get_task(task).parse_dss(o) for o in outputs]
        agree = sum(1 for r, ex in zip(raw, examples, strict=True) if r and r[1] == ex.label)
        assert round(100 * agree / len(examples), 1) == expected


def test_split_validation_matches_hf_train_test_split():
    datasets = pytest.importorskip("datasets")
    for n in (800, 37):
        examples = [Example(id=str(i), input=f"q{i}", label="1") for i in range(n)]
        train, valid = split_validation(examples, fraction=0.1, seed=0)
        reference = datasets.Dataset.from_dict({"i": list(range(n))}).train_test_split(test_size=0.1, seed=0)
        assert [int(ex.id) for ex in train] == reference["train"]["i"]
        assert [int(ex.id) for ex in valid] == reference["test"]["i"]
    assert split_validation(examples, fraction=0.0) == (examples, [])
    with pytest.raises(ValueError, match="validation fraction"):
        split_validation(examples, fraction=1.0)


def test_load_examples_dss_holds_out_validation_for_svamp():
    if ("svamp", "train") not in _present_splits():
        pytest.skip("the DSS release is not shipped under ../shared/data/dss")
    cfg = DataConfig(source="dss", task="svamp", path=str(DSS))
    train, valid, test = (load_examples(cfg, split) for split in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (720, 80, 200)
    assert not {ex.id for ex in train} & {ex.id for ex in valid}
    assert len(load_examples(replace(cfg, validation_fraction=0.0), "train")) == 800
    capped = load_examples(replace(cfg, max_train_examples=50), "train")
    assert len(capped) == 50 and capped == load_examples(replace(cfg, max_train_examples=50), "train")
    order = {ex.id: i for i, ex in enumerate(train)}
    assert [order[ex.id] for ex in capped] == sorted(order[ex.id] for ex in capped)  # file order kept
    with pytest.raises(DataError, match=r"anli1_train\.json: no such file.*anli1_test\.json, anli1_valid\.json"):
        load_examples(replace(cfg, task="anli1"), "train")


# ---------------------------------------------------------------------------------------------------------
# malformed DSS-format files


def _write_dss(root: Path, gold_lines: list[str], chunks: list[list[str]] | None) -> Path:
    folder = root / "svamp"
    (folder / "llm").mkdir(parents=True)
    (folder / "svamp_train.json").write_text("\n".join(gold_lines) + "\n")
    for k, chunk in enumerate(chunks or []):
        (folder / "llm" / f"train_CoT_{k}.json").write_text(json.dumps(chunk))
    return folder


GOOD = [json.dumps({"input": f"Tom has {i} apples.\nHow many?", "label": f"( {i}.0 + 1.0 )"}) for i in range(3)]
OUTPUTS = ["He has 1 more. The answer is (0 + 1).", "No answer here at all.", "2 + 1 = 3. The answer is (2 + 1)."]


def test_unparsed_records_are_kept_and_counted(tmp_path):
    _write_dss(tmp_path, GOOD, [OUTPUTS[:2], OUTPUTS[2:]])
    examples, report = load_dss(tmp_path, "svamp", "train")
    assert [ex.id for ex in examples] == ["svamp-train-0", "svamp-train-1", "svamp-train-2"]
    assert (report.total, report.parsed, report.unparsed_ids) == (3, 2, ("svamp-train-1",))
    assert report.rate == pytest.approx(2 / 3)
    assert examples[1].rationales == ()
    assert examples[2].rationales == (Rationale(text="2 + 1 = 3.", answer="( 2 + 1 )", source="teacher"),)


def test_malformed_json_line_names_file_and_line(tmp_path):
    folder = _write_dss(tmp_path, [GOOD[0], '{"input": "broken", ', GOOD[2]], [OUTPUTS])
    with pytest.raises(DataError, match=rf"{folder / 'svamp_train.json'}:2: not valid JSON"):
        load_dss(tmp_path, "svamp", "train")


def test_missing_field_and_bad_label_name_the_line(tmp_path):
    _write_dss(tmp_path, [GOOD[0], json.dumps({"question": "q", "label": "1"}), GOOD[2]], [OUTPUTS])
    with pytest.raises(DataError, match=r"svamp_train\.json:2: missing field 'input'"):
        load_dss(tmp_path, "svamp", "train")
    _write_dss(tmp_path / "b", [GOOD[0], GOOD[1], json.dumps({"input": "q", "label": "( x + 1 )"})], [OUTPUTS])
    with pytest.raises(DataError, match=r"svamp_train\.json:3: field 'label'"):
        load_dss(tmp_path / "b", "svamp", "train")


def test_count_mismatch_names_both_files(tmp_path):
    _write_dss(tmp_path, GOOD, [OUTPUTS[:2]])
    with pytest.raises(DataError, match=r"svamp_train\.json has 3 records but .*train_CoT_0\.json hold 2"):
        load_dss(tmp_path, "svamp", "train")


def test_chunk_gap_and_bad_chunk(tmp_path):
    folder = _write_dss(tmp_path, GOOD, [OUTPUTS[:1], OUTPUTS[1:2]])
    (folder / "llm" / "train_CoT_1.json").rename(folder / "llm" / "train_CoT_2.json")
    with pytest.raises(DataError, match=r"train_CoT_1\.json is missing"):
        load_dss(tmp_path, "svamp", "train")
    folder = _write_dss(tmp_path / "b", GOOD, [])
    (folder / "llm" / "train_CoT_0.json").write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match=r"train_CoT_0\.json: expected a JSON list of strings"):
        load_dss(tmp_path / "b", "svamp", "train")


def test_gold_only_split_has_no_rationales(tmp_path):
    _write_dss(tmp_path, GOOD, None)
    examples, report = load_dss(tmp_path, "svamp", "train")
    assert len(examples) == 3 and all(ex.rationales == () for ex in examples)
    assert (report.total, report.parsed, report.rate) == (0, 0, 0.0)


# ---------------------------------------------------------------------------------------------------------
# the project's JSONL format and HF datasets

EXAMPLES = [
    Example(
        id="a",
        input="Tom has 3 apples.",
        label="3",
        rationales=(Rationale("Tom has 3.", "3", "teacher"), Rationale("He has 4?", None, "student")),
    ),
    Example(id="b", input="Ünïcode ✓", label="7", rationales=()),
]


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "deep" / "train.jsonl"
    save_jsonl(path, EXAMPLES)
    assert load_jsonl(path) == EXAMPLES


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r":2: not valid JSON"),
        ("[1, 2]", r":2: expected a JSON object, got list"),
        ('{"id": "c", "input": "q"}', r":2: missing field 'label'"),
        ('{"id": 3, "input": "q", "label": "1"}', r":2: field 'id' must be a str, got 3"),
        ('{"id": "c", "input": "q", "label": "1", "rationale": []}', r":2: unknown field 'rationale'"),
        (
            '{"id": "c", "input": "q", "label": "1", "rationales": [{"text": "t", "answer": "1", "source": "llm"}]}',
            r":2: field 'rationales\[0\]\.source' must be one of",
        ),
        (
            '{"id": "c", "input": "q", "label": "1", "rationales": [{"text": "t", "answer": 1, "source": "gold"}]}',
            r":2: field 'rationales\[0\]\.answer' must be a str or null",
        ),
        ('{"id": "a", "input": "q", "label": "1"}', r"id 'a' appears twice"),
    ],
)
def test_load_jsonl_rejects_malformed_lines(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(EXAMPLES[0].to_dict()) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message) as info:
        load_jsonl(path)
    assert str(path) in str(info.value)


def test_a_huge_record_or_a_non_utf8_line_fails_at_load_naming_file_and_line(tmp_path):
    """A 10 MB record once put the teacher into a kill-restart loop; a Latin-1 file had no line number."""
    path = tmp_path / "train.jsonl"
    huge = {"id": "big", "input": "Tom has 3 apples. " * 600_000, "label": "3"}
    path.write_text(json.dumps(EXAMPLES[0].to_dict()) + "\n" + json.dumps(huge) + "\n")
    with pytest.raises(DataError, match=rf"{path}:2: a record of 10,800,04\d bytes, over data.max_record_chars"):
        load_jsonl(path)
    with pytest.raises(DataError, match=rf"{path}:1: a record of \d+ characters, over data.max_record_chars \(50\)"):
        load_jsonl(path, max_record_chars=50)
    path.write_bytes(json.dumps(EXAMPLES[0].to_dict()).encode() + b'\n{"id": "c", "input": "caf\xe9", "label": "1"}\n')
    with pytest.raises(DataError, match=rf"{path}:2: not UTF-8 \(byte 0xe9 at column 26\)"):
        load_jsonl(path)
    folder = _write_dss(tmp_path / "dss", GOOD, [OUTPUTS])
    (folder / "llm" / "train_CoT_0.json").write_text(json.dumps(["x" * 200, *OUTPUTS[1:]]))
    with pytest.raises(DataError, match=r"train_CoT_0\.json: output 0 has 200 characters, over"):
        load_dss(tmp_path / "dss", "svamp", "train", max_record_chars=100)


def test_load_examples_jsonl(tmp_path):
    save_jsonl(tmp_path / "train.jsonl", EXAMPLES)
    cfg = DataConfig(source="jsonl", task="arith", path=str(tmp_path / "{split}.jsonl"))
    assert load_examples(cfg, "train") == EXAMPLES
    assert load_examples(replace(cfg, max_train_examples=1), "train") in ([EXAMPLES[0]], [EXAMPLES[1]])
    with pytest.raises(DataError, match=r"test\.jsonl: no such file"):
        load_examples(cfg, "test")
    with pytest.raises(DataError, match=r"must contain \{split\}"):
        load_examples(replace(cfg, path=str(tmp_path / "train.jsonl")), "train")
    with pytest.raises(DataError, match=r"record 1 \(id 'a'\): field 'label'.* for task anli1"):
        load_examples(replace(cfg, task="anli1"), "train")


def test_load_examples_toy():
    pytest.importorskip("qcrd_ray.toy")
    cfg = DataConfig(
        source="toy", task="arith", toy_task="piles", toy_train_size=12, toy_eval_size=5, max_eval_examples=3
    )
    train, test = load_examples(cfg, "train"), load_examples(cfg, "test")
    assert (len(train), len(test)) == (12, 3)
    assert train == load_examples(cfg, "train")  # deterministic
    arith = get_task("arith")
    assert all(arith.check_label(ex.label) == ex.label for ex in train + test)
    with pytest.raises(DataError, match="data.source toy"):
        load_examples(cfg, "no-such-split")
    stories = load_examples(replace(cfg, toy_task="stories"), "train")
    assert len(stories) == 12 and stories[0].id.startswith("stories-") and stories[0].input != train[0].input
    assert all(arith.is_correct(ex.label, ex.rationales[0].answer) for ex in stories)


# ---------------------------------------------------------------------------------------------------------
# data.source: hf, offline: a local save_to_disk folder and a folder of JSON files


def test_hf_source_reads_a_saved_dataset_and_json_files(tmp_path):
    import datasets

    svamp = {
        "ID": ["chal-1", "chal-2"],
        "Body": ["Tom has 3 apples. He buys 4 more", "Mia has 9 pens"],
        "Question": ["How many apples does he have?", "How many pens after giving 2?"],
        "Equation": ["( 3.0 + 4.0 )", "( 9.0 - 2.0 )"],
        "Answer": [7.0, 7.0],
    }
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(svamp)}).save_to_disk(str(tmp_path / "svamp"))
    cfg = DataConfig(source="hf", task="svamp", path=str(tmp_path / "svamp"))
    examples = load_examples(cfg, "train")
    assert [(ex.id, ex.label) for ex in examples] == [("chal-1", "( 3.0 + 4.0 )"), ("chal-2", "( 9.0 - 2.0 )")]
    assert examples[0].input == "Tom has 3 apples. He buys 4 more\nHow many apples does he have?"  # DSS's form
    assert examples[0].rationales == ()  # the teacher samples them
    with pytest.raises(DataError, match="has no split 'test'"):
        load_examples(cfg, "test")

    nli = tmp_path / "anli"
    nli.mkdir()
    rows = [{"uid": "u1", "premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": 2, "reason": ""}]
    (nli / "train_r1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (examples,) = load_examples(
        DataConfig(source="hf", task="anli1", path=str(nli), train_split="train_r1"), "train_r1"
    )
    assert (examples.id, examples.label) == ("u1", "contradiction") and "A man is awake." in examples.input
    (nli / "bad.jsonl").write_text(json.dumps({"uid": "u2", "premise": "p", "hypothesis": "h", "label": 7}) + "\n")
    with pytest.raises(DataError, match=r"\(bad\) row 0: field 'label'"):
        load_examples(DataConfig(source="hf", task="anli1", path=str(nli), train_split="bad"), "bad")
