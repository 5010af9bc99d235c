"""Chaos test of resume: kill one process of a QCRD run at a random moment, resume, compare with an unbroken run.

    python -m benchmarks.chaos [--trials 5] [--seed 0] [--out DIR] [--work DIR]

The run is ``jobs.distill --config configs/tiny.yaml`` shortened (``SHORT``), QCRD only. It runs once unbroken;
then each trial starts it afresh (its own output and teacher cache), and at a moment drawn from
``random.Random(f"chaos/{seed}/{trial}")`` SIGKILLs one of its processes: the driver (its whole session, local
Ray included), a teacher actor, the judge, the student sampler or a Ray Train worker. Whatever Ray does not
recover is resumed with ``--resume`` (at most 3 times). A trial is identical when the final student and judge
files hash the same as the unbroken run's, every iteration's accuracy, rationale accuracy and loss agree within
1e-6, and the teacher cache holds one line per training question (no sample paid for and written twice).
Exit code 0 when every trial is identical. Runs live in a temporary directory, kept when a trial differs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The smallest run that still trains every part (as tests/test_pipeline_e2e.py's shortened default run).
SHORT = (
    "run.iterations=3",
    "run.baselines=[]",
    "data.toy_train_size=48",
    "data.toy_eval_size=24",
    "train.steps_per_iteration=6",
    "train.batch_size=8",
    "teacher.num_samples=3",
    "judge.pretrain_steps=5",
    "judge.update_steps=2",
)
# What can be killed, and the process titles Ray gives it (``ray::<Class>`` idle, ``ray::<Class>.<method>`` busy).
TARGETS = {
    "driver": (),
    "teacher": ("ray::Teacher",),
    "judge": ("ray::QualityJudge", "ray::JudgeActor"),
    "sampler": ("ray::StudentSampler",),
    "train worker": ("ray::RayTrainWorker",),
}
METRICS = ("accuracy", "rationale_accuracy", "loss")
# A judge loaded from disk (a resumed one) also writes into this file the padding and truncation settings that its
# tokenizer.json holds (transformers copies them into the init kwargs): metadata, not state, so not compared.
JUDGE_METADATA = {"tokenizer_config.json"}
MAX_RESUMES = 3
RUN_TIMEOUT_S = 1200.0
RETARGET_S = 10.0  # how long a chosen target may be missing before another one present is chosen


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_ADDRESS": ""}


def distill_args(out: Path, cache: Path) -> list[str]:
    sets = [f"run.output_dir={out}", f"teacher.cache_dir={cache}", *SHORT]
    return ["--config", "configs/tiny.yaml", *(arg for item in sets for arg in ("--set", item))]


def descendants(pid: int) -> dict[tuple[int, float], str]:
    """(pid, start time) -> command line of every live descendant of ``pid``: only this run's processes."""
    import psutil

    found = {}
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                found[(p.pid, p.create_time())] = " ".join(p.cmdline()).strip()
    return found


def end_leftovers(seen: dict[tuple[int, float], str]) -> None:
    """SIGKILL what a run started and left behind (a killed driver cannot stop its Ray): by pid and start time."""
    import psutil

    for pid, started in seen:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.create_time() == started:
                p.kill()


def phase_at(out: Path) -> str:
    """The last phase the run finished, from its metrics.jsonl (the driver logs every phase as it ends)."""
    path = out / "seed_0" / "metrics.jsonl"
    phases = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        with contextlib.suppress(ValueError):  # the line being written
            phases += [e for e in [json.loads(line)] if e.get("event") == "phase"]
    if not phases:
        return "teacher (before any phase ended)"
    last = phases[-1]
    where = f"iter {last['iteration'] + 1} " if "iteration" in last else ""
    return f"after {where}{last['phase']}"


