"""Does a student learn the toy task? A plain torch loop (no Ray), fine-tuning vs DSS on gold rationales.

    python -m studies.student_learns [--student builtin:arith-student] [--steps 300] [--train 500] [--seeds 0,1,2]
        [--lr 1e-3] [--schedule constant|linear] [--warmup-ratio 0.0]
        [--task piles|stories [--kinds change,compare,...] [--distractor-share 0.5] [--max-events 2]]

``--task stories`` draws the two-person story task (``qcrd_ray.stories``) of the given design instead of the
default's piles (``qcrd_ray.toy``).

Trains each method from the same student on the same questions and batches, then prints the predict-path
accuracy and (DSS) the accuracy of the answer read from its own rationale on the toy test split (or
``--split validation``), next to the floor of always giving the most frequent training answer. Results are in
studies/README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from qcrd_ray import stories
from qcrd_ray.config import EvalConfig, StudentConfig, TrainConfig
from qcrd_ray.evaluation import evaluate_student, majority_label_baseline
from qcrd_ray.records import TrainItem
from qcrd_ray.schedule import learning_rate
from qcrd_ray.tasks import get_task
from qcrd_ray.toy import generate_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="builtin:arith-student")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--schedule",
        choices=["constant", "linear"],
        default="constant",
        help="linear: the learning rate decays to 0 over --steps",
    )
    parser.add_argument(
        "--warmup-ratio",
        type=float,
        default=0.0,
        help="the share of --steps the rate rises over (0: the results in studies/README.md)",
    )
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--test", type=int, default=200, help="questions of --split to evaluate on")
    parser.add_argument("--split", choices=["test", "validation"], default="test")
    parser.add_argument("--methods", default="finetune,dss")
    parser.add_argument("--seeds", default="0", help="training seeds (batch order, dropout), e.g. 0,1,2")
    parser.add_argument("--errors", type=int, default=0, help="print this many wrong predict: answers at the end")
    parser.add_argument("--task", choices=["piles", "stories"], default="piles")
    parser.add_argument("--kinds", default=",".join(stories.KINDS), help="stories: the structures drawn")
    parser.add_argument("--distractor-share", type=float, default=0.5, help="stories: problems with a distractor")
    parser.add_argument("--max-events", type=int, default=2, help="stories: events beside a structure's own")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from qcrd_ray.config import Config
    from qcrd_ray.methods import student_loss
    from qcrd_ray.models import build_student, build_tokenizer

    if args.task == "stories":
        design = stories.StoryDesign(tuple(args.kinds.split(",")), args.distractor_share, args.max_events)
        train, test = (
            stories.generate_split(split, n, 0, design) for split, n in (("train", args.train), (args.split, args.test))
        )
    else:
        train, test = generate_split("train", args.train, seed=0), generate_split(args.split, args.test, seed=0)
    items = [TrainItem(ex.id, ex.input, ex.label, (ex.rationales[0].text,), (1.0,)) for ex in train]
    task = get_task("arith")
    schedule = TrainConfig(lr=args.lr, lr_schedule=args.schedule, warmup_ratio=args.warmup_ratio)
    floor = majority_label_baseline(task, [ex.label for ex in train], [ex.label for ex in test])
    print(f"floor (always {floor['label']}): {100 * floor['accuracy']:.1f}%")
    cfg = Config().replace({"student.model": args.student, "student.max_input_length": 256})
    for method, seed in [(m, int(s)) for m in args.methods.split(",") for s in args.seeds.split(",")]:
        torch.manual_seed(seed)
        tokenizer = build_tokenizer(cfg.student, None)
        model = build_student(StudentConfig(model=args.student), tokenizer)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
        rng = random.Random(seed)
        started = time.perf_counter()
        for step in range(args.steps):
            for group in optimizer.param_groups:  # the pipeline's schedule (train_iteration), over this loop's steps
                group["lr"] = learning_rate(schedule, step, args.steps)
            batch = rng.sample(items, args.batch_size)
            loss, _ = student_loss(model, tokenizer, batch, method, cfg)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if (step + 1) % 100 == 0 or step + 1 == args.steps:
                model.eval()
                result = evaluate_student(
                    model,
                    tokenizer,
                    test,
                    "arith",
                    EvalConfig(rationale_max_new_tokens=160),
                    explains=method != "finetune",
                    max_input_length=256,
                )
                model.train()
                rationale = result["rationale_accuracy"]
                print(
                    f"{method} seed {seed} step {step + 1}: loss {loss.item():.3f}, predict {100 * result['accuracy']:.1f}%"
                    + (f", from its rationale {100 * rationale:.1f}%" if rationale is not None else "")
                    + f" ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
        print("  e.g.", result["examples"][0])
        wrong = [(ex, p) for ex, p in zip(test, result["predictions"], strict=True) if not task.is_correct(p, ex.label)]
        for ex, prediction in wrong[: args.errors]:
            print(f"  wrong: {ex.input!r}: {prediction!r}, not {ex.label!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
