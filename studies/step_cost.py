"""What a DSS step of the default student costs, by batch size, and what batching by length saves.

    python -m studies.step_cost [--steps 12]

A plain torch loop (AdamW, the DSS loss, the pretrained student) on the default's 1,000 toy questions with
their gold rationale: milliseconds per step at batch 8, 16 and 32, in random batches and in batches grouped by
length (``train.group_by_length``, ``student_iteration.batch_indices``). Also prints the share of padding in
the rationales of 600 batches of 16 either way. Set OMP_NUM_THREADS to compare thread counts.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.qcrd_step import qcrd_items
from qcrd_ray.config import Config
from qcrd_ray.methods import encoded_length, student_loss
from qcrd_ray.models import build_student, build_tokenizer
from qcrd_ray.student_iteration import batch_indices


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    """The share of padded positions when every batch is padded to its longest item."""
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args(argv)
    cfg = Config()
    tokenizer = build_tokenizer(cfg.student, None)
    model = build_student(cfg.student, tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    items = qcrd_items(1000, positives=1, negatives=0)
    lengths = [encoded_length(it, "dss") for it in items]
    tokens = [len(tokenizer(it.positives[0]).input_ids) for it in items]
    shares = [
        padding_share(tokens, batch_indices(1000, 16, 600, torch.Generator().manual_seed(0), by))
        for by in (None, lengths)
    ]
    print(f"padding in 600 batches of 16 rationales: {shares[0]:.1%} random, {shares[1]:.1%} grouped by length")

    def ms_per_step(batches: list[list[int]]) -> float:
        started = time.perf_counter()
        for indices in batches:
            optimizer.zero_grad(set_to_none=True)
            loss, _ = student_loss(model, tokenizer, [items[i] for i in indices], "dss", cfg)
            loss.backward()
            optimizer.step()
        return 1000 * (time.perf_counter() - started) / len(batches)

    ms_per_step(batch_indices(len(items), 16, args.steps, torch.Generator().manual_seed(0)))  # warm-up
    print(f"DSS step, {torch.get_num_threads()} threads")
    for batch_size in (8, 16, 32):
        random_ms = ms_per_step(batch_indices(len(items), batch_size, args.steps, torch.Generator().manual_seed(1)))
        grouped = batch_indices(len(items), batch_size, args.steps, torch.Generator().manual_seed(1), lengths)
        grouped_ms = ms_per_step(grouped)
        print(
            f"  batch {batch_size:>2}: {random_ms:5.0f} ms random ({1000 * batch_size / random_ms:5.1f} questions/s), "
            f"{grouped_ms:5.0f} ms grouped by length ({random_ms / grouped_ms:.2f}x)"
        )


if __name__ == "__main__":
    main()