@dataclass
class Chaos:
    """One kill: at ``at_s`` seconds, of ``target`` (chosen again among those present if it stays missing)."""

    rng: random.Random
    at_s: float
    target: str
    killed: str = ""
    second: float = 0.0
    phase: str = ""

    def step(self, driver: subprocess.Popen, elapsed: float, out: Path) -> None:
        """Kill the target once its moment has come and it exists (a finished phase's actor never comes back)."""
        victims = [] if self.killed or elapsed < self.at_s else find(driver.pid, self.target)
        if not self.killed and not victims and elapsed > self.at_s + RETARGET_S:
            self.target, self.at_s = self.rng.choice([t for t in TARGETS if find(driver.pid, t)]), elapsed
            victims = find(driver.pid, self.target)
        if not victims:
            return
        pid, title = self.rng.choice(victims)
        self.second, self.phase = elapsed, phase_at(out)
        if self.target == "driver":
            os.killpg(driver.pid, signal.SIGKILL)  # its session: the local Ray goes down with it
        else:
            os.kill(pid, signal.SIGKILL)
        self.killed = f"{self.target} ({title.split()[0]})"


def find(driver_pid: int, target: str) -> list[tuple[int, str]]:
    """(pid, title) of the run's processes of ``target``, by pid."""
    if target == "driver":
        return [(driver_pid, "session")]
    return sorted((pid, t) for (pid, _), t in descendants(driver_pid).items() if t.startswith(TARGETS[target]))


def attempt(args: list[str], out: Path, log: Path, chaos: Chaos | None = None) -> tuple[int, float, set[str]]:
    """One ``jobs.distill`` in its own session, watched every half second (and killed by ``chaos``): its exit
    code, seconds and the titles of its Ray processes."""
    started = time.monotonic()
    seen: dict[tuple[int, float], str] = {}
    with open(log.with_suffix(".out"), "w") as stdout, open(log.with_suffix(".err"), "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.distill", *args],
            cwd=ROOT,
            env=env(),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > RUN_TIMEOUT_S:
                os.killpg(proc.pid, signal.SIGKILL)
            seen.update(descendants(proc.pid))
            if chaos is not None:
                chaos.step(proc, elapsed, out)
            time.sleep(0.5)
    time.sleep(1.0)  # what dies with the driver dies now; what is left is ended below
    end_leftovers(seen)
    return proc.returncode, time.monotonic() - started, {t.split()[0] for t in seen.values() if t.startswith("ray::")}


@dataclass
class Outcome:
    """What a finished run left that a resume must reproduce exactly."""

    student: str  # sha256 of the final QCRD student's model.safetensors
    judge: str  # sha256 over the judge saved after the last iteration: weights, optimizer, random state, tokenizer
    history: list[dict]
    cache_lines: int
    cache_duplicates: int


def tree_sha(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in JUDGE_METADATA):
        digest.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def outcome(out: Path, cache: Path) -> Outcome:
    qcrd = json.loads((out / "summary.json").read_text())[0]["methods"]["qcrd"]
    student = hashlib.sha256((Path(qcrd["student_dir"]) / "model.safetensors").read_bytes()).hexdigest()
    judge = tree_sha(out / "seed_0" / "qcrd" / "judge" / f"iter_{len(qcrd['history']):04d}")
    ids = [json.loads(line)["id"] for f in cache.glob("*.jsonl") for line in f.read_text().splitlines() if line]
    return Outcome(student, judge, qcrd["history"], len(ids), len(ids) - len(set(ids)))


def same_metrics(a: list[dict], b: list[dict]) -> bool:
    """Every iteration's METRICS within 1e-6 (one present on one side only is a difference)."""
    if len(a) != len(b):
        return False
    return all(
        (k in x) == (k in y) and abs(x.get(k, 0.0) - y.get(k, 0.0)) <= 1e-6
        for x, y in zip(a, b, strict=True)
        for k in METRICS
    )


@dataclass
class Trial:
    trial: int
    killed: str
    second: float
    phase: str
    resumes: int
    seconds: float
    questions: int
    student_same: bool = False
    judge_same: bool = False
    metrics_same: bool = False
    cache_lines: int = 0
    duplicates: int = 0

    @property
    def identical(self) -> bool:
        cache_ok = self.cache_lines == self.questions and self.duplicates == 0
        return self.student_same and self.judge_same and self.metrics_same and cache_ok


