"""QCRD's training step against DSS's on the same batch: loss, backward, in this process.

    python -m benchmarks.qcrd_step [--batch-size 16] [--positives 1] [--negatives 2] [--student builtin:arith-student]

The baseline is a DSS step (label + one rationale). QCRD's step scores every positive and negative of each
question; with ``minmax`` it picks the chosen two under no_grad and backpropagates through them alone
(``choose_first``, the default), leaving out a chosen negative already past the margin; it is timed at the
default delta and with every negative live (a huge delta). The reference backpropagates through every
rationale. Prints questions/s and the ratio to DSS (issue 15's target: QCRD at most 2x a DSS step). The
default counts are the default run's (1.1 distinct positives and 2.3 negatives per question on average).
"""

from __future__ import annotations

import argparse
import random

from benchmarks.common import machine, timed
from qcrd_ray.config import Config
from qcrd_ray.methods import student_loss
from qcrd_ray.models import build_student, build_tokenizer
from qcrd_ray.records import TrainItem
from qcrd_ray.toy import generate_split, slipped_rationale


def qcrd_items(n: int, positives: int, negatives: int, seed: int = 0) -> list[TrainItem]:
    """Toy questions with their gold rationale (and copies of it, one space longer each) as positives, and
    slipped negatives."""
    rng = random.Random(seed)
    items = []
    for ex in generate_split("train", n, seed=seed):
        gold = ex.rationales[0].text
        wrong = [slipped_rationale(gold, rng)[0] for _ in range(negatives)]
        items.append(
            TrainItem(
                ex.id,
                ex.input,
                ex.label,
                tuple(gold + " " * k for k in range(positives)),
                tuple(0.9 for _ in range(positives)),
                tuple(wrong),
                tuple(0.2 for _ in wrong),
            )
        )
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--positives", type=int, default=1)
    parser.add_argument("--negatives", type=int, default=2)
    parser.add_argument("--student", default="builtin:arith-student")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cfg = Config().replace({"student.model": args.student})
    tokenizer = build_tokenizer(cfg.student, None)
    model = build_student(cfg.student, tokenizer)
    model.train()
    batch = qcrd_items(args.batch_size, args.positives, args.negatives)

    def step(method: str, choose_first: bool = True, delta: float = cfg.loss.delta):
        step_cfg = cfg.replace({"loss.delta": delta})

        def run():
            model.zero_grad(set_to_none=True)
            loss, _ = student_loss(model, tokenizer, batch, method, step_cfg, choose_first=choose_first)
            loss.backward()

        return timed(run, repeats=args.repeats)

    dss = step("dss")
    print(
        f"{machine()}; {args.batch_size} questions, {args.positives} positives + {args.negatives} negatives each, {args.student}"
    )
    print(f"  DSS step                             {args.batch_size / dss:8.1f} questions/s  (1.00x the time)")
    rows = (
        # The untrained student finds the slipped negatives unlikely (l > delta): their terms are silent.
        (f"QCRD, chosen, delta {cfg.loss.delta:g}", True, cfg.loss.delta),
        ("QCRD, chosen, every negative live", True, 1e9),  # a trained student's late iterations come near this
        ("QCRD, every rationale", False, cfg.loss.delta),
    )
    for name, choose_first, delta in rows:
        seconds = step("qcrd", choose_first, delta)
        print(f"  {name:<36} {args.batch_size / seconds:8.1f} questions/s  ({seconds / dss:.2f}x the time)")


if __name__ == "__main__":
    main()
