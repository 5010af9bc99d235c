"""The teacher phase: K samples per training question, cached on disk, voted as they stream in.

Flow (docs/METHOD.md section 2): look up the sample cache (a rerun with every question cached votes right there,
in the driver, and is done); send the cached questions straight to the voter;
start the teacher pool and fan the uncached questions out in batches; as each batch completes, append it
to the cache and send it to the voter at once. A teacher actor that dies mid-batch is restarted by Ray and
the phase resubmits exactly that batch, so no sample is lost and none is written twice. With
``teacher.backend: dataset`` nothing is sampled: each example's own teacher rationales are its samples.

Ray must already be initialised by the caller (the driver).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qcrd_ray.config import Config, TeacherConfig
from qcrd_ray.records import Example, Rationale, Vote
from qcrd_ray.sample_cache import CacheKey, SampleCache, prompt_template_sha
from qcrd_ray.sharding import chunks

# How often one batch may meet a dead actor before the phase gives up (a teacher that dies on every try
# is broken, not unlucky), and how long it waits for a restarting one (a restart reloads the model).
MAX_BATCH_ATTEMPTS = 4
RESTART_WAIT_S = 900.0


class TeacherPhaseError(RuntimeError):
    """The teacher phase cannot finish (a batch failed on every attempt, duplicate question ids, ...)."""


@dataclass
class TeacherPhaseResult:
    """``votes`` in example order; ``num_sampled`` / ``num_cached`` count questions (each has K samples)."""

    votes: list[Vote]
    stats: dict
    num_sampled: int
    num_cached: int
    seconds: float
    cache_path: str | None = None


def parse_samples(task, example: Example, completions: Sequence[str]) -> list[Rationale]:
    """Raw teacher completions -> teacher rationales with the task's parsed, normalised answers."""
    out = []
    for text in completions:
        r = task.parse_output(text, example.input)
        out.append(r if r.source == "teacher" else dataclasses.replace(r, source="teacher"))
    return out


class _Progress:
    """Counts and rates, printed about every tenth of the work and at the end."""

    def __init__(self, total: int, k: int, progress: Callable[[str], None]):
        self.total, self.k, self.progress = total, k, progress
        self.done = self.samples = 0
        self.started = time.perf_counter()
        self._next = 0.0

    def add(self, questions: int, sampled: bool, voted: int) -> None:
        self.done += questions
        self.samples += questions * self.k if sampled else 0
        if self.done >= self._next or self.done == self.total:
            self._next = self.done + self.total / 10
            rate = self.samples / max(time.perf_counter() - self.started, 1e-9)
            self.progress(
                f"teacher: {self.done}/{self.total} questions, {self.samples} samples, {rate:.1f} samples/s, "
                f"{voted} voted"
            )


def run_teacher_phase(cfg: Config, examples: list[Example], task, progress: Callable[[str], None] = print):
    """Sample, cache and vote every example; returns a ``TeacherPhaseResult`` (see the module docstring)."""
    import ray

    from actors.pool import end_actor
    from actors.voter import create_voter

    started = time.perf_counter()
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise TeacherPhaseError(f"teacher phase: example id {dup!r} appears more than once")
    lookup = None
    if cfg.teacher.backend != "dataset":
        lookup = _lookup(cfg, examples, task)
        if len(lookup.cached) == len(examples):
            rerun = _vote_a_cached_rerun(cfg, examples, task, lookup, progress)
            rerun.stats["teacher_seconds"] = rerun.seconds = time.perf_counter() - started
            check_parsed_share(cfg.teacher, rerun.votes, rerun.stats, rerun.cache_path)
            return rerun
    voter = create_voter(cfg.voting, task, cfg.run.name)
    try:
        if cfg.teacher.backend == "dataset":
            vote_refs = _vote_dataset_rationales(cfg, examples, voter)
            num_sampled = num_cached = 0
            cache_path = None
            progress(f"teacher: {len(examples)} questions with the data's own rationales (no sampling)")
        else:
            vote_refs, num_sampled, num_cached, cache_path = _sample_and_vote(
                cfg, examples, task, lookup, voter, progress=progress
            )
        by_id = {v.example_id: v for batch in ray.get(list(vote_refs)) for v in batch}
        stats = ray.get(voter.stats.remote())
    finally:
        end_actor(voter, f"{cfg.run.name}/voter")
    seconds = time.perf_counter() - started
    stats.update(
        num_sampled=num_sampled,
        num_cached=num_cached,
        teacher_seconds=seconds,
        samples_per_second=num_sampled * cfg.teacher.num_samples / seconds if seconds > 0 else 0.0,
    )
    votes = [by_id[ex.id] for ex in examples]
    if cfg.teacher.backend != "dataset":
        check_parsed_share(cfg.teacher, votes, stats, cache_path)
    return TeacherPhaseResult(votes, stats, num_sampled, num_cached, seconds, cache_path)


