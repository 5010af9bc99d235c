"""The teacher LLM sampler: K completions per prompt from one of three backends, hosted by Ray actors.

Backends are chosen by ``teacher.backend`` and imported lazily, so a run pays only for the one it uses:

- ``transformers``: batched, left-padded ``generate`` with the KV cache (CPU or GPU);
- ``vllm``: a vLLM engine (continuous batching); this is the only module of the project that imports vllm;
- ``openai``: any OpenAI-compatible HTTP endpoint (hosted, or self-served with ``jobs.serve_teacher``).

Every backend answers ``sample(prompts) -> completions`` with exactly K strings per prompt, drawn with a seed
derived from ``teacher.seed`` and the prompt text, so a batch that is resampled after a crash is drawn again
the same way. ``reserve_teachers`` reserves their placement group and ``start_teachers`` starts
``teacher.num_actors`` actors named ``{run}/teacher_{i}`` in it (``actors.pool.start_pool``), which Ray restarts
when they die; the teacher phase (``jobs/teacher_phase.py``) hands batches out to them (``actors.pool``) and
ends them with ``actors.pool.kill_pool``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Protocol

import ray

from actors.placement import reserve
from actors.pool import start_pool
from qcrd_ray.config import TeacherConfig

log = logging.getLogger(__name__)

MAX_RESTARTS = 3  # a killed or crashed teacher comes back this many times before the phase gives up on it
RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx


class TeacherError(RuntimeError):
    """A backend could not produce the samples (bad endpoint answer, exhausted retries, wrong shape)."""


class TeacherBackend(Protocol):
    def sample(self, prompts: list[str]) -> list[list[str]]:
        """K completions (continuations only, no prompt) per prompt, in prompt order."""


def derive_seed(seed: int, *texts: str) -> int:
    """A 31-bit seed from the run's teacher seed and texts (a prompt, and for an endpoint its attempt)."""
    digest = hashlib.sha256("\x00".join([str(seed), *texts]).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def resolve_model(name: str) -> str:
    """A hub name or directory as given; ``builtin:<name>`` becomes the built-in teacher's directory."""
    if name.startswith("builtin:"):
        from qcrd_ray.builtin_teacher import ensure_builtin_teacher

        return str(ensure_builtin_teacher(name.split(":", 1)[1]))
    return name


def _check_shape(completions: list[list[str]], num_prompts: int, k: int, backend: str) -> list[list[str]]:
    if len(completions) != num_prompts or any(len(c) != k for c in completions):
        counts = [len(c) for c in completions]
        raise TeacherError(f"{backend} backend: expected {num_prompts} prompts x {k} completions, got {counts}")
    return completions


class TransformersBackend:
    """``AutoModelForCausalLM.generate`` with sampling, K rows per prompt, each with its own seed from the prompt
    (``qcrd_ray.row_sampling``), so that, as with vLLM, batching never changes a sample."""

    def __init__(self, cfg: TeacherConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        path = resolve_model(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:  # many causal LMs ship without one; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if cfg.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        dtype = "auto" if device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()

    def sample(self, prompts: list[str]) -> list[list[str]]:
        from qcrd_ray.models import generate

        cfg = self.cfg
        if not prompts:
            return []
        greedy = cfg.temperature == 0.0  # transformers refuses several return sequences without sampling
        outputs = generate(
            self.model,
            self.tokenizer,
            list(prompts),
            max_new_tokens=cfg.max_new_tokens,
            do_sample=not greedy,
            temperature=cfg.temperature if not greedy else 1.0,
            top_p=cfg.top_p,
            num_return_sequences=1 if greedy else cfg.num_samples,
            batch_size=len(prompts),
            prompt_seeds=None if greedy else [derive_seed(cfg.seed, prompt) for prompt in prompts],
            max_input_length=cfg.max_input_length,
        )
        if greedy:
            outputs = [out * cfg.num_samples for out in outputs]
        return _check_shape(outputs, len(prompts), cfg.num_samples, "transformers")


class VLLMBackend:
    """A vLLM engine; ``SamplingParams(n=K, seed=...)`` per prompt, so batching never changes a sample."""

    def __init__(self, cfg: TeacherConfig):
        from vllm import LLM, SamplingParams

        self.cfg = cfg
        self._params = SamplingParams
        self.llm = LLM(
            model=resolve_model(cfg.model),
            tensor_parallel_size=cfg.tensor_parallel_size,
            seed=cfg.seed,
            **cfg.vllm_engine_args,
        )
        context = self.llm.llm_engine.model_config.max_model_len
        self._input_limit = max(1, min(cfg.max_input_length, context - cfg.max_new_tokens))
        self._tokenizer = self.llm.get_tokenizer()

    def _bounded(self, prompt: str):
        """The prompt, or the last ``_input_limit`` of its tokens when it is longer (vLLM would refuse it)."""
        ids = self._tokenizer(prompt)["input_ids"]
        return prompt if len(ids) <= self._input_limit else {"prompt_token_ids": ids[-self._input_limit :]}

    def sample(self, prompts: list[str]) -> list[list[str]]:
        cfg = self.cfg
        if not prompts:
            return []
        params = [
            self._params(
                n=cfg.num_samples,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_tokens=cfg.max_new_tokens,
                seed=derive_seed(cfg.seed, prompt),
            )
            for prompt in prompts
        ]
        results = self.llm.generate([self._bounded(p) for p in prompts], params, use_tqdm=False)
        outputs = [[c.text for c in sorted(r.outputs, key=lambda c: c.index)] for r in results]
        return _check_shape(outputs, len(prompts), cfg.num_samples, "vllm")

    def close(self) -> None:
        """Stop the engine and its engine-core process now, not whenever the garbage collector gets to it."""
        self.llm.llm_engine.engine_core.shutdown()


class OpenAIBackend:
    """An OpenAI-compatible endpoint: ``/v1/completions`` (or ``/v1/chat/completions`` when ``teacher.chat``),
    ``n = K`` per request, at most ``teacher.max_concurrency`` requests in flight per actor.

    429, 5xx, connection errors and timeouts are retried ``teacher.max_retries`` times with doubling backoff
    from ``teacher.retry_backoff_s`` (``Retry-After`` is honoured); every wait is logged. The API
    key comes from the environment variable named ``teacher.api_key_env`` and never appears in a log line or
    an error message. An endpoint that returns fewer than n choices is asked again for the rest.
    """

    def __init__(self, cfg: TeacherConfig):
        import httpx

        if not cfg.endpoint:
            raise TeacherError("openai backend: teacher.endpoint is not set")
        self.cfg = cfg
        self.max_retries = cfg.max_retries
        self.backoff_s = cfg.retry_backoff_s
        base = cfg.endpoint.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"  # accept the endpoint with or without /v1
        self.url = base + ("/chat/completions" if cfg.chat else "/completions")
        self._key = os.environ.get(cfg.api_key_env) or None
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        limits = httpx.Limits(max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency)
        timeout = httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s)
        self.client = httpx.Client(headers=headers, timeout=timeout, limits=limits)
        self._retryable = (httpx.TransportError,)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def sample(self, prompts: list[str]) -> list[list[str]]:
        from concurrent.futures import ThreadPoolExecutor

        if not prompts:
            return []
        workers = min(self.cfg.max_concurrency, len(prompts))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher-http") as pool:
            outputs = list(pool.map(self._sample_one, prompts))
        return _check_shape(outputs, len(prompts), self.cfg.num_samples, "openai")

    def _sample_one(self, prompt: str) -> list[str]:
        cfg = self.cfg
        texts: list[str] = []
        for attempt in range(cfg.num_samples):  # each round asks for what is still missing
            if len(texts) >= cfg.num_samples:
                break
            body = {
                "model": cfg.model,
                "n": cfg.num_samples - len(texts),
                "temperature": cfg.temperature,
                "top_p": cfg.top_p,
                "max_tokens": cfg.max_new_tokens,
                "seed": derive_seed(cfg.seed, prompt, str(attempt)),
            }
            if cfg.chat:
                body["messages"] = [{"role": "user", "content": prompt}]
            else:
                body["prompt"] = prompt
            texts += self._choices(self._post(body))
        if len(texts) < cfg.num_samples:
            raise TeacherError(f"openai backend: {self.url} returned {len(texts)} of {cfg.num_samples} completions")
        return texts[: cfg.num_samples]

    def _choices(self, answer: dict) -> list[str]:
        try:
            choices = sorted(answer["choices"], key=lambda c: c.get("index", 0))
            if self.cfg.chat:
                return [c["message"]["content"] or "" for c in choices]
            return [c["text"] for c in choices]
        except (KeyError, TypeError, AttributeError) as err:
            raise TeacherError(f"openai backend: {self.url} answered without choices ({err!r})") from None

    def _post(self, body: dict) -> dict:
        """POST with retries; returns the decoded JSON answer."""
        for attempt in range(self.max_retries + 1):
            delay = self.backoff_s * 2**attempt
            try:
                response = self.client.post(self.url, json=body)
            except self._retryable as err:
                problem = f"{type(err).__name__}: {self._redact(str(err))}"
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise TeacherError(f"openai backend: {self.url} answered with non-JSON text") from None
                problem = f"HTTP {response.status_code}: {self._redact(response.text[:300])}"
                if response.status_code not in RETRY_STATUS and response.status_code < 500:
                    hint = f" (is ${self.cfg.api_key_env} set?)" if response.status_code in (401, 403) else ""
                    raise TeacherError(f"openai backend: {self.url} refused the request, {problem}{hint}")
                delay = max(delay, _retry_after(response.headers.get("retry-after")))
            if attempt == self.max_retries:
                break
            log.warning(
                "teacher endpoint %s: %s; retry %d/%d in %.1f s",
                self.url,
                problem,
                attempt + 1,
                self.max_retries,
                delay,
            )
            time.sleep(min(delay, 60.0))
        raise TeacherError(
            f"openai backend: {self.url} still failing after {self.max_retries} retries, last: {problem}"
        )

    def close(self) -> None:
        self.client.close()


def _retry_after(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:  # an HTTP date: fall back to our own backoff
        return 0.0


BACKENDS = {"transformers": TransformersBackend, "vllm": VLLMBackend, "openai": OpenAIBackend}


def make_backend(cfg: TeacherConfig) -> TeacherBackend:
    """The backend named by ``cfg.backend`` (``dataset`` has none: it samples nothing)."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"teacher.backend: {cfg.backend!r} has no sampler (expected one of {', '.join(BACKENDS)})")
    return BACKENDS[cfg.backend](cfg)


class Teacher:
    """What a teacher actor holds: one backend, and a count of the batches it served."""

    def __init__(self, cfg: TeacherConfig):
        self.backend = make_backend(cfg)
        self.batches = 0

    def sample(self, prompts: Sequence[str]) -> list[list[str]]:
        """K completions per prompt: ``len(prompts)`` lists of K strings."""
        out = self.backend.sample(list(prompts))
        self.batches += 1
        return out

    def info(self) -> dict:
        """The process id (tests kill it) and how many batches this incarnation served."""
        return {"pid": os.getpid(), "batches": self.batches}


TeacherActor = ray.remote(Teacher)
TeacherActor.__doc__ = "Ray actor around ``Teacher``; ``start_teachers`` names them f'{run}/teacher_{i}'."


def actor_resources(cfg: TeacherConfig) -> dict[str, float]:
    """One teacher actor's request, as a placement bundle (for the feasibility check)."""
    bundle = {"CPU": 1.0}
    if cfg.num_gpus:
        bundle["GPU"] = float(cfg.num_gpus)
    if cfg.resource:
        bundle[cfg.resource] = 1.0
    return bundle


def pool_group_name(run_name: str) -> str:
    return f"{run_name}/teachers"


def teacher_pool_name(run_name: str) -> str:
    """The teacher pool's name for ``actors.pool``: a numbered pool, its replicas ``{run_name}/teacher_{i}``."""
    return f"{run_name}/teacher"


def reserve_teachers(
    cfg: TeacherConfig, run_name: str, *, placement_timeout_s: float = 600.0, autoscaling: bool = False
):
    """The teacher pool's placement group ``{run_name}/teachers``, ready: one bundle per actor (one CPU,
    ``cfg.num_gpus`` GPUs, one unit of ``cfg.resource`` when set), reserved after checking the config and that
    some node can ever hold a bundle."""
    if cfg.backend not in BACKENDS:
        raise ValueError(
            f"teacher.backend: {cfg.backend!r} has no sampler actor (expected one of {', '.join(BACKENDS)})"
        )
    if cfg.backend == "vllm" and cfg.tensor_parallel_size > 1 and cfg.num_gpus < cfg.tensor_parallel_size:
        # The engine's workers use the GPUs Ray gives this actor: it must hold all of them.
        raise ValueError(
            f"teacher.num_gpus: expected >= teacher.tensor_parallel_size ({cfg.tensor_parallel_size}), got {cfg.num_gpus}"
        )
    bundle = actor_resources(cfg)
    return reserve(
        "teacher",
        [bundle] * cfg.num_actors,
        timeout_s=placement_timeout_s,
        autoscaling=autoscaling,
        name=pool_group_name(run_name),
    )


def start_teachers(cfg: TeacherConfig, run_name: str, group) -> list:
    """``cfg.num_actors`` teacher actors named ``{run_name}/teacher_{i}`` (in the caller's namespace), actor i in
    bundle i of ``group`` (``reserve_teachers``): ``actors.pool.start_pool``; end them with
    ``actors.pool.kill_pool(pool, teacher_pool_name(run_name), numbered=True, group=group)``.

    The processes an actor starts run in its bundle too (vLLM's tensor-parallel workers share the actor's
    GPUs). Ray restarts a dead actor in its bundle up to ``MAX_RESTARTS`` times; its lost call is not retried
    by Ray but resubmitted by the phase, which knows which batch it was. Models load in the background: the
    first call waits for them.
    """
    options = {"num_cpus": 1, "num_gpus": cfg.num_gpus, "max_restarts": MAX_RESTARTS, "max_task_retries": 0}
    if cfg.resource:
        options["resources"] = {cfg.resource: actor_resources(cfg)[cfg.resource]}
    return start_pool(
        TeacherActor, teacher_pool_name(run_name), cfg.num_actors, group, 0, cfg, numbered=True, **options
    )
