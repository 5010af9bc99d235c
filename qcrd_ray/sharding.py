"""How the work of a pool of identical actors is cut up, so that its result never depends on the pool's size.

Negatives, judge scores and evaluation are split into fixed chunks in the driver (``negatives.batch_size``
questions, ``judge.score_batch_size`` pairs, ``eval.batch_size`` examples), chunk c goes to replica c % N
(``actors.pool.map_chunks``) and the results come back in chunk order. The chunks and each chunk's seed are
functions of the data and the config alone, never of N: one replica and eight give the same samples, scores
and accuracies, in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] cutting ``range(n)`` into consecutive chunks of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValueError(f"chunk_bounds: size must be >= 1, got {size!r}")
    if n < 0:
        raise ValueError(f"chunk_bounds: n must be >= 0, got {n!r}")
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive chunks of ``size``, in order (none for no items)."""
    return [list(items[start:stop]) for start, stop in chunk_bounds(len(items), size)]


def chunk_seed(base: int, index: int) -> int:
    """The sampling seed of chunk ``index`` of a job seeded ``base``: a 63-bit hash of both, the same in every
    process (unlike ``hash``), distinct for distinct (base, index) pairs in practice."""
    digest = hashlib.sha256(f"qcrd-chunk:{int(base)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def merge_samples(parts: Sequence[Mapping[str, list[str]]]) -> dict[str, list[str]]:
    """Per-chunk {question id: samples} merged in chunk order; a question in two chunks is a bug and raises."""
    merged: dict[str, list[str]] = {}
    for part in parts:
        for qid, samples in part.items():
            if qid in merged:
                raise ValueError(f"merge_samples: question {qid!r} came back from two chunks")
            merged[qid] = list(samples)
    return merged


def concat(parts: Sequence[Sequence[T]]) -> list[T]:
    """Per-chunk lists (judge scores) concatenated in chunk order."""
    return [x for part in parts for x in part]
