"""Gold data through HF ``datasets`` (``data.source: hf``): a hub dataset, or a local copy of one.

``data.path`` names the dataset: a hub name (``esnli``, ``facebook/anli``, ``cos_e`` with ``data.hf_config:
v1.11``, ``ChilleD/SVAMP``), a folder written by ``save_to_disk``, or a folder of ``{split}.json`` /
``{split}.jsonl`` files. ``data.train_split`` / ``data.eval_split`` are the dataset's own split names
(anli round 1: ``train_r1``, ``test_r1``). The rows keep the hub's field names, which the DSS release also
uses, except SVAMP's: its ``Body``, ``Question`` and ``Equation`` become DSS's ``input`` and ``label``. The
teacher samples the rationales (no DSS release needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from qcrd_ray.config import DataConfig
from qcrd_ray.errors import DataError
from qcrd_ray.records import Example
from qcrd_ray.tasks import get_task


def _svamp_row(row: dict[str, Any]) -> dict[str, Any]:
    """The hub's SVAMP row in DSS's form: ``input`` is the body, a newline and the question."""
    if "input" in row:
        return row
    return {"id": row.get("ID"), "input": f"{str(row['Body']).strip()}\n{row['Question']}", "label": row["Equation"]}


ROW_FORMS = {"svamp": _svamp_row}


def load_split(cfg: DataConfig, split: str):
    """The ``datasets.Dataset`` of ``split`` that ``cfg.path`` names (local folder first, then the hub)."""
    path = Path(cfg.path)
    try:
        if (path / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(path))[split]
        if path.is_dir():
            files = sorted(str(p) for p in path.glob(f"{split}.json*"))
            if not files:
                raise DataError(f"data.path: {path} holds no {split}.json or {split}.jsonl")
            return datasets.load_dataset("json", data_files={split: files}, split=split)
        return datasets.load_dataset(cfg.path, cfg.hf_config, split=split)
    except KeyError:
        raise DataError(f"data.path: {path} has no split {split!r}") from None
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        raise DataError(f"data.path: {cfg.path} (split {split!r}): {err}") from None


def load_hf(cfg: DataConfig, split: str) -> list[Example]:
    """The gold examples of ``split`` (no rationales: the teacher samples them); DataError naming the row."""
    rules = get_task(cfg.task)
    form = ROW_FORMS.get(cfg.task, lambda row: row)
    examples = []
    for i, row in enumerate(load_split(cfg, split)):
        where = f"{cfg.path} ({split}) row {i}"
        try:
            row = form(dict(row))
            text, label = rules.format_input(row), rules.gold_label(row)
        except KeyError as err:
            raise DataError(f"{where}: missing field {err.args[0]!r} for task {cfg.task}") from None
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: {err}") from None
        if len(text) > cfg.max_record_chars:
            raise DataError(f"{where}: an input of {len(text):,} characters, over data.max_record_chars")
        ident = row.get("id") or row.get("uid") or row.get("pairID") or f"{cfg.task}-{split}-{i}"
        examples.append(Example(id=str(ident), input=text, label=label))
    return examples
