"""The work side of the scaling plan (benchmarks.scaling): split sizes, mean lengths and tokens per question, each
phase's work over a run (and how a pool's pass is chunked), and the bytes per question the driver, the object
store and a train worker hold. From the config alone: no rates, no Ray, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from qcrd_ray.config import Config, EvalConfig, JudgeConfig, NegativesConfig, TeacherConfig
from qcrd_ray.methods import METHODS, methods_of
from qcrd_ray.pool_sizing import questions_per_iteration
from qcrd_ray.schedule import steps_per_iteration
from qcrd_ray.tasks import EXPLAIN

CHARS_PER_TOKEN = 4.0  # English through T5's SentencePiece (and Llama's BPE): ~4 characters a token
AGREEMENT = 0.8  # assumed share of the K teacher samples that agree with the majority (the positives)
JUDGE_WRAP = len("question:  rationale: ")  # qcrd_ray.models.judge_text
ANSWER_WRAP = len(" So the answer is .")  # what a teacher writes around its answer
# Split sizes. hf: the hub datasets the presets name; dss: lines of the DSS release's files (counted 2026-12-02:
# its e-SNLI and ANLI ship no train split, its SVAMP is 800 / 200 where the hub's ChilleD/SVAMP is 700 / 300).
SPLITS = {
    ("hf", "esnli"): {"train": 549_367, "validation": 9_842, "test": 9_824},
    ("hf", "anli1"): {"train_r1": 16_946, "dev_r1": 1_000, "test_r1": 1_000},
    ("hf", "cqa"): {"train": 9_741, "validation": 1_221},
    ("hf", "svamp"): {"train": 700, "test": 300},
    ("dss", "esnli"): {"valid": 9_842, "test": 9_824},
    ("dss", "anli1"): {"valid": 1_000, "test": 1_000},
    ("dss", "cqa"): {"train": 9_741, "test": 1_221},
    ("dss", "svamp"): {"train": 800, "test": 200},
}
# Mean characters of (question, label, teacher rationale, teacher prompt): measure_lengths on the DSS release,
# 2026-12-02 (e-SNLI and ANLI over test, CQA and SVAMP over train); used where the release is absent.
LENGTHS = {
    "esnli": (116, 10.0, 54, 1178),
    "anli1": (394, 10.0, 116, 1879),
    "cqa": (157, 9.4, 133, 1040),
    "svamp": (162, 17.3, 129, 1043),
}
PICKING = ("minmax", "maxmin")  # qcrd_ray.losses.PICKING_AGGREGATIONS (importing it would import torch)
STR, FLOAT, PTR, TUPLE, SLOT, OBJ = 49, 24, 8, 40, 100, 200  # CPython bytes: str header, float, ..., an object


@dataclass(frozen=True)
class Lengths:
    """Mean characters of a question, its label, a teacher rationale and a teacher prompt, and where from."""

    question: float
    label: float
    rationale: float
    prompt: float
    source: str


def measure_lengths(root: Path, task: str) -> Lengths:
    """Means over the DSS release when it is at ``root`` (its PaLM rationales), else the table above."""
    from qcrd_ray.data import load_dss
    from qcrd_ray.tasks import get_task

    def mean(xs: list[int]) -> float:
        return sum(xs) / max(len(xs), 1)

    for split in ("train", "test"):
        if (root / task / f"{task}_{split}.json").is_file():
            examples, _ = load_dss(root, task, split)
            prompt = get_task(task).prompt
            return Lengths(
                mean([len(ex.input) for ex in examples]),
                mean([len(ex.label) for ex in examples]),
                mean([len(r.text) for ex in examples for r in ex.rationales]),
                mean([len(prompt(ex.input)) for ex in examples]),
                f"measured: {root}/{task} {split}, {len(examples):,} examples",
            )
    if task not in LENGTHS:
        raise SystemExit(f"benchmarks.scaling: no mean lengths for task {task!r} (neither {root} nor the table has it)")
    return Lengths(*LENGTHS[task], source="table in benchmarks/scaling_work.py (DSS release, 2026-12-02)")


def split_sizes(cfg: Config) -> tuple[int, int]:
    """(training, evaluation) questions: the table's split sizes, capped by data.max_*_examples."""
    d = cfg.data
    toy = {d.train_split: d.toy_train_size, d.eval_split: d.toy_eval_size}
    splits = toy if d.source == "toy" else SPLITS.get((d.source, d.task), {})
    if d.train_split not in splits or d.eval_split not in splits:
        raise SystemExit(f"benchmarks.scaling: no split sizes for {d.source} {d.task} {d.train_split}/{d.eval_split}")
    train, evaluation = splits[d.train_split], splits[d.eval_split]
    if d.source == "dss" and "valid" not in splits:  # DSS holds out a fraction of train for validation
        train = round(train * (1 - d.validation_fraction))
    return min(train, d.max_train_examples or train), min(evaluation, d.max_eval_examples or evaluation)


