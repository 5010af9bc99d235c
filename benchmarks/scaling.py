"""Scaling plan: one run's work per phase, and its wall time and cost projected on N GPUs.

    python -m benchmarks.scaling --config configs/esnli_t5_base.yaml [--costs cluster/measured_costs.json]
        [--gpus 1,8,64] [--dss ../shared/data/dss] [--set key=value ...]

Arithmetic only (no Ray, no torch, no GPU). The config gives each phase's work; mean lengths measured from the
DSS release (or the table below when it is absent) give its tokens, the config's max lengths an upper bound;
the rates of the costs file (each with its unit, hardware and source) turn work into hours. A GPU run that
measures a rate writes it there, and this script recomputes the plan (cluster/SCALING.md).

How a phase spreads over N GPUs, as the code is today:
- teacher: vllm / transformers actors scale with N (one per GPU); an openai endpoint does not (its
  concurrency and rate limit do);
- student negatives, judge pretraining / scoring / updates, evaluation: ONE actor each per seed
  (jobs/method_run.py SeedServices), one GPU each, whatever N is;
- student training: DeepSpeed data parallelism over the GPUs the judge and the sampler leave (a divisor of
  train.batch_size), plus a gradient all-reduce per step. Below what the services hold, the phases share.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from qcrd_ray.config import Config, EvalConfig, JudgeConfig, NegativesConfig, TeacherConfig, load_config
from qcrd_ray.schedule import steps_per_iteration
from qcrd_ray.tasks import EXPLAIN

CHARS_PER_TOKEN = 4.0  # English through T5's SentencePiece (and Llama's BPE): ~4 characters a token
AGREEMENT = 0.8  # assumed share of the K teacher samples that agree with the majority (the positives)
PICKING = ("minmax", "maxmin")  # qcrd_ray.losses.PICKING_AGGREGATIONS (importing it would import torch)
JUDGE_WRAP = len("question:  rationale: ")  # qcrd_ray.models.judge_text
ANSWER_WRAP = len(" So the answer is .")  # what a teacher writes around its answer
PARAMS = {"t5-base": 222_903_552, "t5-small": 60_506_624}  # the all-reduce's gradient bytes
GIB = 2**30
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
LENGTHS = {"esnli": (116, 10.0, 54, 1178), "anli1": (394, 10.0, 116, 1879), "cqa": (157, 9.4, 133, 1040),
           "svamp": (162, 17.3, 129, 1043)}  # fmt: skip
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
    return Lengths(*LENGTHS[task], source="table in benchmarks/scaling.py (DSS release, 2026-12-02)")


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


@dataclass(frozen=True)
class Work:
    """One phase's work over the whole run. ``kind``: what runs it (teacher, judge: a T5 encoder, sampler:
    generate, train: the student's fit)."""

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

    @property
    def tokens(self) -> float:
        return self.grad_tokens + self.fwd_tokens + self.gen_tokens


def teacher_work(t: TeacherConfig, q: int, s: Shape) -> Work:
    """K samples per training question; one request (or prompt) per question with n = K."""
    return Work("teacher sampling", "teacher", q, q * t.num_samples, q * t.num_samples * s.teacher_out,
                fwd_tokens=q * s.prompt)  # fmt: skip


def judge_pretrain_work(j: JudgeConfig, s: Shape) -> Work:
    """Groups of the teacher's positives against its minority, topped up to as many (qcrd_ray.augment)."""
    groups, texts = j.pretrain_steps * j.batch_size, s.positives + max(s.positives, s.minority)
    return Work("judge pretraining", "judge", groups, pairs=groups * texts, grad_tokens=groups * texts * s.judge,
                steps_x_batch=f"{j.pretrain_steps} x {j.batch_size}")  # fmt: skip


def negatives_work(ng: NegativesConfig, q: int, its: int, s: Shape) -> Work:
    """Every training question, every iteration, sampled at temperature 1.5: a batch decodes to the limit."""
    samples = q * its * ng.samples_per_question
    return Work("student negatives", "sampler", q * its, samples, samples * ng.max_new_tokens,
                fwd_tokens=q * its * s.question, decode_steps=its * math.ceil(q / ng.batch_size) * ng.max_new_tokens,
                decode_batch=ng.batch_size * ng.samples_per_question)  # fmt: skip


