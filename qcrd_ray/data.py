"""Data readers: the DSS release, the project's own JSONL format, HF ``datasets`` (``qcrd_ray.hf_data``), and the
toy task.

Every reader validates as it reads: a malformed line raises ``DataError`` naming the file, the line and the
field; a record whose teacher output cannot be parsed is kept (with no rationale) and counted in a
``ParseReport``, never dropped in silence.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qcrd_ray import stories, toy
from qcrd_ray.config import DataConfig
from qcrd_ray.errors import DataError
from qcrd_ray.hf_data import load_hf
from qcrd_ray.records import Example, Rationale
from qcrd_ray.tasks import get_task

log = logging.getLogger(__name__)

RATIONALE_SOURCES = ("teacher", "student", "gold")


@dataclass(frozen=True)
class ParseReport:
    """How many of a split's teacher outputs yielded a rationale and a label."""

    dataset: str
    split: str
    total: int  # teacher outputs read (0 when the split ships none)
    parsed: int
    unparsed_ids: tuple[str, ...]

    @property
    def rate(self) -> float:
        """Fraction parsed (0.0 when there was nothing to parse)."""
        return self.parsed / self.total if self.total else 0.0


MAX_RECORD_CHARS = 100_000  # data.max_record_chars: the longest line of the DSS release has 1,213


