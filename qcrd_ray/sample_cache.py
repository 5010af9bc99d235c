"""A disk cache of teacher samples, so a rerun or a resume never pays for a sample twice.

The teacher is frozen, so its samples for a question depend only on the teacher, the prompt and the sampling
settings. One JSONL file per such key lives under ``teacher.cache_dir``; each line is one question::

    {"id": "train-17", "prompt_sha": "3f2a...", "completions": ["...", "...", ...]}

Lines are appended per completed batch and flushed + fsynced, so a crash loses at most the batch in flight.
A crash mid-write can leave a torn last line: reading ignores it, and the next writer cuts it off before
appending. A damaged line anywhere else (an edit, a disk fault) is skipped with a warning naming its file and
line, so its question is sampled again: a bad line never makes every rerun fail.
The cache stores raw completions, not parsed answers: changing the answer parser never invalidates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_template_sha(prompt: Callable[[str], str]) -> str:
    """A hash of a task's prompt template: the prompt it builds around a placeholder question.

    Any change to the wording around the question changes the hash, hence the cache file.
    """
    return sha256_text(prompt("\x00{question}\x00"))[:16]


@dataclass(frozen=True)
class CacheKey:
    """What decides a teacher's samples. ``top_p`` and ``max_new_tokens`` are part of it too: both change
    the samples, so sharing a file across them would hand out samples drawn under other settings. So does
    ``backend``: vLLM, transformers (row-seeded) and an endpoint draw different samples from the same seed."""

    model: str
    template_sha: str
    num_samples: int
    temperature: float
    seed: int
    top_p: float = 1.0
    max_new_tokens: int = 128
    backend: str = "transformers"

    @classmethod
    def for_teacher(cls, teacher_cfg, template_sha: str) -> CacheKey:
        """The key of a ``TeacherConfig`` with a task's prompt template hash."""
        return cls(
            model=teacher_cfg.model,
            template_sha=template_sha,
            num_samples=teacher_cfg.num_samples,
            temperature=float(teacher_cfg.temperature),
            seed=teacher_cfg.seed,
            top_p=float(teacher_cfg.top_p),
            max_new_tokens=teacher_cfg.max_new_tokens,
            backend=teacher_cfg.backend,
        )

    def digest(self) -> str:
        return sha256_text(json.dumps(asdict(self), sort_keys=True))[:12]

    def file_name(self) -> str:
        """Readable and unique: ``<model>-K5-T0.7-s0-<digest>.jsonl``."""
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model).strip("_")[-60:] or "model"
        return f"{model}-K{self.num_samples}-T{self.temperature:g}-s{self.seed}-{self.digest()}.jsonl"


@dataclass(frozen=True)
class CachedSample:
    """One question's K raw teacher completions, and the hash of the exact prompt they answer."""

    id: str
    prompt_sha: str
    completions: tuple[str, ...]


class SampleCache:
    """The cache file of one ``CacheKey`` under ``cache_dir``; written by one process (the driver) at a time."""

    def __init__(self, cache_dir: str | Path, key: CacheKey):
        self.key = key
        self.dir = Path(cache_dir)
        self.path = self.dir / key.file_name()
        self._handle = None

    # -- reading ------------------------------------------------------------------------------------------

    def read(self) -> dict[str, CachedSample]:
        """Every complete record by question id (a later record for an id replaces an earlier one)."""
        if not self.path.is_file():
            return {}
        records: dict[str, CachedSample] = {}
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        # Without a final newline the last piece is a line torn by a crash mid-write: not a record.
        complete = lines[:-1]
        damaged = []
        for number, raw in enumerate(complete, start=1):
            if not raw.strip():
                continue
            record = self._parse(raw)
            if record is None:
                damaged.append(number)
            else:
                records[record.id] = record
        if damaged:
            shown = ", ".join(map(str, damaged[:5])) + (" ..." if len(damaged) > 5 else "")
            print(
                f"[qcrd] warning: {self.path}: {len(damaged)} damaged record(s) ignored (line {shown}); "
                "their questions are sampled again",
                file=sys.stderr,
                flush=True,
            )
        return records

    @staticmethod
    def _parse(raw: bytes) -> CachedSample | None:
        """One line as a record, or None when it is not one."""
        try:
            row = json.loads(raw)
            completions = row["completions"]
            if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
                return None
            return CachedSample(id=str(row["id"]), prompt_sha=str(row["prompt_sha"]), completions=tuple(completions))
        except (ValueError, KeyError, TypeError):
            return None

    def lookup(self, prompts: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
        """The cached completions of the questions in ``prompts`` (id -> prompt) that are done: a record
        exists for the id, for this very prompt (same hash), with K completions."""
        records = self.read()
        done = {}
        for qid, prompt in prompts.items():
            rec = records.get(qid)
            if rec and rec.prompt_sha == sha256_text(prompt) and len(rec.completions) == self.key.num_samples:
                done[qid] = rec.completions
        return done

    def done_ids(self, prompts: Mapping[str, str]) -> set[str]:
        """Ids of the questions in ``prompts`` whose samples are already cached."""
        return set(self.lookup(prompts))

    # -- writing ------------------------------------------------------------------------------------------

    def append(self, batch: Iterable[tuple[str, str, Sequence[str]]]) -> int:
        """Append one completed batch of ``(id, prompt, completions)``, flushed and fsynced; returns the
        number of records written."""
        lines = []
        for qid, prompt, completions in batch:
            if len(completions) != self.key.num_samples:
                raise ValueError(
                    f"sample_cache.py: question {qid!r} has {len(completions)} completions, "
                    f"the cache key says K={self.key.num_samples}"
                )
            row = {"id": qid, "prompt_sha": sha256_text(prompt), "completions": list(completions)}
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        if not lines:
            return 0
        handle = self._open()
        # One write per batch: a crash tears at most the last line of this batch.
        handle.write("".join(lines).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
        return len(lines)

    def _open(self):
        if self._handle is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._write_key_file()
            handle = open(self.path, "a+b")  # noqa: SIM115 - kept open across batches, closed by close()
            self._cut_torn_tail(handle)
            self._handle = handle
        return self._handle

    @staticmethod
    def _cut_torn_tail(handle) -> None:
        """Drop a torn last line, else the next record would be glued onto it and both would be lost."""
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(0)
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)
        handle.flush()
        os.fsync(handle.fileno())

    def _write_key_file(self) -> None:
        """A readable sidecar saying what the samples in the file were drawn with."""
        key_path = self.path.with_suffix(".key.json")
        if not key_path.is_file():
            tmp = key_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self.key), indent=2) + "\n")
            os.replace(tmp, key_path)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> SampleCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