def judge_score_work(q: int, its: int, s: Shape) -> Work:
    """Every positive and negative of every training question, every iteration (one forward each)."""
    pairs = q * its * (s.positives + s.negatives)
    return Work("judge scoring", "judge", q * its, pairs=pairs, fwd_tokens=pairs * s.judge)


def judge_update_work(j: JudgeConfig, its: int, s: Shape) -> Work:
    steps = its // j.update_interval * j.update_steps
    groups, texts = steps * j.batch_size, s.positives + s.negatives
    return Work("judge online update", "judge", groups, pairs=groups * texts, grad_tokens=groups * texts * s.judge,
                steps_x_batch=f"{steps} x {j.batch_size}")  # fmt: skip


def train_work(method: str, cfg: Config, q: int, s: Shape) -> Work:
    """One method's fit: the label path, plus its rationales (QCRD: every one without a gradient to pick two)."""
    steps = cfg.run.iterations * steps_per_iteration(cfg.train, q)
    n, r, predict = steps * cfg.train.batch_size, s.positives + s.negatives, s.question + s.label
    picked = method == "qcrd" and cfg.loss.aggregation in PICKING
    grad = {"finetune": predict, "dss": predict + s.question + s.rationale,
            "qcrd": predict + s.question + (2 if picked else r) * s.rationale}[method]  # fmt: skip
    fwd = s.question + r * s.rationale if picked else 0.0
    return Work(f"student training ({method})", "train", n, grad_tokens=n * grad, fwd_tokens=n * fwd,
                steps_x_batch=f"{steps:,} x {cfg.train.batch_size}", opt_steps=steps)  # fmt: skip


def eval_work(ev: EvalConfig, e: int, its: int, methods: list[str], s: Shape, upper: bool) -> Work:
    """Every iteration of every method, on the whole eval split: the predict path, and for students that
    explain their rationale too. A greedy batch ends at its longest output: ~2x the mean, at most the limit."""
    runs, explains = its * len(methods), its * sum(m != "finetune" for m in methods)
    pred = ev.max_new_tokens if upper else min(ev.max_new_tokens, 2 * s.label + 1)
    rat = ev.rationale_max_new_tokens if upper else min(ev.rationale_max_new_tokens, 2 * s.rationale)
    return Work("evaluation", "sampler", e * runs, e * (runs + explains), e * (runs * s.label + explains * s.rationale),
                fwd_tokens=e * (runs + explains) * s.question, decode_batch=ev.batch_size,
                decode_steps=math.ceil(e / ev.batch_size) * (runs * pred + explains * rat))  # fmt: skip


def methods_of(cfg: Config) -> list[str]:
    """As jobs.distill.methods_of (not imported: jobs.distill imports Ray)."""
    return ["finetune", "dss", "qcrd"] if cfg.run.compare_baselines and cfg.run.method == "qcrd" else [cfg.run.method]


def phases(cfg: Config, ln: Lengths, upper: bool = False) -> list[Work]:
    """Every phase of one run (one seed), in the order of a QCRD iteration (jobs/method_run.py)."""
    s, (q, e), its = shape(cfg, ln, upper), split_sizes(cfg), cfg.run.iterations
    qcrd = cfg.run.method == "qcrd"
    judge = qcrd and cfg.run.use_judge
    out = [teacher_work(cfg.teacher, q, s)] + ([judge_pretrain_work(cfg.judge, s)] if judge else [])
    out += [negatives_work(cfg.negatives, q, its, s)] if qcrd and cfg.run.student_negatives else []
    out += [judge_score_work(q, its, s)] if judge else []
    out += [train_work(method, cfg, q, s) for method in methods_of(cfg)]
    out += [judge_update_work(cfg.judge, its, s)] if judge else []
    return out + [eval_work(cfg.eval, e, its, methods_of(cfg), s, upper)]