def check_parsed_share(cfg: TeacherConfig, votes: list[Vote], stats: dict, cache_path: str | None) -> None:
    """Stop when fewer of the teacher's samples parse than ``teacher.min_parsed_share``: an endpoint that
    answers garbage would otherwise train every student on gold fallbacks, in silence."""
    share = stats["parsed_fraction"]
    if share >= cfg.min_parsed_share:
        return
    shown = [s.text for v in votes for s in v.samples if s.answer is None][:3]
    examples = "; ".join(repr(text[:200]) for text in shown)
    raise TeacherPhaseError(
        f"teacher phase: {100 * share:.1f}% of {stats['num_samples']} samples from {cfg.model} parse, below "
        f"teacher.min_parsed_share {100 * cfg.min_parsed_share:.0f}% (the task's answer format?); for example "
        f"{examples}. They are cached in {cache_path}: delete it to sample them again"
    )


@dataclass
class _Lookup:
    prompts: dict[str, str]  # example id -> prompt
    cache: SampleCache
    cached: dict[str, list[str]]  # example id -> its cached completions


def _lookup(cfg: Config, examples: list[Example], task) -> _Lookup:
    prompts = {ex.id: task.prompt(ex.input) for ex in examples}
    cache = SampleCache(cfg.teacher.cache_dir, CacheKey.for_teacher(cfg.teacher, prompt_template_sha(task.prompt)))
    return _Lookup(prompts, cache, cache.lookup(prompts))


def _vote_a_cached_rerun(cfg: Config, examples: list[Example], task, lookup: _Lookup, progress) -> TeacherPhaseResult:
    """Every question is cached, so there is nothing to stream: vote here with the voter's own code instead
    of starting its actor (a rerun then costs a file read)."""
    from actors.voter import Voter

    voter = Voter(cfg.voting, task)
    votes = voter.add([(ex, parse_samples(task, ex, lookup.cached[ex.id])) for ex in examples])
    stats = voter.stats()
    stats.update(num_sampled=0, num_cached=len(examples), samples_per_second=0.0)
    progress(f"teacher: all {len(examples)} questions cached in {lookup.cache.path}, nothing to sample")
    return TeacherPhaseResult(votes, stats, 0, len(examples), 0.0, str(lookup.cache.path))


def _vote_dataset_rationales(cfg: Config, examples: list[Example], voter) -> dict:
    """``backend: dataset``: the examples' own teacher rationales (1 per question in DSS, K in a JSONL)."""
    refs = {}
    for batch in chunks(examples, cfg.teacher.batch_size):
        refs[voter.add.remote([(ex, [r for r in ex.rationales if r.source == "teacher"]) for ex in batch])] = len(batch)
    return refs


def _sample_and_vote(cfg: Config, examples: list[Example], task, lookup: _Lookup, voter, *, progress) -> tuple:
    """Cached questions to the voter, the rest through the teacher pool.

    Returns (vote refs -> batch size, questions sampled, questions cached, cache file path).
    """
    import ray

    from actors.pool import kill_pool
    from actors.teacher import reserve_teachers, start_teachers, teacher_pool_name

    tcfg = cfg.teacher
    prompts, cache, cached = lookup.prompts, lookup.cache, lookup.cached
    meter = _Progress(len(examples), tcfg.num_samples, progress)
    vote_refs: dict = {}  # ObjectRef of a list[Vote] -> number of questions in it
    for batch in chunks([ex for ex in examples if ex.id in cached], tcfg.batch_size):
        vote_refs[voter.add.remote([(ex, parse_samples(task, ex, cached[ex.id])) for ex in batch])] = len(batch)
        meter.add(len(batch), sampled=False, voted=0)
    todo = chunks([ex for ex in examples if ex.id not in cached], tcfg.batch_size)  # never empty here
    progress(
        f"teacher: {len(cached)} questions cached in {cache.path}, sampling {len(examples) - len(cached)} "
        f"with {tcfg.num_actors} {tcfg.backend} actor(s), K={tcfg.num_samples}"
    )
    group = reserve_teachers(
        tcfg, cfg.run.name, placement_timeout_s=cfg.cluster.placement_timeout_s, autoscaling=cfg.cluster.autoscaling
    )
    pool = start_teachers(tcfg, cfg.run.name, group)
    try:
        _stream_batches(
            pool,
            todo,
            prompts=prompts,
            task=task,
            cache=cache,
            voter=voter,
            vote_refs=vote_refs,
            meter=meter,
            progress=progress,
        )
    finally:
        kill_pool(pool, teacher_pool_name(cfg.run.name), numbered=True, group=group)
        cache.close()
    voted = sum(len(b) for b in ray.get(list(vote_refs)))
    if voted != len(examples):
        raise TeacherPhaseError(f"teacher phase: {voted} votes for {len(examples)} questions")
    return vote_refs, len(examples) - len(cached), len(cached), str(cache.path)


