"""Which toy questions does a trained student get wrong on the ``predict:`` path, and how?

    python -m studies.label_errors runs/qcrd/seed_0/dss/students/iter_0005 [more snapshot dirs] [--show 25]

Evaluates each snapshot on the toy test split (as the run does) and prints its accuracy and its first wrong
equations beside the gold ones. Results are in studies/README.md.
"""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("snapshots", nargs="+", help="student snapshot directories (a run's students/iter_NNNN)")
    parser.add_argument("--test", type=int, default=200, help="toy test questions (the default run's 200)")
    parser.add_argument("--show", type=int, default=25, help="wrong answers to print per snapshot")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qcrd_ray.config import EvalConfig
    from qcrd_ray.evaluation import evaluate_student
    from qcrd_ray.models import load_student
    from qcrd_ray.tasks import get_task
    from qcrd_ray.toy import generate_split

    task, test = get_task("arith"), generate_split("test", args.test, seed=0)
    for path in args.snapshots:
        model, tokenizer = load_student(path)
        model.eval()
        result = evaluate_student(model, tokenizer, test, "arith", EvalConfig(), explains=False, max_input_length=128)
        wrong = [(ex, p) for ex, p in zip(test, result["predictions"], strict=True) if not task.is_correct(p, ex.label)]
        print(f"{path}: predict {100 * result['accuracy']:.1f}%, {len(wrong)} wrong")
        for ex, prediction in wrong[: args.show]:
            print(f"  {prediction!r:34} gold {ex.label!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
