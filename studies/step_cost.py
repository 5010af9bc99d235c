"""What a DSS step of the default student costs, by batch size, and what batching by length would save.

    python -m studies.step_cost [--steps 12]

A plain torch loop (AdamW, the DSS loss, the pretrained student) on toy questions with their gold rationale:
milliseconds per step at batch 8, 16 and 32, once in a random order and once with the same questions sorted by
rationale length (the best case of a length-grouped sampler: least padding). Also prints the share of padding
in random batches of 16 of these questions' rationales. Set OMP_NUM_THREADS to compare thread counts.
"""

from __future__ import annotations

import argparse
import random
import time

from benchmarks.qcrd_step import qcrd_items
from qcrd_ray.config import Config
from qcrd_ray.models import build_student, build_tokenizer
from qcrd_ray.student_loss import student_loss


def padding_share(lengths: list[int], batch_size: int, rng: random.Random, rounds: int = 50) -> float:
    """The share of padded positions when ``lengths`` are cut into random batches of ``batch_size``."""
    padded = real = 0
    order = list(range(len(lengths)))
    for _ in range(rounds):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = [lengths[i] for i in order[start : start + batch_size]]
            padded, real = padded + max(batch) * len(batch), real + sum(batch)
    return 1 - real / padded


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
    items = qcrd_items(32 * args.steps, positives=1, negatives=0)
    lengths = [len(tokenizer(it.positives[0]).input_ids) for it in items]
    print(f"padding in random batches of 16: rationales {padding_share(lengths, 16, random.Random(0)):.1%}")

    def ms_per_step(batch_size: int, order: list[int]) -> float:
        started = time.perf_counter()
        for s in range(args.steps):
            batch = [items[i] for i in order[s * batch_size : (s + 1) * batch_size]]
            optimizer.zero_grad(set_to_none=True)
            loss, _ = student_loss(model, tokenizer, batch, "dss", cfg)
            loss.backward()
            optimizer.step()
        return 1000 * (time.perf_counter() - started) / args.steps

    shuffled = list(range(len(items)))
    random.Random(0).shuffle(shuffled)
    ms_per_step(16, shuffled)  # warm-up
    print(f"DSS step, {torch.get_num_threads()} threads")
    for batch_size in (8, 16, 32):
        first = shuffled[: batch_size * args.steps]
        random_ms = ms_per_step(batch_size, first)
        sorted_ms = ms_per_step(batch_size, sorted(first, key=lambda i: lengths[i]))
        print(f"  batch {batch_size:>2}: {random_ms:5.0f} ms random ({1000 * batch_size / random_ms:5.1f} questions/s), "
              f"{sorted_ms:5.0f} ms sorted by length ({random_ms / sorted_ms:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