def read_json_lines(path: Path, max_chars: int = MAX_RECORD_CHARS) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file; a line that is not UTF-8, not JSON,
    not an object or longer than ``max_chars`` raises DataError naming it."""
    with path.open("rb") as handle:  # bytes: a decoding error then has a line number
        for number, raw in enumerate(handle, start=1):
            line = _decode_line(raw, path, number, max_chars)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def _decode_line(raw: bytes, path: Path, number: int, max_chars: int) -> str:
    if len(raw) > 4 * max_chars:  # UTF-8 is at most 4 bytes a character: skip decoding a huge line
        raise DataError(f"{path}:{number}: a record of {len(raw):,} bytes, over data.max_record_chars ({max_chars:,})")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}:{number}: not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})") from None
    if len(line) > max_chars:
        raise DataError(
            f"{path}:{number}: a record of {len(line):,} characters, over data.max_record_chars ({max_chars:,})"
        )
    return line


def _llm_chunks(root: Path, task: str, split: str) -> list[Path]:
    """The ``llm/{split}_CoT_{k}.json`` files in k order; a gap in k raises."""
    pattern = re.compile(rf"^{re.escape(split)}_CoT_(\d+)\.json$")
    found = {}
    llm_dir = root / task / "llm"
    if llm_dir.is_dir():
        for path in llm_dir.iterdir():
            match = pattern.match(path.name)
            if match:
                found[int(match.group(1))] = path
    if found and sorted(found) != list(range(len(found))):
        missing = sorted(set(range(max(found) + 1)) - set(found))
        raise DataError(f"{llm_dir}: chunk {split}_CoT_{missing[0]}.json is missing (found k = {sorted(found)})")
    return [found[k] for k in sorted(found)]


def _read_llm_outputs(paths: list[Path], max_chars: int) -> list[str]:
    outputs: list[str] = []
    for path in paths:
        raw = path.read_bytes()
        try:
            chunk = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not UTF-8 (byte {raw[err.start]:#04x})") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(chunk, list) or not all(isinstance(o, str) for o in chunk):
            raise DataError(f"{path}: expected a JSON list of strings (one teacher continuation per example)")
        for i, output in enumerate(chunk):
            if len(output) > max_chars:
                raise DataError(
                    f"{path}: output {i} has {len(output):,} characters, over data.max_record_chars ({max_chars:,})"
                )
        outputs.extend(chunk)
    return outputs


def load_dss(
    root: str | Path, task: str, split: str, max_record_chars: int = MAX_RECORD_CHARS
) -> tuple[list[Example], ParseReport]:
    """Read ``{root}/{task}/{task}_{split}.json`` and its PaLM rationales ``llm/{split}_CoT_{k}.json``."""
    root = Path(root)
    rules = get_task(task)
    gold_path = root / task / f"{task}_{split}.json"
    if not gold_path.is_file():
        shipped = sorted(p.name for p in (root / task).glob(f"{task}_*.json")) if (root / task).is_dir() else []
        raise DataError(f"{gold_path}: no such file (this DSS folder holds: {', '.join(shipped) or 'nothing'})")

    rows = []
    for number, row in read_json_lines(gold_path, max_record_chars):
        try:
            rows.append((row, rules.format_input(row), rules.gold_label(row)))
        except KeyError as err:
            raise DataError(f"{gold_path}:{number}: missing field {err.args[0]!r} for task {task}") from None
        except (TypeError, ValueError) as err:
            raise DataError(f"{gold_path}:{number}: {err}") from None

    chunks = _llm_chunks(root, task, split)
    outputs = _read_llm_outputs(chunks, max_record_chars)
    if chunks and len(outputs) != len(rows):
        raise DataError(
            f"{gold_path} has {len(rows)} records but {chunks[0]}"
            f"{f' .. {chunks[-1].name}' if len(chunks) > 1 else ''} hold {len(outputs)} teacher outputs"
        )

    examples, unparsed = [], []
    for i, (row, text, label) in enumerate(rows):
        example_id = str(row.get("id", row.get("uid", f"{task}-{split}-{i}")))
        rationales: tuple[Rationale, ...] = ()
        if chunks:
            parsed = rules.parse_dss(outputs[i])
            if parsed is None:
                unparsed.append(example_id)
            else:
                rationales = (Rationale(text=parsed[0], answer=rules.normalize(parsed[1]), source="teacher"),)
        examples.append(Example(id=example_id, input=text, label=label, rationales=rationales))
    total = len(outputs)
    report = ParseReport(task, split, total, total - len(unparsed), tuple(unparsed))
    return examples, report


def split_validation(
    examples: list[Example], fraction: float = 0.1, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Hold out ``fraction`` of ``examples``; the same split as DSS's ``train_test_split(test_size, seed)``.

    Returns (train, valid), both in the permuted order HF ``datasets`` produces; fraction 0 returns the input as is.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction: expected a float in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return list(examples), []
    permutation = np.random.default_rng(seed).permutation(len(examples))
    n_valid = math.ceil(fraction * len(examples))
    return [examples[i] for i in permutation[n_valid:]], [examples[i] for i in permutation[:n_valid]]


# ---------------------------------------------------------------------------------------------------------
# the project's own JSONL format: {"id", "input", "label", "rationales": [{"text", "answer", "source"}]}

_EXAMPLE_FIELDS = {"id": str, "input": str, "label": str, "rationales": list}


def _example_from_record(record: Any, where: str) -> Example:
    """Validate one record of the project's format; ``where`` names it in errors (``file:line``)."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - set(_EXAMPLE_FIELDS))
    if unknown:
        raise DataError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_EXAMPLE_FIELDS)})")
    for name, kind in _EXAMPLE_FIELDS.items():
        if name == "rationales" and name not in record:
            continue  # a gold-only file (no teacher output yet) is legitimate
        if name not in record:
            raise DataError(f"{where}: missing field {name!r}")
        if not isinstance(record[name], kind):
            raise DataError(f"{where}: field {name!r} must be a {kind.__name__}, got {record[name]!r}")
    rationales = []
    for j, item in enumerate(record.get("rationales", [])):
        field = f"rationales[{j}]"
        if not isinstance(item, dict) or set(item) != {"text", "answer", "source"}:
            raise DataError(f"{where}: field {field!r} must be an object with text, answer, source; got {item!r}")
        if not isinstance(item["text"], str):
            raise DataError(f"{where}: field '{field}.text' must be a str, got {item['text']!r}")
        if item["answer"] is not None and not isinstance(item["answer"], str):
            raise DataError(f"{where}: field '{field}.answer' must be a str or null, got {item['answer']!r}")
        if item["source"] not in RATIONALE_SOURCES:
            raise DataError(
                f"{where}: field '{field}.source' must be one of {RATIONALE_SOURCES}, got {item['source']!r}"
            )
        rationales.append(Rationale(text=item["text"], answer=item["answer"], source=item["source"]))
    return Example(id=record["id"], input=record["input"], label=record["label"], rationales=tuple(rationales))