def run_reference(work: Path) -> tuple[Outcome, float]:
    """The unbroken run (its own teacher cache); prints the Ray process titles it saw, to check ``TARGETS``."""
    out, cache = work / "unbroken", work / "unbroken_cache"
    out.mkdir(parents=True)
    code, seconds, titles = attempt(distill_args(out, cache), out, out / "attempt_0")
    if code != 0:
        raise SystemExit(f"the unbroken run failed (exit {code}): see {out}/attempt_0.err")
    print(f"unbroken run: {seconds:.0f} s; Ray processes: {', '.join(sorted(titles))}", flush=True)
    return outcome(out, cache), seconds


def run_trial(trial: int, seed: int, work: Path, reference: Outcome, reference_s: float) -> Trial:
    """One broken run: kill, resume until it finishes, compare with ``reference``."""
    rng = random.Random(f"chaos/{seed}/{trial}")
    target = rng.choice(list(TARGETS))  # what, then when: between 5% and 90% of the unbroken run's time
    chaos = Chaos(rng, at_s=rng.uniform(0.05, 0.9) * reference_s, target=target)
    out, cache = work / f"trial_{trial}", work / f"trial_{trial}_cache"
    out.mkdir(parents=True)
    args = distill_args(out, cache)
    code, seconds, _ = attempt(args, out, out / "attempt_0", chaos)
    resumes = 0
    while code != 0 and resumes < MAX_RESUMES:  # killed, or failed on what was killed
        resumes += 1
        code, more, _ = attempt([*args, "--resume"], out, out / f"attempt_{resumes}")
        seconds += more
    from qcrd_ray.config import load_config

    questions = load_config(ROOT / "configs" / "tiny.yaml", list(SHORT)).data.toy_train_size
    result = Trial(
        trial, chaos.killed or "nothing (the run ended first)", chaos.second, chaos.phase, resumes, seconds, questions
    )
    if code == 0:
        got = outcome(out, cache)
        result.student_same, result.judge_same = got.student == reference.student, got.judge == reference.judge
        result.metrics_same = same_metrics(got.history, reference.history)
        result.cache_lines, result.duplicates = got.cache_lines, got.cache_duplicates
    else:
        result.phase += f"; still failing after {resumes} resumes"
    print(
        f"trial {trial}: killed {result.killed} at {result.second:.1f} s ({result.phase}), {resumes} resume(s), "
        f"{seconds:.0f} s: {'identical' if result.identical else 'DIFFERS'}",
        flush=True,
    )
    return result


def table(trials: list[Trial]) -> str:
    yes = {True: "yes", False: "**no**"}
    rows = [
        "| trial | killed | at s | phase | resumes | student | judge | metrics | cache lines / dups | seconds "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in trials:
        verdict = "identical" if t.identical else "**differs**"
        rows.append(
            f"| {t.trial} | {t.killed} | {t.second:.1f} | {t.phase} | {t.resumes} | {yes[t.student_same]} "
            f"| {yes[t.judge_same]} | {yes[t.metrics_same]} | {t.cache_lines} / {t.duplicates} "
            f"| {t.seconds:.0f} | {verdict} |"
        )
    same = sum(t.identical for t in trials)
    return "\n".join(rows) + f"\n\n{same} of {len(trials)} trials identical to the unbroken run\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="directory for chaos.md (default: print only)")
    parser.add_argument("--work", help="directory for the runs (default: a temporary one, kept if a trial differs)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="qcrd_chaos_")).resolve()
    reference, reference_s = run_reference(work)
    trials = [run_trial(i, args.seed, work, reference, reference_s) for i in range(args.trials)]
    text = table(trials)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "chaos.md").write_text(f"# Chaos test of resume (seed {args.seed})\n\n{text}")
    ok = all(t.identical for t in trials)
    if args.work is None and ok:
        shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        print(f"runs kept in {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
