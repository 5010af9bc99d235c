"""Decoding from student snapshots: self-adversarial negatives (docs/METHOD.md section 3) and evaluation.

A seed has a pool of ``sampler.num_replicas`` of these actors (``{run}/seed_{s}/student_sampler``, then
``..._1``, ``..._2``, ...). At iteration t the driver asks them for rationales from the snapshot of iteration
t - j, sampled at a high temperature (1.5 by default), for ``explain: <input>``, a chunk of questions per call
(``qcrd_ray.sharding``); after training, they evaluate the new snapshot, a chunk of examples per call. The
long-lived processes do both for every method of a seed, so torch and transformers are imported once rather
than once per evaluation. The same snapshot serves several iterations while the ring turns slowly, so loaded
snapshots are cached by path, and a cached entry is dropped when the files on disk change (a ring slot
rewritten in place).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

from qcrd_ray.config import EvalConfig, NegativesConfig


def snapshot_fingerprint(snapshot_dir: str | os.PathLike) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """(resolved path, (name, size, mtime_ns) of each file): changes whenever the snapshot is rewritten."""
    path = Path(snapshot_dir).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: student snapshot directory not found")
    files = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()))
    return str(path), files


class StudentSampler:
    """Loads student snapshots (a small LRU cache) and samples ``explain:`` rationales from them."""

    def __init__(self, use_gpu: bool = False, cache_size: int = 2, dtype: str = "auto"):
        import torch

        from qcrd_ray.precision import compute_dtype

        if cache_size < 1:
            raise ValueError(f"StudentSamplerActor: cache_size must be >= 1, got {cache_size!r}")
        self.device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.dtype = compute_dtype(dtype, self.device)  # sampler.dtype: the snapshots are cast to it
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Any, Any, Any]] = OrderedDict()  # path -> (fingerprint, model, tok)
        self.loads = 0  # how many times a snapshot was read from disk (the cache's effect, for tests and logs)

    def warm_up(self) -> None:
        """Import what decoding needs (torch, transformers' generation and T5, the default student): ~20 s on
        2 busy cores, paid once by the process instead of by the first evaluation."""
        from transformers import T5ForConditionalGeneration  # noqa: F401

        from qcrd_ray import models  # noqa: F401

    def _load(self, snapshot_dir: str):
        from qcrd_ray.models import load_student

        path, files = snapshot_fingerprint(snapshot_dir)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == files:
            self._cache.move_to_end(path)
            return cached[1], cached[2]
        model, tokenizer = load_student(path)
        model.to(self.device, dtype=self.dtype).eval()
        self.loads += 1
        self._cache[path] = (files, model, tokenizer)
        self._cache.move_to_end(path)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return model, tokenizer

    def sample(
        self,
        snapshot_dir: str,
        questions: Sequence[tuple[str, str]],
        cfg: NegativesConfig,
        seed: int,
        max_input_length: int,
    ) -> dict[str, list[str]]:
        """``cfg.samples_per_question`` rationales per (id, input) question, sampled from the snapshot at
        ``cfg.temperature``: {id: [rationale, ...]}. Inputs are truncated to ``max_input_length`` tokens."""
        from qcrd_ray.models import generate, is_seq2seq
        from qcrd_ray.tasks import EXPLAIN

        if cfg.samples_per_question < 1:
            raise ValueError(
                f"StudentSampler.sample: samples_per_question must be >= 1, got {cfg.samples_per_question!r}"
            )
        if cfg.temperature <= 0:
            raise ValueError(f"StudentSampler.sample: temperature must be > 0, got {cfg.temperature!r}")
        ids = [qid for qid, _ in questions]
        if len(set(ids)) != len(ids):
            raise ValueError("StudentSampler.sample: question ids must be unique")
        if not questions:
            return {}
        model, tokenizer = self._load(snapshot_dir)
        prompts = [EXPLAIN + text for _, text in questions]
        if not is_seq2seq(model):
            from qcrd_ray.scoring import causal_prompt

            prompts = [causal_prompt(p) for p in prompts]
        outputs = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=cfg.max_new_tokens,
            do_sample=True,
            temperature=cfg.temperature,
            top_p=1.0,
            num_return_sequences=cfg.samples_per_question,
            batch_size=cfg.batch_size,
            seed=seed,
            max_input_length=max_input_length,
        )
        return {qid: list(samples) for qid, samples in zip(ids, outputs, strict=True)}

    def evaluate(
        self,
        snapshot_dir: str,
        examples: Sequence,
        task_name: str,
        cfg: EvalConfig,
        *,
        explains: bool,
        max_input_length: int,
    ) -> dict:
        """The snapshot's accuracy on ``examples``, both ways when it ``explains`` (``evaluate_student``)."""
        from qcrd_ray.evaluation import evaluate_student

        model, tokenizer = self._load(snapshot_dir)
        return evaluate_student(
            model, tokenizer, list(examples), task_name, cfg, explains=explains, max_input_length=max_input_length
        )

    def decode_evaluation(
        self, snapshot_dir: str, examples: Sequence, cfg: EvalConfig, max_input_length: int, explained: int
    ) -> dict[str, list[str]]:
        """One chunk of a pooled evaluation: the snapshot's greedy labels for ``examples`` and the rationales of
        the first ``explained`` (``qcrd_ray.evaluation.decode_evaluation``); the driver merges and scores them."""
        from qcrd_ray.evaluation import decode_evaluation

        model, tokenizer = self._load(snapshot_dir)
        return decode_evaluation(
            model, tokenizer, list(examples), cfg, max_input_length=max_input_length, explained=explained
        )

    def num_loads(self) -> int:
        """How many snapshots were read from disk so far (the rest came from the cache)."""
        return self.loads


StudentSamplerActor = ray.remote(num_cpus=1)(StudentSampler)
StudentSamplerActor.__doc__ = (
    "Ray actor around ``StudentSampler``; the driver names replica i f'{run}/seed_{s}/student_sampler' (i = 0) "
    "or f'{run}/seed_{s}/student_sampler_{i}'."
)
