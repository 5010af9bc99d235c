"""How long, and how fast, should the judge pretrain? Its held-out AUCs along the way, per variant and seed.

    python -m studies.judge_pretraining [--seeds 0,1] [--variants lr1e-4,lr3e-4,lr1e-3] [--steps 500] [--every 50]
                                        [--set KEY=VALUE ...]

Run it from a directory whose ``runs/teacher_cache`` holds the run's teacher samples (``python -m jobs.distill``
at the same commit, with the same ``--set``, leaves them): the votes come from that cache, nothing is sampled.
D pretrains as a run's does (``QualityJudge.pretrain``: the teacher's positives against its minority, topped up
with corrupted positives) on the training questions outside the run's held-out share (``judge.holdout_fraction``,
``qcrd_ray.judge_separation``), and every ``--every`` steps scores the held-out questions' positives, minority,
corrupted positives and the initial student's samples at ``negatives.temperature`` (iteration 1's negatives).
Prints the AUC of positives against each kind (0.5: D cannot tell them apart) and D's mean score of each.
"""

from __future__ import annotations

import argparse
import time

from qcrd_ray.config import load_config

# Each variant: overrides of the judge section (on top of the run's config).
VARIANTS = {
    "lr1e-4": {"judge.lr": 1e-4},
    "lr3e-4": {"judge.lr": 3e-4},
    "lr1e-3": {"judge.lr": 1e-3},
    "lr3e-3": {"judge.lr": 3e-3},
    # L_D plus the binary cross-entropy that pins the scores' level (L_D alone sees only their differences).
    "lr3e-4_level": {"judge.lr": 3e-4, "judge.level_weight": 1.0},
    "lr1e-3_level": {"judge.lr": 1e-3, "judge.level_weight": 1.0},
    # The judge before issue 33: a tiny random-init encoder.
    "tiny_lr1e-4": {"judge.encoder": None, "judge.lr": 1e-4},
}


def student_samples(cfg, examples, student_dir: str, seed: int) -> dict[str, list[str]]:
    """One sample per question of the initial student at ``negatives.temperature``: iteration 1's negatives."""
    from qcrd_ray.models import generate, load_student
    from qcrd_ray.tasks import EXPLAIN

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
    return {ex.id: [s[0]] for ex, s in zip(examples, samples, strict=True)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default="lr1e-4,lr3e-4,lr1e-3")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from jobs.teacher_phase import run_teacher_phase
    from qcrd_ray.data import load_examples
    from qcrd_ray.judge import QualityJudge
    from qcrd_ray.judge_separation import HeldOut, held_out_ids, separation
    from qcrd_ray.methods import pretrain_groups
    from qcrd_ray.models import student_path
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
    student_dir = student_path(cfg.student.model)
    for seed in (int(s) for s in args.seeds.split(",")):
        ids = held_out_ids([ex.id for ex in train], cfg.judge.holdout_fraction, seed)
        held_out = HeldOut.build(train, votes, ids, seed, cfg.judge.mask_probability)
        kept = [(ex, v) for ex, v in zip(train, votes, strict=True) if ex.id not in ids]
        groups = pretrain_groups(cfg, [ex for ex, _ in kept], [v for _, v in kept])
        samples = student_samples(cfg, [ex for ex in train if ex.id in ids], student_dir, seed)
        pairs = held_out.pairs(train, samples)
        print(f"seed {seed}: held out " + ", ".join(f"{len(v)} {k}" for k, v in pairs.items()), flush=True)
        print(
            f"{'variant':<12} steps   secs   AUC minority corrupted student   mean positives minority corrupted student"
        )
        for name in args.variants.split(","):
            variant = cfg.replace(VARIANTS[name])
            judge = QualityJudge(variant.judge, student_dir, seed)
            usable, _ = judge.balanced(groups)
            seconds = 0.0
            for done in range(0, args.steps + 1, args.every):
                if done:
                    started = time.perf_counter()
                    judge.train_steps(usable, args.every, variant.judge.lr)
                    seconds += time.perf_counter() - started
                scores = {kind: judge.score(p) for kind, p in pairs.items()}
                aucs = separation(scores)
                auc_cells = "  ".join(
                    f"{aucs.get(f'judge_auc_{k}', float('nan')):8.3f}" for k in ("minority", "corrupted", "student")
                )
                means = "  ".join(f"{sum(s) / max(len(s), 1):8.3f}" for s in scores.values())
                print(f"{name:<12} {done:5d} {seconds:6.1f}   {auc_cells}     {means}", flush=True)


if __name__ == "__main__":
    main()