@dataclass(frozen=True)
class Shape:
    """Per question: positives, negatives, the teacher's minority, and tokens of a student input, a label, a
    rationale, a judge text (question + rationale), a teacher sample and a teacher prompt."""

    positives: float
    negatives: float
    minority: float
    question: float
    label: float
    rationale: float
    judge: float
    teacher_out: float
    prompt: float


def shape(cfg: Config, ln: Lengths, upper: bool) -> Shape:
    """Mean tokens (characters / CHARS_PER_TOKEN, capped at the max lengths), or the max lengths (``upper``)."""
    k, st, t = cfg.teacher.num_samples, cfg.student, cfg.teacher
    pos = k * AGREEMENT if cfg.run.self_consistency else 1.0  # without voting: DSS's one rationale
    minority = k - pos if cfg.run.self_consistency else 0.0
    student = cfg.negatives.samples_per_question * cfg.run.student_negatives
    neg = min(cfg.negatives.max_per_question, student + minority * cfg.negatives.include_teacher_minority)
    if upper:
        lengths = (st.max_input_length, st.max_target_length, st.max_target_length, cfg.judge.max_length)
        return Shape(pos, neg, minority, *lengths, t.max_new_tokens, ln.prompt / CHARS_PER_TOKEN)
    tok = [c / CHARS_PER_TOKEN for c in (ln.question + len(EXPLAIN), ln.label, ln.rationale)]
    judge = (ln.question + ln.rationale + JUDGE_WRAP) / CHARS_PER_TOKEN
    if t.backend == "dataset":
        out = 0.0
    elif t.chat:  # a chat model stops after its answer
        out = min((ln.rationale + ln.label + ANSWER_WRAP) / CHARS_PER_TOKEN, t.max_new_tokens)
    else:  # actors/teacher.py sets no stop sequence: a few-shot completion runs on into the next "Q:"
        out = t.max_new_tokens
    capped = (min(tok[0], st.max_input_length), min(tok[1], st.max_target_length), min(tok[2], st.max_target_length))
    return Shape(pos, neg, minority, *capped, min(judge, cfg.judge.max_length), out, ln.prompt / CHARS_PER_TOKEN)


def driver_bytes(cfg: Config, ln: Lengths) -> dict[str, float]:
    """Bytes per training question held in one QCRD iteration (jobs/qcrd_run.py: ``negatives`` returns a dict
    for every question, ``score`` a list for every pair; the items go to the fit through one ``ray.put``, and
    every train worker unpickles all of them before it takes items[rank::world])."""
    s, spq = shape(cfg, ln, upper=False), cfg.negatives.samples_per_question
    r, k, text = s.positives + s.negatives, cfg.teacher.num_samples, ln.question + ln.label
    votes = k * (STR + ln.rationale + OBJ) + OBJ + text + 2 * STR  # examples and teacher samples, held all run
    negatives = spq * (STR + ln.rationale) + STR + 20 + TUPLE + SLOT
    items = OBJ + 4 * TUPLE + 2 * r * PTR + r * FLOAT
    pairs_and_scores = r * (TUPLE + 2 * PTR + FLOAT + PTR)
    return {
        "driver heap: examples, votes, negatives, items, pairs, scores": votes + negatives + items + pairs_and_scores,
        "object store: the iteration's items (one object)": text + 60 + r * (ln.rationale + 14),
        "a train worker's copy of every item (one worker per GPU)": items + (2 + r) * STR + text + r * ln.rationale,
    }


@dataclass(frozen=True)
class Work:
    """One phase's work over the whole run. ``kind``: what runs it (teacher, judge: a T5 encoder, sampler:
    generate, train: the student's fit); ``chunks``: what one pass is cut into and dealt over the kind's pool
    (0: replica 0 runs it alone)."""

    phase: str
    kind: str
    questions: float = 0
    samples: float = 0
    gen_tokens: float = 0
    pairs: float = 0
    steps_x_batch: str = "-"
    grad_tokens: float = 0  # forward + backward
    fwd_tokens: float = 0  # forward only: judge scoring, encoder passes, QCRD's no-grad pick, teacher prompts
    decode_steps: float = 0  # sequential decoding steps of batched generation
    decode_batch: float = 0  # sequences one decoding step carries
    opt_steps: float = 0
    chunks: int = 0

    @property
    def tokens(self) -> float:
        return self.grad_tokens + self.fwd_tokens + self.gen_tokens


def teacher_work(t: TeacherConfig, q: int, s: Shape) -> Work:
    """K samples per training question; one request (or prompt) per question with n = K."""
    return Work(
        "teacher sampling", "teacher", q, q * t.num_samples, q * t.num_samples * s.teacher_out, fwd_tokens=q * s.prompt
    )


