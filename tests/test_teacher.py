"""Teacher backends (transformers, OpenAI-compatible HTTP), the actor pool, and the teacher phase's cache and
crash safety, on a real local Ray with real tiny models and real HTTP servers."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from actors.pool import kill_pool, submit_chunks
from actors.teacher import (
    OpenAIBackend,
    TeacherError,
    TransformersBackend,
    derive_seed,
    reserve_teachers,
    start_teachers,
    teacher_pool_name,
)
from jobs.teacher_phase import TeacherPhaseError, run_teacher_phase
from qcrd_ray.config import TeacherConfig, from_dict
from qcrd_ray.tasks import get_task
from qcrd_ray.toy import generate_split

ROOT = Path(__file__).resolve().parents[1]
ARITH = get_task("arith")
EXAMPLES = generate_split("train", 4, seed=5)
PROMPTS = [ARITH.prompt(ex.input) for ex in EXAMPLES]
SERVER_KEY = "sk-qcrd-test-server-3f9c1e7a"  # what the test server accepts
WRONG_KEY = "sk-qcrd-test-wrong-8b2d4c6e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, log_path: Path, timeout_s: float = 600.0):
    """``python -m jobs.serve_teacher`` in a subprocess on a free loopback port; returns (process, base URL)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QCRD_TEST_SERVER_KEY": SERVER_KEY}
    log = open(log_path, "w")  # noqa: SIM115 - the server writes to it until the fixture ends
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.serve_teacher",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--api-key-env",
            "QCRD_TEST_SERVER_KEY",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"teacher server did not come up: {log_path.read_text()[-3000:]}")


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def tiny_server(tiny_causal_lm, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    proc, url = start_server(str(tiny_causal_lm), log_path)
    yield url, log_path
    stop_server(proc)


def parse_rate(completions: list[list[str]]) -> float:
    flat = [ARITH.parse_output(text).answer for out in completions for text in out]
    return sum(a is not None for a in flat) / len(flat)


# -- transformers backend --------------------------------------------------------------------------------


def test_transformers_backend_gives_k_completions_reproducibly(tiny_causal_lm):
    cfg = TeacherConfig(model=str(tiny_causal_lm), num_samples=3, max_new_tokens=8, seed=1)
    backend = TransformersBackend(cfg)
    first = backend.sample(PROMPTS)
    assert len(first) == len(PROMPTS) and all(len(out) == 3 and all(isinstance(t, str) for t in out) for out in first)
    assert backend.sample(PROMPTS) == first  # a resampled batch is drawn the same way
    # batching never changes a sample: each prompt alone, or the batch reversed, draws what it drew beside the rest
    assert [backend.sample([p])[0] for p in PROMPTS] == first
    assert backend.sample(PROMPTS[::-1]) == first[::-1]
    assert any(len(set(out)) > 1 for out in first)  # K different samples, not one repeated
    other_seed = TransformersBackend(TeacherConfig(model=str(tiny_causal_lm), num_samples=3, max_new_tokens=8, seed=2))
    assert other_seed.sample(PROMPTS) != first
    greedy = TransformersBackend(
        TeacherConfig(model=str(tiny_causal_lm), num_samples=3, max_new_tokens=8, temperature=0.0)
    )
    assert all(len(set(out)) == 1 and len(out) == 3 for out in greedy.sample(PROMPTS))
    assert derive_seed(1, *PROMPTS) != derive_seed(1, *PROMPTS[:2]) and derive_seed(1, "a") == derive_seed(1, "a")


@pytest.mark.slow
def test_transformers_backend_builtin_teacher_is_parseable(builtin_teacher_dir):
    backend = TransformersBackend(TeacherConfig(model="builtin:arith", num_samples=3))
    out = backend.sample(PROMPTS)
    assert [len(o) for o in out] == [3] * len(PROMPTS)
    assert parse_rate(out) >= 0.8, out


# -- OpenAI-compatible backend against jobs.serve_teacher ------------------------------------------------


def test_openai_backend_completions_and_chat_give_k(tiny_server, monkeypatch):
    url, _ = tiny_server
    monkeypatch.setenv("QCRD_TEST_CLIENT_KEY", SERVER_KEY)
    for chat in (False, True):
        cfg = TeacherConfig(
            backend="openai",
            endpoint=url,
            chat=chat,
            api_key_env="QCRD_TEST_CLIENT_KEY",
            num_samples=3,
            max_new_tokens=8,
            max_concurrency=2,
        )
        backend = OpenAIBackend(cfg)
        out = backend.sample(PROMPTS)
        assert [len(o) for o in out] == [3] * len(PROMPTS)
        assert backend.sample(PROMPTS) == out  # seeded per prompt: the server draws the same samples again


def test_api_key_never_appears_in_errors_or_logs(tiny_server, monkeypatch, caplog):
    url, server_log = tiny_server
    monkeypatch.setenv("QCRD_TEST_CLIENT_KEY", WRONG_KEY)
    cfg = TeacherConfig(
        backend="openai", endpoint=url + "/v1", api_key_env="QCRD_TEST_CLIENT_KEY", num_samples=2, max_new_tokens=4
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(TeacherError, match=r"HTTP 401.*QCRD_TEST_CLIENT_KEY") as err:
        OpenAIBackend(cfg).sample(PROMPTS[:1])
    for secret in (WRONG_KEY, SERVER_KEY):
        assert secret not in str(err.value) and secret not in repr(err.value)
        assert secret not in caplog.text
        assert secret not in server_log.read_text()


@pytest.mark.slow
def test_openai_backend_builtin_teacher_is_parseable(builtin_teacher_dir, tmp_path, monkeypatch):
    proc, url = start_server(str(builtin_teacher_dir), tmp_path / "server.log")
    try:
        monkeypatch.setenv("QCRD_TEST_CLIENT_KEY", SERVER_KEY)
        cfg = TeacherConfig(backend="openai", endpoint=url, api_key_env="QCRD_TEST_CLIENT_KEY", num_samples=3)
        out = OpenAIBackend(cfg).sample(PROMPTS)
        assert [len(o) for o in out] == [3] * len(PROMPTS)
        assert parse_rate(out) >= 0.8, out
    finally:
        stop_server(proc)


# -- OpenAI backend against a real, misbehaving HTTP server ----------------------------------------------


@pytest.fixture
def flaky_server():
    """A real HTTP server on loopback that answers from a script of (status, number of choices) per request
    and echoes the Authorization header in its error bodies (as careless servers do)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    script: list[tuple[int, int]] = []
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            status, choices = script.pop(0) if script else (200, body["n"])
            if status == 200:
                payload = {"choices": [{"index": i, "text": f" sample {len(seen)}.{i}"} for i in range(choices)]}
            else:
                payload = {"error": f"busy; you sent {self.headers.get('Authorization')}"}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script, seen
    server.shutdown()
    server.server_close()


def openai_cfg(url: str, k: int = 3, **fields) -> TeacherConfig:
    fields = {"retry_backoff_s": 0.01, **fields}
    return TeacherConfig(backend="openai", endpoint=url, api_key_env="QCRD_TEST_CLIENT_KEY", num_samples=k, **fields)


def test_retries_429_and_5xx_then_succeeds(flaky_server, monkeypatch):
    url, script, seen = flaky_server
    monkeypatch.setenv("QCRD_TEST_CLIENT_KEY", SERVER_KEY)
    script += [(429, 0), (503, 0), (500, 0)]
    out = OpenAIBackend(openai_cfg(url)).sample(PROMPTS[:1])
    assert out == [[" sample 4.0", " sample 4.1", " sample 4.2"]]
    assert len(seen) == 4 and all(body["prompt"] == PROMPTS[0] and body["n"] == 3 for body in seen)


def test_gives_up_after_max_retries_without_leaking_the_key(flaky_server, monkeypatch, caplog):
    url, script, _ = flaky_server
    monkeypatch.setenv("QCRD_TEST_CLIENT_KEY", SERVER_KEY)
    script += [(503, 0)] * 3
    with caplog.at_level(logging.DEBUG), pytest.raises(TeacherError, match="still failing after 2 retries") as err:
        OpenAIBackend(openai_cfg(url, max_retries=2)).sample(PROMPTS[:1])
    assert "Bearer ***" in str(err.value)  # the echoed header arrives redacted
    assert SERVER_KEY not in str(err.value) and SERVER_KEY not in caplog.text


def test_a_client_error_is_not_retried(flaky_server):
    url, script, seen = flaky_server
    script += [(400, 0)]
    with pytest.raises(TeacherError, match="refused the request, HTTP 400"):
        OpenAIBackend(openai_cfg(url)).sample(PROMPTS[:1])
    assert len(seen) == 1


def test_an_endpoint_that_ignores_n_is_asked_for_the_rest(flaky_server):
    url, script, seen = flaky_server
    script += [(200, 1), (200, 1)]
    out = OpenAIBackend(openai_cfg(url)).sample(PROMPTS[:1])
    assert len(out[0]) == 3 and [body["n"] for body in seen] == [3, 2, 1]
    assert len({body["seed"] for body in seen}) == 3  # each round draws new samples


def test_connection_errors_are_retried_then_reported():
    with pytest.raises(TeacherError, match=r"still failing after 2 retries, last: ConnectError"):
        OpenAIBackend(openai_cfg(f"http://127.0.0.1:{free_port()}", max_retries=2)).sample(PROMPTS[:1])


def test_an_endpoint_that_never_answers_fails_within_its_timeouts():
    """An endpoint that accepts the connection and stays silent once meant 36 minutes of silence."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nothing ever reads or answers
        cfg = openai_cfg(f"http://127.0.0.1:{silent.getsockname()[1]}", read_timeout_s=0.3, max_retries=1)
        started = time.monotonic()
        with pytest.raises(TeacherError, match=r"still failing after 1 retries, last: ReadTimeout"):
            OpenAIBackend(cfg).sample(PROMPTS[:1])
    assert time.monotonic() - started < 30


def test_a_garbage_endpoint_stops_the_phase_with_the_share_and_examples(ray_local, flaky_server, tmp_path):
    """Every answer is "sample N.i": no sample parses, so the phase stops instead of training on fallbacks."""
    url, _, _ = flaky_server
    cfg = phase_cfg(tmp_path, Path("garbage-model"), "garbage", backend="openai", endpoint=url, min_parsed_share=0.5)
    with pytest.raises(
        TeacherPhaseError,
        match=r"0\.0% of 8 samples from garbage-model parse, below "
        r"teacher.min_parsed_share 50% .*for example 'sample \d\.\d'; 'sample .* delete it to sample them again",
    ):
        run_teacher_phase(cfg, generate_split("train", 4, seed=3), ARITH, progress=lambda line: None)


# -- the actor pool and the teacher phase on a real local Ray --------------------------------------------


def phase_cfg(tmp_path: Path, model: Path, name: str, **teacher):
    teacher = {
        "model": str(model),
        "num_samples": 2,
        "max_new_tokens": 16,
        "batch_size": 2,
        "cache_dir": str(tmp_path / "cache"),
        "min_parsed_share": 0.0,
        **teacher,
    }  # a random LM parses nothing
    return from_dict({"run": {"name": name}, "teacher": teacher})


def cached_ids(cache_path: str) -> Counter:
    return Counter(json.loads(line)["id"] for line in Path(cache_path).read_text().splitlines())


def test_pool_actors_are_named_and_fan_out_batches(ray_local, tiny_causal_lm, tmp_path):
    cfg = phase_cfg(tmp_path, tiny_causal_lm, "pool", num_actors=2).teacher
    reserved = reserve_teachers(cfg, "pool")
    pool = start_teachers(cfg, "pool", reserved)
    try:
        assert [ray_local.get_actor(f"pool/teacher_{i}") for i in range(2)]
        group = ray_local.util.get_placement_group("pool/teachers")  # the actors run in its two bundles
        assert group.bundle_specs == [{"CPU": 1.0}, {"CPU": 1.0}]
        refs = submit_chunks(pool, "sample", [(PROMPTS[:2],), (PROMPTS[2:3],), (PROMPTS[3:],)])
        results = ray_local.get(refs)
        assert [[len(c) for c in r] for r in results] == [[2, 2], [2], [2]]
        assert sorted(info["batches"] for info in ray_local.get([a.info.remote() for a in pool])) == [1, 2]
    finally:
        kill_pool(pool, teacher_pool_name("pool"), numbered=True, group=reserved)
    with pytest.raises(ValueError):
        ray_local.get_actor("pool/teacher_0")
    with pytest.raises(ValueError):
        ray_local.util.get_placement_group("pool/teachers")


@pytest.mark.slow  # waits for Ray to restart the killed actor (a model load): minutes on 2 busy cores
def test_killed_teacher_loses_and_duplicates_no_sample(ray_local, tiny_causal_lm, tmp_path):
    examples = generate_split("train", 16, seed=7)  # 8 batches of 2 on one actor
    cfg = phase_cfg(tmp_path, tiny_causal_lm, "kill", max_new_tokens=24)
    lines: list[str] = []
    kills: list[int] = []  # questions done when the actor was killed

    def progress(line: str) -> None:
        print(line, flush=True)
        lines.append(line)
        sampled = re.match(r"teacher: (\d+)/16 questions, (\d+) samples", line)
        if sampled and int(sampled.group(2)) > 0 and not kills:
            kills.append(int(sampled.group(1)))
            ray_local.kill(ray_local.get_actor("kill/teacher_0"), no_restart=False)  # Ray restarts it

    result = run_teacher_phase(cfg, examples, ARITH, progress=progress)
    assert kills and kills[0] < 16 and any("resubmitting" in line for line in lines), lines
    ids = {ex.id for ex in examples}  # the line names the batch by its questions
    assert any(
        re.search(r"batch \d+ \(questions (\S+), (\S+)\)", ln) and ln.split("questions ")[1].split(",")[0] in ids
        for ln in lines
        if "resubmitting" in ln
    ), lines
    assert result.num_sampled == 16 and result.num_cached == 0
    counts = cached_ids(result.cache_path)
    assert counts == Counter({ex.id: 1 for ex in examples})  # none lost, none written twice
    assert [v.example_id for v in result.votes] == [ex.id for ex in examples]
    assert result.stats["num_questions"] == 16 and result.stats["num_samples"] == 32


def test_rerun_with_the_cache_samples_nothing_and_resume_samples_the_rest(ray_local, tiny_causal_lm, tmp_path):
    examples = generate_split("train", 6, seed=8)
    cfg = phase_cfg(tmp_path, tiny_causal_lm, "rerun")
    first = run_teacher_phase(cfg, examples[:4], ARITH, progress=lambda line: None)  # a run cut short
    assert (first.num_sampled, first.num_cached) == (4, 0)
    lines: list[str] = []
    resumed = run_teacher_phase(cfg, examples, ARITH, progress=lines.append)
    assert (resumed.num_sampled, resumed.num_cached) == (2, 4)
    assert cached_ids(resumed.cache_path) == Counter({ex.id: 1 for ex in examples})
    assert resumed.votes[:4] == first.votes  # cached samples vote exactly as before
    size = Path(resumed.cache_path).stat().st_size
    lines.clear()
    again = run_teacher_phase(cfg, examples, ARITH, progress=lines.append)
    assert (again.num_sampled, again.num_cached) == (0, 6)
    assert any("nothing to sample" in line for line in lines) and not any("actor" in line for line in lines)
    assert Path(again.cache_path).stat().st_size == size and again.votes == resumed.votes
    assert again.stats["samples_per_second"] == 0.0


def test_a_pool_no_node_can_hold_fails_before_any_actor_starts(ray_local, tiny_causal_lm, tmp_path):
    from actors.placement import InfeasibleResources

    cfg = phase_cfg(tmp_path, tiny_causal_lm, "nowhere", resource="teacher_gpu").teacher
    with pytest.raises(InfeasibleResources, match=r"teacher: no node can hold the bundle .*'teacher_gpu': 1"):
        reserve_teachers(cfg, "nowhere")
    with pytest.raises(ValueError):
        ray_local.get_actor("nowhere/teacher_0")
