"""What are QCRD's student negatives? Samples from a run's snapshots, as the run draws them, against the gold.

    python -m studies.negative_quality runs/qcrd/seed_0/qcrd/snapshots/iter_0003 [more snapshot dirs]

For each snapshot: one ``explain:`` sample per toy training question at ``negatives.temperature`` (the
default's 1.5, 128 questions a batch), then the share of samples whose answer is right (a "negative" that
is in fact a positive), the share identical to the gold rationale, and how much of the gold rationale a
sample repeats before it first departs from it (the shared prefix, in characters): a sequence-level push
on a negative pushes that prefix too. Results are in studies/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics

from qcrd_ray.config import NegativesConfig
from qcrd_ray.tasks import get_task
from qcrd_ray.toy import generate_split, gold_rationale


def shared_prefix(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` have in common."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("snapshots", nargs="+")
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from actors.student_sampler import StudentSampler

    task, train = get_task("arith"), generate_split("train", args.train, seed=0)
    sampler = StudentSampler()
    for snapshot in args.snapshots:
        samples = sampler.sample(snapshot, [(ex.id, ex.input) for ex in train], NegativesConfig(), args.seed, 128)
        right = identical = 0
        prefix_share = []
        for ex in train:
            text, gold = samples[ex.id][0], gold_rationale(ex)
            answer = task.answer_from_rationale(text)
            right += answer is not None and task.is_correct(answer, gold.answer)
            identical += text.strip() == gold.text.strip()
            prefix_share.append(shared_prefix(text, gold.text) / len(gold.text))
        n = len(train)
        print(
            f"{snapshot}: right answer {100 * right / n:.1f}%, identical to the gold {100 * identical / n:.1f}%, "
            f"shared prefix {100 * statistics.mean(prefix_share):.0f}% of the gold (median "
            f"{100 * statistics.median(prefix_share):.0f}%); e.g. {samples[train[0].id][0]!r}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