def _stream_batches(pool, todo, *, prompts, task, cache, voter, vote_refs, meter, progress) -> None:
    """Fan ``todo`` (batches of examples) out over the pool; cache and vote each batch as it completes.

    A batch whose actor died is sent again: at once to the next actor of the pool, and while that actor is
    still restarting (``ActorUnavailableError``) again after a growing pause, which is not counted as a
    failed attempt. Only completed batches are written, so a batch is never lost nor cached twice.
    """
    import ray
    from ray.exceptions import ActorUnavailableError, RayActorError

    from actors.pool import submit_chunks

    def submit(index: int, state: _BatchState) -> None:
        actor = pool[(index + state.deaths) % len(pool)]  # after a death: the next actor (itself if alone)
        pending[actor.sample.remote([prompts[ex.id] for ex in todo[index]])] = (index, state)

    refs = submit_chunks(pool, "sample", [([prompts[ex.id] for ex in batch],) for batch in todo])
    pending = {ref: (index, _BatchState()) for index, ref in enumerate(refs)}
    retries: list[tuple[float, int, _BatchState]] = []  # (due time, batch index, state)
    while pending or retries:
        now = time.monotonic()
        for due in [r for r in retries if r[0] <= now]:
            retries.remove(due)
            submit(due[1], due[2])
        if not pending:
            time.sleep(max(0.0, min(r[0] for r in retries) - time.monotonic()))
            continue
        timeout = max(0.0, min(r[0] for r in retries) - now) if retries else None
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
        if not ready:
            continue
        index, state = pending.pop(ready[0])
        batch = todo[index]
        where = _batch_name(index, batch)
        try:
            completions = ray.get(ready[0])
        except ActorUnavailableError as err:
            delay = state.unavailable(err, where)
            if state.waits == 1:
                progress(f"teacher: {where} waits for its restarting actor; resubmitting it when it is back")
            retries.append((time.monotonic() + delay, index, state))
            continue
        except RayActorError as err:
            state.died(err, where)
            progress(f"teacher: an actor died on {where} ({type(err).__name__}); resubmitting it")
            submit(index, state)
            continue
        # Cache first: once the voter has it the batch must be on disk, so a crash never samples it again.
        cache.append((ex.id, prompts[ex.id], c) for ex, c in zip(batch, completions, strict=True))
        samples = [(ex, parse_samples(task, ex, c)) for ex, c in zip(batch, completions, strict=True)]
        vote_refs[voter.add.remote(samples)] = len(batch)
        done, _ = ray.wait(list(vote_refs), num_returns=len(vote_refs), timeout=0)
        meter.add(len(batch), sampled=True, voted=sum(vote_refs[r] for r in done))


def _batch_name(index: int, batch: list[Example]) -> str:
    """``batch 3 (questions a, b, c and 29 more)``: what an error about a batch names."""
    ids = ", ".join(ex.id for ex in batch[:3])
    return f"batch {index} (questions {ids}{f' and {len(batch) - 3} more' if len(batch) > 3 else ''})"


@dataclass
class _BatchState:
    """How often a batch met a dead actor, and how long it has waited for restarting ones."""

    deaths: int = 0
    waits: int = 0
    waiting_since: float | None = None

    def died(self, err: Exception, where: str) -> None:
        self.deaths += 1
        if self.deaths >= MAX_BATCH_ATTEMPTS:
            last = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TeacherPhaseError(
                f"teacher phase: {where} met a dead teacher actor {self.deaths} times (too long a prompt, out of "
                f"memory?); last: {last}"
            ) from err

    def unavailable(self, err: Exception, where: str) -> float:
        """Seconds to wait before asking the restarting actor again (0.5 s doubling to 10 s)."""
        now = time.monotonic()
        self.waiting_since = self.waiting_since or now
        if now - self.waiting_since > RESTART_WAIT_S:
            raise TeacherPhaseError(
                f"teacher phase: {where}: no teacher actor came back within {RESTART_WAIT_S:.0f} s; last: {err}"
            ) from err
        self.waits += 1
        return min(10.0, 0.5 * 2 ** (self.waits - 1))