def save_jsonl(path: str | Path, examples: list[Example]) -> None:
    """Write ``examples`` one JSON object per line (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")


def load_jsonl(path: str | Path, max_record_chars: int = MAX_RECORD_CHARS) -> list[Example]:
    """Read and validate a file written by ``save_jsonl`` (errors name ``file:line`` and the field)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = read_json_lines(path, max_record_chars)
    examples = [_example_from_record(row, f"{path}:{number}") for number, row in rows]
    seen: dict[str, int] = {}
    for i, example in enumerate(examples):
        if example.id in seen:
            raise DataError(f"{path}: id {example.id!r} appears twice (records {seen[example.id] + 1} and {i + 1})")
        seen[example.id] = i
    return examples


# ---------------------------------------------------------------------------------------------------------
# one entry point for the run: data.source decides the reader


def _subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """At most ``limit`` examples, drawn at random but kept in file order (DSS files are sorted, e.g. CQA by question)."""
    if limit is None or len(examples) <= limit:
        return examples
    keep = sorted(np.random.default_rng(seed).permutation(len(examples))[:limit])
    return [examples[i] for i in keep]


def _load_dss_split(cfg: DataConfig, split: str) -> list[Example]:
    root = Path(cfg.path)
    if not root.is_dir():
        raise DataError(f"data.path: {root} is not a directory (expected the DSS release, e.g. ../shared/data/dss)")
    has_valid = (root / cfg.task / f"{cfg.task}_valid.json").is_file()
    # CQA and SVAMP ship no validation split: DSS holds out a fraction of train and trains on the rest.
    held_out = not has_valid and cfg.validation_fraction > 0 and split in ("train", "valid")
    examples, report = load_dss(root, cfg.task, "train" if held_out else split, cfg.max_record_chars)
    log.info(
        "dss %s/%s: parsed %d of %d teacher outputs (%.1f%%)",
        cfg.task,
        report.split,
        report.parsed,
        report.total,
        100 * report.rate,
    )
    if held_out:
        train, valid = split_validation(examples, cfg.validation_fraction, seed=0)
        return train if split == "train" else valid
    return examples


def load_examples(cfg: DataConfig, split: str, seed: int = 0) -> list[Example]:
    """The examples of ``split`` from the source ``cfg`` names, capped at max_train/max_eval_examples.

    ``seed`` draws the toy task and the capped subsets; it is fixed per run so every method sees the same data.
    """
    if cfg.source == "dss":
        examples = _load_dss_split(cfg, split)
    elif cfg.source == "jsonl":
        if "{split}" not in cfg.path:
            raise DataError(f"data.path: {cfg.path!r} must contain {{split}} when data.source is jsonl")
        path = cfg.path.replace("{split}", split)
        examples = load_jsonl(path, cfg.max_record_chars)
        task = get_task(cfg.task)
        for i, example in enumerate(examples):
            try:
                task.check_label(example.label)
            except ValueError as err:
                raise DataError(f"{path}: record {i + 1} (id {example.id!r}): {err} for task {cfg.task}") from None
    elif cfg.source == "hf":
        examples = load_hf(cfg, split)
    elif cfg.source == "toy":
        size = cfg.toy_train_size if split == cfg.train_split else cfg.toy_eval_size
        try:
            examples = (stories if cfg.toy_task == "stories" else toy).generate_split(split, size, seed)
        except ValueError as err:  # an unknown split name
            raise DataError(f"data.source toy: {err}") from None
    else:
        raise DataError(f"data.source: unknown source {cfg.source!r} (expected toy, hf, dss or jsonl)")
    limit = cfg.max_train_examples if split == cfg.train_split else cfg.max_eval_examples
    return _subsample(examples, limit, seed)
