"""Build (or rebuild) the built-in pretrained student and print how well it computes.

    python -m jobs.build_student [--out DIR] [--seed S] [--steps N]

Runs whose ``student.model`` is ``builtin:arith-student`` use the shipped build
(``qcrd_ray/assets/student-arith-v2``), which this script writes by default. It prints the build's
exact-match accuracy on held-out arithmetic chains, worked out step by step and in one shot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from qcrd_ray.builtin_student import RECIPE, pretrain_builtin_student
    from qcrd_ray.shipped_student import SHIPPED_DIR

    parser = argparse.ArgumentParser(prog="python -m jobs.build_student", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(SHIPPED_DIR), help=f"where to write it (default: {SHIPPED_DIR})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=RECIPE.steps, help="optimizer steps (a shorter trial build)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local: never reach for the hub
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        info = pretrain_builtin_student(tmp, dataclasses.replace(RECIPE, steps=args.steps), seed=args.seed)
        shutil.rmtree(out, ignore_errors=True)
        os.rename(tmp, out)  # whole or absent: a killed build never looks finished
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"student: {out}\n{json.dumps(info, indent=2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