def judge_pretrain_work(j: JudgeConfig, s: Shape) -> Work:
    """Groups of the teacher's positives against its minority, topped up to as many (qcrd_ray.augment)."""
    groups, texts = j.pretrain_steps * j.batch_size, s.positives + max(s.positives, s.minority)
    return Work(
        "judge pretraining",
        "judge",
        groups,
        pairs=groups * texts,
        grad_tokens=groups * texts * s.judge,
        steps_x_batch=f"{j.pretrain_steps} x {j.batch_size}",
    )


def negatives_work(ng: NegativesConfig, q: int, its: int, s: Shape) -> Work:
    """An iteration's ``q`` questions, every iteration, sampled at temperature 1.5: a batch decodes to the limit."""
    samples, chunks = q * its * ng.samples_per_question, math.ceil(q / ng.batch_size)
    return Work(
        "student negatives",
        "sampler",
        q * its,
        samples,
        samples * ng.max_new_tokens,
        fwd_tokens=q * its * s.question,
        decode_steps=its * chunks * ng.max_new_tokens,
        decode_batch=ng.batch_size * ng.samples_per_question,
        chunks=chunks,
    )


def judge_score_work(j: JudgeConfig, q: int, its: int, s: Shape) -> Work:
    """Every positive and negative of an iteration's ``q`` questions, every iteration (one forward each)."""
    pairs = q * its * (s.positives + s.negatives)
    return Work(
        "judge scoring",
        "judge",
        q * its,
        pairs=pairs,
        fwd_tokens=pairs * s.judge,
        chunks=math.ceil(pairs / its / j.score_batch_size),
    )


def judge_update_work(j: JudgeConfig, its: int, s: Shape) -> Work:
    steps = its // j.update_interval * j.update_steps
    groups, texts = steps * j.batch_size, s.positives + s.negatives
    return Work(
        "judge online update",
        "judge",
        groups,
        pairs=groups * texts,
        grad_tokens=groups * texts * s.judge,
        steps_x_batch=f"{steps} x {j.batch_size}",
    )


def train_work(method: str, cfg: Config, q: int, s: Shape) -> Work:
    """One method's fit: the label path, plus its rationales (QCRD: every one without a gradient to pick two)."""
    steps = cfg.run.iterations * steps_per_iteration(cfg.train, q)
    n, r, predict = steps * cfg.train.batch_size, s.positives + s.negatives, s.question + s.label
    picked = method == "qcrd" and cfg.loss.aggregation in PICKING
    grad = {
        "finetune": predict,
        "dss": predict + s.question + s.rationale,
        "qcrd": predict + s.question + (2 if picked else r) * s.rationale,
    }[method]
    fwd = s.question + r * s.rationale if picked else 0.0
    return Work(
        f"student training ({method})",
        "train",
        n,
        grad_tokens=n * grad,
        fwd_tokens=n * fwd,
        steps_x_batch=f"{steps:,} x {cfg.train.batch_size}",
        opt_steps=steps,
    )


def eval_work(ev: EvalConfig, e: int, its: int, methods: list[str], s: Shape, upper: bool) -> Work:
    """Every iteration of every method, on the whole eval split: the predict path, and for students that
    explain their rationale too. A greedy batch ends at its longest output: ~2x the mean, at most the limit."""
    runs, explains, chunks = (
        its * len(methods),
        its * sum(METHODS[m].explains for m in methods),
        math.ceil(e / ev.batch_size),
    )
    pred = ev.max_new_tokens if upper else min(ev.max_new_tokens, 2 * s.label + 1)
    rat = ev.rationale_max_new_tokens if upper else min(ev.rationale_max_new_tokens, 2 * s.rationale)
    return Work(
        "evaluation",
        "sampler",
        e * runs,
        e * (runs + explains),
        e * (runs * s.label + explains * s.rationale),
        fwd_tokens=e * (runs + explains) * s.question,
        decode_batch=ev.batch_size,
        decode_steps=chunks * (runs * pred + explains * rat),
        chunks=chunks,
    )


def phases(cfg: Config, ln: Lengths, upper: bool = False, every_question: bool = False) -> list[Work]:
    """Every phase of one run (one seed), in the order of a QCRD iteration (jobs/qcrd_run.py).
    ``every_question``: as before 2026-12-07, when every iteration sampled and scored all training questions."""
    s, (q, e), its = shape(cfg, ln, upper), split_sizes(cfg), cfg.run.iterations
    qi = q if every_question else questions_per_iteration(cfg, q)
    qcrd = METHODS[cfg.run.method].contrastive
    judge = qcrd and cfg.run.use_judge
    out = [teacher_work(cfg.teacher, q, s)] + ([judge_pretrain_work(cfg.judge, s)] if judge else [])
    out += [negatives_work(cfg.negatives, qi, its, s)] if qcrd and cfg.run.student_negatives else []
    out += [judge_score_work(cfg.judge, qi, its, s)] if judge else []
    out += [train_work(method, cfg, q, s) for method in methods_of(cfg.run)]
    out += [judge_update_work(cfg.judge, its, s)] if judge else []
    return out + [eval_work(cfg.eval, e, its, methods_of(cfg.run), s, upper)]
