"""Where does the judge start? Pretrain D as a run does, then score held-out rationales of each kind.

    python -m studies.judge_start [--seeds 0,1,2] [--variants default,lr1e-3,...] [--set KEY=VALUE ...]

Run it from a directory whose ``runs/teacher_cache`` holds the run's teacher samples (``python -m jobs.distill``
at the same commit, with the same ``--set``, leaves them): the votes come from that cache, nothing is sampled.
D pretrains on the first 80% of the training questions (the teacher's positives against its minority, topped
up with corrupted positives, as ``QualityJudge.pretrain`` does), then scores the last 20%: the teacher's
positives, its minority, corrupted positives, and the samples iteration 1 takes its negatives from (the
pretrained student at ``negatives.temperature``). Prints, per variant and seed, D's mean score of each kind
and the AUC of positives against each kind of negative (0.5: D cannot tell them apart; below: inverted).
"""

from __future__ import annotations

import argparse
import random
import time

from qcrd_ray.config import load_config

# Each variant: overrides of the judge section (on top of the run's config).
VARIANTS = {
    "default": {},
    "lr1e-3": {"judge.lr": 1e-3},
    "lr1e-3_steps300": {"judge.lr": 1e-3, "judge.pretrain_steps": 300},
    # D's encoder is the pretrained student's (a T5 encoder that reads the domain, as the paper's D is T5's).
    "student_encoder": {"judge.encoder": "student"},
    "student_encoder_lr1e-3": {"judge.encoder": "student", "judge.lr": 1e-3},
    # L_D plus the binary cross-entropy that pins the scores' level.
    "level": {"judge.level_weight": 1.0},
    "level_lr1e-3": {"judge.level_weight": 1.0, "judge.lr": 1e-3},
}


def held_out_rationales(cfg, examples, votes, student_dir: str, seed: int) -> dict[str, list[tuple[str, str]]]:
    """(question, rationale) pairs of the held-out questions, by kind."""
    from qcrd_ray.augment import balance_negatives
    from qcrd_ray.models import generate, load_student
    from qcrd_ray.tasks import EXPLAIN

    rng = random.Random(seed)
    kinds: dict[str, list[tuple[str, str]]] = {"positive": [], "minority": [], "corrupted": [], "student": []}
    for ex, vote in zip(examples, votes, strict=True):
        positives = [r.text for r in vote.positives]
        kinds["positive"] += [(ex.input, r) for r in positives]
        kinds["minority"] += [(ex.input, r.text) for r in vote.negatives]
        extra = balance_negatives(positives, [], rng, cfg.judge.mask_probability)
        kinds["corrupted"] += [(ex.input, r) for r in extra[:1]]
    model, tokenizer = load_student(student_dir)
    samples = generate(
        model,
        tokenizer,
        [EXPLAIN + ex.input for ex in examples],
        max_new_tokens=cfg.negatives.max_new_tokens,
        do_sample=True,
        temperature=cfg.negatives.temperature,
        batch_size=cfg.negatives.batch_size,
        seed=seed,
        max_input_length=cfg.student.max_input_length,
    )
    kinds["student"] = [(ex.input, s[0]) for ex, s in zip(examples, samples, strict=True)]
    return kinds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from jobs.teacher_phase import run_teacher_phase
    from qcrd_ray.data import load_examples
    from qcrd_ray.judge import QualityJudge
    from qcrd_ray.methods import pretrain_groups
    from qcrd_ray.models import student_path
    from qcrd_ray.report_judge import separation_auc
    from qcrd_ray.sample_cache import CacheKey, SampleCache, prompt_template_sha
    from qcrd_ray.tasks import get_task

    cfg = load_config(None, args.set)
    train, task = load_examples(cfg.data, cfg.data.train_split), get_task(cfg.data.task)
    cache = SampleCache(cfg.teacher.cache_dir, CacheKey.for_teacher(cfg.teacher, prompt_template_sha(task.prompt)))
    if len(cache.done_ids({ex.id: task.prompt(ex.input) for ex in train})) < len(train):
        raise SystemExit(
            f"{cache.path}: not every training question's teacher samples are cached; run "
            f"python -m jobs.distill (with the same --set) here first"
        )
    votes = run_teacher_phase(cfg, train, task).votes
    cut = int(0.8 * len(train))
    student_dir = student_path(cfg.student.model)
    held_out = held_out_rationales(cfg, train[cut:], votes[cut:], student_dir, seed=0)
    print("held out: " + ", ".join(f"{len(v)} {k}" for k, v in held_out.items()))
    print(
        f"{'variant':<18} seed  secs  " + "  ".join(f"{k:>9}" for k in held_out) + "   AUC vs: minority "
        "corrupted student"
    )
    for name in args.variants.split(","):
        overrides = {k: student_dir if v == "student" else v for k, v in VARIANTS[name].items()}
        variant = cfg.replace(overrides)
        for seed in (int(s) for s in args.seeds.split(",")):
            judge = QualityJudge(variant.judge, student_dir, seed)
            started = time.perf_counter()
            judge.pretrain(pretrain_groups(train[:cut], votes[:cut]))
            seconds = time.perf_counter() - started
            scores = {kind: judge.score(pairs) for kind, pairs in held_out.items()}
            means = "  ".join(f"{sum(s) / len(s):9.3f}" for s in scores.values())
            aucs = "  ".join(
                f"{separation_auc(scores['positive'], scores[k]):8.3f}" for k in ("minority", "corrupted", "student")
            )
            print(f"{name:<18} {seed:>4} {seconds:5.1f}  {means}          {aucs}", flush=True)


if __name__ == "__main__":
    main()
