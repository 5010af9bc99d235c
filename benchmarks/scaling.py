"""Scaling plan: one run's work per phase, and its wall time and cost projected on N GPUs.

    python -m benchmarks.scaling --config configs/esnli_t5_base.yaml [--costs cluster/measured_costs.json]
        [--gpus 1,8,64] [--dss ../shared/data/dss] [--set key=value ...]

Arithmetic only (no Ray, no torch, no GPU). The config gives each phase's work; mean lengths measured from the
DSS release (or benchmarks/scaling_work.py's table when it is absent) give its tokens, the config's max lengths
an upper bound; the rates of the costs file (each with its unit, hardware and source) turn work into hours. A GPU
run that measures a rate writes it there, and this script recomputes the plan (cluster/SCALING.md).

How a phase spreads over N GPUs, as the code is today:
- teacher: vllm / transformers actors scale with N (one per GPU); an openai endpoint does not (its
  concurrency and rate limit do);
- student negatives, judge scoring (an iteration's questions: those its batches draw), evaluation: pools of
  ``sampler.num_replicas`` and ``judge.num_replicas``
  actors (jobs/seed_services.py SeedServices), a placement-group bundle each. A pass is cut into chunks
  (``negatives.batch_size`` questions, ``judge.score_batch_size`` pairs, ``eval.batch_size`` examples) and chunk
  c goes to replica c % R: a pass takes ceil(chunks / R) chunks' time of one replica;
- judge pretraining and online updates: replica 0 alone (the others then load its weights: not counted);
- student training: DeepSpeed data parallelism over the GPUs the pools leave (a divisor of train.batch_size),
  plus a gradient all-reduce per step. When the pools leave none, everything shares the N GPUs.
Every N is projected twice: with the config's replica counts, and with pools sized to N (``Projection.sized``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from benchmarks import scaling_work as work
from benchmarks.scaling_work import Lengths, Work, driver_bytes, measure_lengths, phases, shape, split_sizes
from qcrd_ray.config import Config, load_config
from qcrd_ray.pool_sizing import AUTO, questions_per_iteration, split_pools

PARAMS = {"t5-base": 222_903_552, "t5-small": 60_506_624}  # the all-reduce's gradient bytes
GIB = 2**30


@dataclass(frozen=True)
class Pools:
    """How a run spreads over N GPUs: Ray Train workers, student sampler and judge replicas. ``fits``: False when
    they (with one worker) ask for more than N GPUs; they then share the N, a pool running at most N at a time."""

    n: int
    workers: int
    samplers: int
    judges: int
    fits: bool = True

    def __str__(self) -> str:
        return f"{self.workers} / {self.samplers} / {self.judges}" + ("" if self.fits else " (shared)")


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

    def services(self, samplers: int, judges: int) -> int:
        """GPUs the seed's services placement group holds from the teacher phase's end to the run's: a bundle per
        sampler and per judge replica (SeedServices reserves the judges' whatever the method)."""
        return math.ceil(samplers * self.cfg.sampler.num_gpus + judges * self.cfg.judge.num_gpus)

    def divisor(self, most: int) -> int:
        """The most data-parallel workers, at most ``most`` (and at least one), that divide train.batch_size."""
        return max(w for w in range(1, max(most, 1) + 1) if self.cfg.train.batch_size % w == 0)

    def pools(self, n: int, run: list[Work]) -> Pools:
        """The config's replica counts (``auto``: ``sized``); the fit takes the GPUs they leave (all N, shared,
        when they leave none)."""
        s, j = self.cfg.sampler.num_replicas, self.cfg.judge.num_replicas
        if AUTO in (s, j):
            sized = self.sized(n, run)
            s, j = sized.samplers if s == AUTO else s, sized.judges if j == AUTO else j
        free = n - self.services(s, j)
        return Pools(n, self.divisor(free if free > 0 else n), s, j, free > 0)

    def sized(self, n: int, run: list[Work]) -> Pools:
        """Pools sized to N: the fit keeps train.num_workers (a divisor of the batch, at most N / 2); the other
        GPUs split as ``sampler.num_replicas: auto`` splits them (``qcrd_ray.pool_sizing.split_pools``: half each,
        trimmed to the fewest that take as few rounds of chunks); with fewer than two GPUs beside the fit,
        everything shares."""
        w = self.divisor(min(self.cfg.train.num_workers, n // 2))
        if n - w < 2:
            return Pools(n, self.divisor(n), 1, 1, self.services(1, 1) + 1 <= n)
        passes = {k: [x.chunks for x in run if x.kind == k and x.chunks] for k in ("sampler", "judge")}
        return Pools(n, w, *split_pools(n - w, passes["sampler"], passes["judge"]))

    def lanes(self, w: Work, p: Pools) -> int:
        """Replicas that run a pass of ``w`` side by side."""
        replicas = p.samplers if w.kind == "sampler" else p.judges
        return replicas if p.fits else max(1, min(replicas, p.n))

    def seconds(self, w: Work, p: Pools) -> float:
        if w.kind == "teacher":
            return self.teacher(w, p.n)
        if w.kind == "train":
            return self.train(w, p.workers)
        one = self.one_replica(w)
        return one * math.ceil(w.chunks / self.lanes(w, p)) / w.chunks if w.chunks else one

    def one_replica(self, w: Work) -> float:
        return self.judge(w) if w.kind == "judge" else self.sampler(w)

    def teacher_actors(self, n: int) -> int:
        t = self.cfg.teacher
        if t.backend == "openai":
            return t.num_actors
        return max(1, n // (math.ceil(t.num_gpus) or 1) // t.tensor_parallel_size)

    def gpus(self, w: Work, p: Pools) -> float:
        """GPUs a phase keeps busy on average (the rest of the N wait): a pool's last round leaves some idle."""
        if w.kind == "teacher":
            return 0 if self.cfg.teacher.backend in ("openai", "dataset") else self.teacher_actors(p.n)
        if w.kind == "train":
            return p.workers
        return w.chunks / math.ceil(w.chunks / self.lanes(w, p)) if w.chunks else 1

    def held(self, w: Work, p: Pools) -> int:
        """GPUs an autoscaled cluster holds during a phase: the teacher's pool, then the fit's and the services'."""
        if w.kind == "teacher":
            return int(self.gpus(w, p))
        return min(p.n, p.workers + self.services(p.samplers, p.judges))

    def api_usd(self, w: Work) -> float:
        t = self.cfg.teacher
        if w.kind != "teacher" or t.backend != "openai":
            return 0.0
        usd_in, usd_out = (self.rate(f"teacher_api_usd_per_m_{io}:{t.model}") for io in ("input", "output"))
        return (w.fwd_tokens * usd_in + w.gen_tokens * usd_out) / 1e6

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

    def judge(self, w: Work) -> float:
        train = self.rate(f"encoder_train_fp32_tokens_per_s:{self.encoder}")
        return w.grad_tokens / train + w.fwd_tokens / self.rate(f"encoder_forward_fp32_tokens_per_s:{self.encoder}")

    def sampler(self, w: Work) -> float:
        """A decoding step is launch-bound, or compute-bound at large batches (a decoder ~ an encoder)."""
        forward = self.rate(f"encoder_forward_fp32_tokens_per_s:{self.student}")
        step = max(self.rate(f"decode_step_s:{self.student}"), w.decode_batch / forward)
        return w.decode_steps * step + w.fwd_tokens / forward

    def train(self, w: Work, workers: int) -> float:
        rate = self.rate(f"student_train_bf16_tokens_per_s:{self.student}")
        if self.cfg.train.precision == "fp32":
            rate *= self.rate("fp32_peak_flops") / self.rate("bf16_peak_flops")
        overhead = w.opt_steps * self.rate("train_step_overhead_s")  # tokenizing, AdamW, ZeRO's bookkeeping
        seconds = (w.grad_tokens + w.fwd_tokens / 3) / (rate * workers) + overhead
        if workers > 1:  # a ring all-reduce moves ~2x the bf16 gradients per step
            link = "intra_node" if workers <= self.rate("gpus_per_node") else "inter_node"
            seconds += w.opt_steps * 2 * 2 * PARAMS.get(self.student, 0) / self.rate(f"allreduce_bytes_per_s:{link}")
        return seconds


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
    price, (ns, nj) = proj.rate("usd_per_gpu_hour"), (cfg.sampler.num_replicas, cfg.judge.num_replicas)
    out = [
        f"# Scaling plan: {cfg.run.name} ({d.task}, student {cfg.student.model}, teacher {t.backend} {t.model})",
        "",
        f"- data: {d.source} {d.task}, train {q:,} questions ({d.train_split}), eval {e:,} ({d.eval_split}); split "
        "sizes from the table in benchmarks/scaling_work.py",
        f"- lengths: {ln.source}; mean characters: question {ln.question:.0f}, label {ln.label:.0f}, rationale "
        f"{ln.rationale:.0f}, teacher prompt {ln.prompt:.0f}; {work.CHARS_PER_TOKEN:g} characters a token",
        f"- per question: {s.positives:g} positives (assumed: {work.AGREEMENT:.0%} of K = {t.num_samples} agree), "
        f"{s.negatives:g} negatives; a teacher sample decodes {s.teacher_out:.0f} tokens",
        f"- rates: {costs_path} ({costs.get('date', '?')}); ${price:.2f} per GPU-hour",
        f"- pools: sampler.num_replicas {ns} x {cfg.sampler.num_gpus:g} GPU, judge.num_replicas {nj} x "
        f"{cfg.judge.num_gpus:g} GPU; train.num_workers {cfg.train.num_workers}",
        "",
        "## Work per phase (one run, one seed)",
        "",
        "| phase | runs on | questions | samples | generated tokens | (q, r) pairs | steps x batch "
        "| tokens through the model (mean) | (upper bound: max lengths) |",
        "|---|---|" + "---:|" * 7,
    ]

    def runs_on(w: Work) -> str:
        if w.kind in ("teacher", "train"):
            return f"{t.backend} actors" if w.kind == "teacher" else "Ray Train workers"
        r = ns if w.kind == "sampler" else nj
        return f"{w.kind} x {r}, {w.chunks:,} chunks a pass" if w.chunks else "judge replica 0"

    for w, u in zip(mean, upper, strict=True):
        out.append(
            row(
                w.phase,
                runs_on(w),
                fmt(w.questions),
                fmt(w.samples),
                fmt(w.gen_tokens),
                fmt(w.pairs),
                w.steps_x_batch,
                fmt(w.tokens),
                fmt(u.tokens),
            )
        )
    pools, sized = {n: proj.pools(n, mean) for n in gpus}, {n: proj.sized(n, mean) for n in gpus}
    secs = {n: [proj.seconds(w, pools[n]) for w in mean] for n in gpus}
    sized_secs = {n: [proj.seconds(w, sized[n]) for w in mean] for n in gpus}
    out += ["", "## Projected hours per phase (mean lengths, the config's pools)", ""]
    out += [row("phase", *(f"N = {n}" for n in gpus)), "|---|" + "---:|" * len(gpus)]
    out += [row(w.phase, *(hours(secs[n][i]) for n in gpus)) for i, w in enumerate(mean)]
    api, positives = sum(proj.api_usd(w) for w in mean), q * s.positives / 1000

    def usd(n: int, p: Pools, x: list[float], autoscaled: bool = True) -> float:
        held = [proj.held(w, p) if autoscaled else n for w in mean]
        return sum(g * y for g, y in zip(held, x, strict=True)) / 3600 * price + api

    def busy(n: int) -> float:
        return sum(proj.gpus(w, pools[n]) * x for w, x in zip(mean, secs[n], strict=True)) / (n * sum(secs[n]))

    out += [
        row("**total**", *(f"**{hours(sum(secs[n]))}**" for n in gpus)),
        row("total, upper bound (max lengths)", *(hours(sum(proj.seconds(w, pools[n]) for w in upper)) for n in gpus)),
        row("GPUs: train workers / samplers / judges", *(pools[n] for n in gpus)),
        row("GPUs busy / held (time-weighted)", *(f"{busy(n):.0%}" for n in gpus)),
        row("USD, N GPUs held all run (+ teacher API)", *(f"{usd(n, pools[n], secs[n], False):,.0f}" for n in gpus)),
        row(
            "USD, autoscaled: the teacher's GPUs, then the fit's and the pools'",
            *(f"{usd(n, pools[n], secs[n]):,.0f}" for n in gpus),
        ),
        row(
            "USD per 1,000 positive rationales, autoscaled",
            *(f"{usd(n, pools[n], secs[n]) / positives:,.2f}" for n in gpus),
        ),
        row("**pools sized to N**: train workers / samplers / judges", *(sized[n] for n in gpus)),
        row("**total, pools sized to N**", *(f"**{hours(sum(sized_secs[n]))}**" for n in gpus)),
        row("USD, autoscaled, pools sized to N", *(f"{usd(n, sized[n], sized_secs[n]):,.0f}" for n in gpus)),
        "",
        f"Teacher API: ${api:,.0f} ({t.model}); none when the teacher runs on the GPUs.",
        "",
        "Pools sized to N, as `sampler.num_replicas: auto` and `judge.num_replicas: auto` size them when a run starts "
        "(qcrd_ray/pool_sizing.py): the fit keeps train.num_workers (here also a divisor of train.batch_size, at most "
        "N / 2); the other GPUs go one replica each to samplers and judges, half each, then each pool is trimmed to "
        "the fewest replicas that take as few rounds of chunks (a pass's chunks are dealt round-robin); with fewer than "
        "two GPUs beside the fit, everything shares. (shared): the pools and one train worker ask for more than N GPUs "
        "(Ray would wait for them); projected as if they shared the N.",
        "",
    ]
    return "\n".join(out + bottlenecks(cfg, proj, mean, secs, sized, sized_secs, ln, gpus))


def bottlenecks(
    cfg: Config,
    proj: Projection,
    mean: list[Work],
    secs: dict[int, list[float]],
    sized: dict[int, Pools],
    sized_secs: dict[int, list[float]],
    ln: Lengths,
    gpus: list[int],
) -> list[str]:
    """What keeps the run from scaling with N, and where the driver's lists stop fitting."""
    (q, _), t, n = split_sizes(cfg), cfg.teacher, max(gpus)
    ns, nj = cfg.sampler.num_replicas, cfg.judge.num_replicas

    def pooled(m: int) -> float:
        return sum(x for w, x in zip(mean, secs[m], strict=True) if w.chunks) / sum(secs[m])

    replica0 = sum(x for w, x in zip(mean, secs[n], strict=True) if w.kind == "judge" and not w.chunks)
    line = (
        f"- **Service pools.** With the config's {ns} sampler and {nj} judge replica{'s' * (max(ns, nj) > 1)}, "
        f"negatives, judge scoring and evaluation take {hours(pooled(n) * sum(secs[n]))} of "
        f"{hours(sum(secs[n]))} h at N = {n} ({pooled(n):.0%}): they divide over their replicas, not over N. "
        f"Judge pretraining and online updates stay on replica 0: {hours(replica0)} h."
    )
    most = [str(m) for m in gpus if m > 1 and pooled(m) >= 0.5]
    line += (
        f" They are most of the run at N = {' and '.join(most)}." if most else " They are under half of it at N > 1."
    )
    better = [m for m in gpus if m > 1 and sum(sized_secs[m]) < 0.9 * sum(secs[m])]
    if better:
        line += (
            " The plan suggests "
            + "; ".join(
                f"at N = {m}, `--set sampler.num_replicas={sized[m].samplers} --set judge.num_replicas={sized[m].judges}`"
                f" ({hours(sum(secs[m]))} -> {hours(sum(sized_secs[m]))} h)"
                for m in better
            )
            + "; `auto` for both sizes them so on the cluster a run starts on."
        )
    out = ["## Bottlenecks", "", line]
    trained = questions_per_iteration(cfg, q)
    if cfg.run.method == "qcrd" and trained < q:
        out.append(
            f"- **An iteration's questions only.** Each iteration samples negatives for, and scores, the {trained:,} "
            f"questions its batches draw, of {q:,} (until 2026-12-07 all of them: {q / trained:.1f}x the work)."
        )
    if t.backend in ("vllm", "transformers") and not t.chat:
        used = (ln.rationale + ln.label + work.ANSWER_WRAP) / work.CHARS_PER_TOKEN
        out.append(
            f"- **The teacher decodes to its limit.** No stop sequence (actors/teacher.py): {t.max_new_tokens} "
            f"tokens a sample for ~{used:.0f} used ({t.max_new_tokens / used:.1f}x)."
        )
    if t.backend == "openai":
        out.append(
            f"- **The teacher endpoint.** {t.num_actors} actor x {t.max_concurrency} requests in flight (or the "
            "tokens-per-minute limit) set its speed, not N."
        )
    out += [
        "- **Judge and sampler rates are fp32's.** `judge.dtype` / `sampler.dtype` `auto` run them in bf16 on a "
        "GPU, but the costs file has fp32 rates for them only: their hours here are an upper bound.",
        "",
        row("held per QCRD iteration", "bytes / question", "at this size", "limit", "breaks at (questions)"),
        "|---|---:|---:|---:|---:|",
    ]
    head, per_gpu = proj.rate("head_ram_bytes"), proj.rate("gpu_node_ram_bytes") / proj.rate("gpus_per_node")
    limits = [head, head * proj.rate("object_store_fraction"), per_gpu]
    for (name, b), limit in zip(driver_bytes(cfg, ln).items(), limits, strict=True):
        out.append(row(name, f"{b:,.0f}", f"{q * b / GIB:.2f} GiB", f"{limit / GIB:,.1f} GiB", fmt(limit / b)))
    out.append(
        "\nLimits: the head's RAM (cluster/aws.yaml's m5.2xlarge); its object store (30% of it, Ray's default; "
        "past it Ray spills to disk); a GPU node's RAM per GPU. N enters only through workers per node."
    )
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