class Projection:
    """Seconds per phase on N GPUs, from the costs file's rates (a missing rate names its key)."""

    def __init__(self, cfg: Config, costs: dict, path: str):
        self.cfg, self.path = cfg, path
        self.rates = {**costs["rates"], **costs["nodes"], **costs["price"]}
        self.student = (cfg.student.model or "tiny").rsplit("/", 1)[-1]
        self.encoder = (cfg.judge.encoder or "tiny").rsplit("/", 1)[-1]

    def rate(self, key: str) -> float:
        if key not in self.rates:
            raise SystemExit(f"benchmarks.scaling: {self.path} has no rate {key!r}")
        return float(self.rates[key]["rate"])

    def services(self) -> int:
        """GPUs the seed's judge and student sampler hold from the teacher phase's end to the run's."""
        return math.ceil(self.cfg.judge.num_gpus) * self.cfg.run.use_judge + math.ceil(self.cfg.sampler.num_gpus)

    def train_workers(self, n: int) -> int:
        """Data-parallel workers on N GPUs: what the judge and the sampler leave, a divisor of the batch."""
        free = n - self.services() if n > self.services() else n
        return max(w for w in range(1, free + 1) if self.cfg.train.batch_size % w == 0)

    def held(self, w: Work, n: int) -> int:
        """GPUs an autoscaled cluster holds during a phase: the teacher's pool, then the fit's and the services'."""
        return self.gpus(w, n) if w.kind == "teacher" else min(n, self.services() + self.train_workers(n))

    def teacher_actors(self, n: int) -> int:
        t = self.cfg.teacher
        if t.backend == "openai":
            return t.num_actors
        return max(1, n // (math.ceil(t.num_gpus) or 1) // t.tensor_parallel_size)

    def gpus(self, w: Work, n: int) -> int:
        """GPUs a phase keeps busy (the rest of the N wait)."""
        if w.kind == "teacher":
            return 0 if self.cfg.teacher.backend in ("openai", "dataset") else self.teacher_actors(n)
        return self.train_workers(n) if w.kind == "train" else 1

    def api_usd(self, w: Work) -> float:
        t = self.cfg.teacher
        if w.kind != "teacher" or t.backend != "openai":
            return 0.0
        usd_in, usd_out = (self.rate(f"teacher_api_usd_per_m_{io}:{t.model}") for io in ("input", "output"))
        return (w.fwd_tokens * usd_in + w.gen_tokens * usd_out) / 1e6

    def seconds(self, w: Work, n: int) -> float:
        return getattr(self, w.kind)(w, n)  # teacher, judge, sampler or train below

    def teacher(self, w: Work, n: int) -> float:
        t = self.cfg.teacher
        if t.backend == "dataset":
            return 0.0
        if t.backend != "openai":
            rate = self.rate(f"teacher_output_tokens_per_s:{t.backend}") * t.tensor_parallel_size
            return w.gen_tokens / (rate * self.teacher_actors(n))
        # One request per question (n = K, whose streams decode side by side), or the tokens-per-minute limit.
        speed = self.rate(f"teacher_api_tokens_per_s_per_request:{t.model}")
        latency = self.rate(f"teacher_api_ttft_s:{t.model}") + w.gen_tokens / max(w.samples, 1) / speed
        limit = self.rate(f"teacher_api_tokens_per_minute:{t.model}") / 60
        return max(w.questions * latency / (t.num_actors * t.max_concurrency), w.tokens / limit)

    def judge(self, w: Work, n: int) -> float:
        train = self.rate(f"encoder_train_fp32_tokens_per_s:{self.encoder}")
        return w.grad_tokens / train + w.fwd_tokens / self.rate(f"encoder_forward_fp32_tokens_per_s:{self.encoder}")

    def sampler(self, w: Work, n: int) -> float:
        """A decoding step is launch-bound, or compute-bound at large batches (a decoder ~ an encoder)."""
        forward = self.rate(f"encoder_forward_fp32_tokens_per_s:{self.student}")
        step = max(self.rate(f"decode_step_s:{self.student}"), w.decode_batch / forward)
        return w.decode_steps * step + w.fwd_tokens / forward

    def train(self, w: Work, n: int) -> float:
        rate = self.rate(f"student_train_bf16_tokens_per_s:{self.student}")
        if self.cfg.train.precision == "fp32":
            rate *= self.rate("fp32_peak_flops") / self.rate("bf16_peak_flops")
        workers = self.train_workers(n)
        overhead = w.opt_steps * self.rate("train_step_overhead_s")  # tokenizing, AdamW, ZeRO's bookkeeping
        seconds = (w.grad_tokens + w.fwd_tokens / 3) / (rate * workers) + overhead
        if workers > 1:  # a ring all-reduce moves ~2x the bf16 gradients per step
            link = "intra_node" if workers <= self.rate("gpus_per_node") else "inter_node"
            seconds += w.opt_steps * 2 * 2 * PARAMS.get(self.student, 0) / self.rate(f"allreduce_bytes_per_s:{link}")
        return seconds


def driver_bytes(cfg: Config, ln: Lengths) -> dict[str, float]:
    """Bytes per training question held in one QCRD iteration (jobs/method_run.py: ``negatives`` returns a dict
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


def fmt(x: float) -> str:
    return f"{x / 1e9:.2f} B" if x >= 1e9 else f"{x / 1e6:.1f} M" if x >= 1e6 else f"{x:,.0f}"


def hours(seconds: float) -> str:
    h = seconds / 3600
    return f"{h:.3f}" if h < 0.1 else f"{h:.2f}" if h < 10 else f"{h:,.0f}"


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def report(cfg: Config, costs: dict, costs_path: str, gpus: list[int], ln: Lengths) -> str:
    """The plan as Markdown: the work per phase, the hours per phase for each N, the bottlenecks."""
    proj, mean, upper = Projection(cfg, costs, costs_path), phases(cfg, ln), phases(cfg, ln, upper=True)
    (q, e), s, d, t = split_sizes(cfg), shape(cfg, ln, upper=False), cfg.data, cfg.teacher
    price = proj.rate("usd_per_gpu_hour")
    out = [
        f"# Scaling plan: {cfg.run.name} ({d.task}, student {cfg.student.model}, teacher {t.backend} {t.model})",
        "",
        f"- data: {d.source} {d.task}, train {q:,} questions ({d.train_split}), eval {e:,} ({d.eval_split}); split "
        "sizes from the table in benchmarks/scaling.py",
        f"- lengths: {ln.source}; mean characters: question {ln.question:.0f}, label {ln.label:.0f}, rationale "
        f"{ln.rationale:.0f}, teacher prompt {ln.prompt:.0f}; {CHARS_PER_TOKEN:g} characters a token",
        f"- per question: {s.positives:g} positives (assumed: {AGREEMENT:.0%} of K = {t.num_samples} agree), "
        f"{s.negatives:g} negatives; a teacher sample decodes {s.teacher_out:.0f} tokens",
        f"- rates: {costs_path} ({costs.get('date', '?')}); ${price:.2f} per GPU-hour",
        "",
        "## Work per phase (one run, one seed)",
        "",
        "| phase | runs on | questions | samples | generated tokens | (q, r) pairs | steps x batch "
        "| tokens through the model (mean) | (upper bound: max lengths) |",
        "|---|---|" + "---:|" * 7,
    ]
    runs_on = {"teacher": f"{t.backend} actors", "judge": "1 judge actor", "sampler": "1 student sampler actor",
               "train": "Ray Train workers"}  # fmt: skip
    for w, u in zip(mean, upper, strict=True):
        out.append(row(w.phase, runs_on[w.kind], fmt(w.questions), fmt(w.samples), fmt(w.gen_tokens), fmt(w.pairs),
                       w.steps_x_batch, fmt(w.tokens), fmt(u.tokens)))  # fmt: skip
    secs = {n: [proj.seconds(w, n) for w in mean] for n in gpus}
    out += ["", "## Projected hours per phase (mean lengths)", "", row("phase", *(f"N = {n}" for n in gpus))]
    out += ["|---|" + "---:|" * len(gpus)]
    out += [row(w.phase, *(hours(secs[n][i]) for n in gpus)) for i, w in enumerate(mean)]
    api, positives = sum(proj.api_usd(w) for w in mean), q * s.positives / 1000

    def usd(n: int, autoscaled: bool) -> float:
        held = [proj.held(w, n) if autoscaled else n for w in mean]
        return sum(g * x for g, x in zip(held, secs[n], strict=True)) / 3600 * price + api

    def sharded(n: int) -> float:
        return sum(x / (n if w.kind in ("judge", "sampler") else 1) for w, x in zip(mean, secs[n], strict=True))

    def busy(n: int) -> float:
        return sum(proj.gpus(w, n) * x for w, x in zip(mean, secs[n], strict=True)) / (n * sum(secs[n]))

    out += [
        row("**total**", *(f"**{hours(sum(secs[n]))}**" for n in gpus)),
        row("total, upper bound (max lengths)", *(hours(sum(proj.seconds(w, n) for w in upper)) for n in gpus)),
        row("total if the single actors were sharded over N", *(hours(sharded(n)) for n in gpus)),
        row("GPUs busy / held (time-weighted)", *(f"{busy(n):.0%}" for n in gpus)),
        row("USD, N GPUs held all run (+ teacher API)", *(f"{usd(n, False):,.0f}" for n in gpus)),
        row(
            "USD, autoscaled: the teacher's GPUs, then the fit's and services'", *(f"{usd(n, True):,.0f}" for n in gpus)
        ),
        row("USD per 1,000 positive rationales, autoscaled", *(f"{usd(n, True) / positives:,.2f}" for n in gpus)),
        "",
        f"Teacher API: ${api:,.0f} ({t.model}); none when the teacher runs on the GPUs.",
        "",
    ]
    return "\n".join(out + bottlenecks(cfg, proj, mean, secs[max(gpus)], ln, max(gpus)))


def bottlenecks(cfg: Config, proj: Projection, mean: list[Work], secs: list[float], ln: Lengths, n: int) -> list[str]:
    """What keeps the run from scaling with N, and where the driver's lists stop fitting."""
    (q, _), t, total = split_sizes(cfg), cfg.teacher, sum(secs)
    single = sum(x for w, x in zip(mean, secs, strict=True) if w.kind in ("judge", "sampler"))
    out = [
        "## Bottlenecks",
        "",
        f"- **Single actors.** Negatives, judge and evaluation run on one GPU each whatever N is: {hours(single)} of "
        f"{hours(total)} h at N = {n} ({single / total:.0%}). Shard them over actor pools.",
    ]
    trained = steps_per_iteration(cfg.train, q) * cfg.train.batch_size
    if cfg.run.method == "qcrd" and trained < q:
        out.append(f"- **Unused work.** Every iteration samples negatives for, and scores, all {q:,} questions but "
                   f"trains on {trained:,} ({q / trained:.1f}x): sample and score the iteration's batches only.")  # fmt: skip
    if t.backend in ("vllm", "transformers") and not t.chat:
        used = (ln.rationale + ln.label + ANSWER_WRAP) / CHARS_PER_TOKEN
        out.append(f"- **The teacher decodes to its limit.** No stop sequence (actors/teacher.py): {t.max_new_tokens} "
                   f"tokens a sample for ~{used:.0f} used ({t.max_new_tokens / used:.1f}x).")  # fmt: skip
    if t.backend == "openai":
        out.append(f"- **The teacher endpoint.** {t.num_actors} actor x {t.max_concurrency} requests in flight (or the "
                   "tokens-per-minute limit) set its speed, not N.")  # fmt: skip
    out += [
        "- **fp32 judge and sampler.** They set no dtype and torch leaves TF32 off: 1/16 of an A100's bf16 peak.",
        "",
        row("held per QCRD iteration", "bytes / question", "at this size", "limit", "breaks at (questions)"),
        "|---|---:|---:|---:|---:|",
    ]
    head, per_gpu = proj.rate("head_ram_bytes"), proj.rate("gpu_node_ram_bytes") / proj.rate("gpus_per_node")
    limits = [head, head * proj.rate("object_store_fraction"), per_gpu]
    for (name, b), limit in zip(driver_bytes(cfg, ln).items(), limits, strict=True):
        out.append(row(name, f"{b:,.0f}", f"{q * b / GIB:.2f} GiB", f"{limit / GIB:,.1f} GiB", fmt(limit / b)))
    out.append("\nLimits: the head's RAM (cluster/aws.yaml's m5.2xlarge); its object store (30% of it, Ray's default; "
               "past it Ray spills to disk); a GPU node's RAM per GPU. N enters only through workers per node.")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--costs", default="cluster/measured_costs.json")
    parser.add_argument("--gpus", default="1,8,64", help="comma-separated GPU counts")
    parser.add_argument("--dss", default="../shared/data/dss", help="the DSS release, for mean lengths")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    if not Path(args.costs).is_file():
        raise SystemExit(f"benchmarks.scaling: no costs file {args.costs}")
    costs = json.loads(Path(args.costs).read_text(encoding="utf-8"))
    gpus = [int(n) for n in args.gpus.split(",")]
    print(report(cfg, costs, args.costs, gpus, measure_lengths(Path(args.dss), cfg.data.task)))


if __name__ == "__main__":
    main()
