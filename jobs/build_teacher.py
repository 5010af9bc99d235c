"""Build (or rebuild) a built-in teacher and print how often it is right.

    python -m jobs.build_teacher [--name stories|arith] [--cache-dir D] [--force] [--seed S] [--eval-size N] [--k K]

Runs whose ``teacher.model`` is ``builtin:stories`` or ``builtin:arith`` use the shipped builds
(``qcrd_ray/assets``); this script rebuilds one into the cache (``--force``, or another ``--seed``) and measures
it on its task's test split: single-sample accuracy at ``--temperature`` and self-consistency accuracy (majority
of K samples), the gap QCRD's voting relies on. ``--name stories``: 9 min on 2 cores (2026-12-07).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.build_teacher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="arith", help="which built-in teacher: arith (the piles) or stories")
    parser.add_argument("--cache-dir", default=None, help="cache root (default: $QCRD_CACHE or ~/.cache/qcrd-ray)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete teacher is cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-size", type=int, default=200, help="toy test questions to measure on (0: skip)")
    parser.add_argument("--k", type=int, default=5, help="samples per question for self-consistency")
    parser.add_argument("--temperature", type=float, default=0.7)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local: never reach for the hub
    from qcrd_ray import stories, toy
    from qcrd_ray.builtin_teacher import DONE_MARKER, ensure_builtin_teacher, evaluate_teacher

    started = time.perf_counter()
    path = ensure_builtin_teacher(args.name, cache_dir=args.cache_dir, seed=args.seed, force=args.force)
    info = json.loads((path / DONE_MARKER).read_text())
    print(f"teacher: {path}")
    print(
        f"  built in {info['build_seconds']:.0f}s, {info['num_parameters']:,} parameters, final loss {info['final_loss']:.3f}"
    )
    print(f"  (this call took {time.perf_counter() - started:.0f}s; a cached teacher is reused unless --force)")
    if args.eval_size > 0:
        test = (stories if args.name == "stories" else toy).generate_split("test", args.eval_size, seed=0)
        result = evaluate_teacher(path, test, k=args.k, temperature=args.temperature, seed=args.seed)
        print(f"on {result['num_questions']} toy test questions, temperature {result['temperature']}:")
        print(f"  single-sample accuracy      {result['accuracy']:.1%}")
        print(f"  self-consistency (k={result['k']}) acc.  {result['sc_accuracy']:.1%}")
        print(f"  parseable answers           {result['parse_rate']:.1%}   ({result['seconds']:.0f}s)")
        print(f"  a sample: {result['example_completion'].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
