"""The GPU paths, each printing its throughput: run with ``pytest -m gpu -s`` on a machine with CUDA (skipped
without one). The judge and the student sampler on a GPU, DeepSpeed ZeRO-2 and ZeRO-3 bf16 on CUDA, the vLLM teacher,
and a 2-iteration QCRD run with a T5-small-shaped random student. Their figures go in BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
ROOT = Path(__file__).resolve().parents[1]
# T5-small's shape (60M parameters), randomly initialised: no hub download.
T5_SMALL = ["student.model=null", "student.tiny.d_model=512", "student.tiny.num_layers=6", "student.tiny.num_heads=8",
            "student.tiny.d_ff=2048"]  # fmt: skip
QUESTIONS = [(f"q{i}", f"Tom has {i} apples. He buys 3 more. How many apples does Tom have?") for i in range(64)]


def t5_small_student(path: Path) -> str:
    from qcrd_ray.config import Config
    from qcrd_ray.models import build_student, build_tokenizer, save_student
    from qcrd_ray.typed_config import parse_overrides

    cfg = Config().replace(parse_overrides(T5_SMALL))
    tokenizer = build_tokenizer(cfg.student, [text for _, text in QUESTIONS] + ["3 + 4 = 7. So the answer is 7."])
    save_student(build_student(cfg.student, tokenizer), tokenizer, path)
    return str(path)


def test_the_student_sampler_decodes_on_the_gpu(tmp_path):
    from actors.student_sampler import StudentSampler
    from qcrd_ray.config import NegativesConfig

    snapshot = t5_small_student(tmp_path / "student")
    sampler = StudentSampler(use_gpu=True)
    started = time.perf_counter()
    out = sampler.sample(snapshot, QUESTIONS, NegativesConfig(max_new_tokens=64, batch_size=64), 0, 512)
    seconds = time.perf_counter() - started
    assert len(out) == len(QUESTIONS) and sampler.device == "cuda"
    print(f"\nsampler on {torch.cuda.get_device_name()}: {len(QUESTIONS) / seconds:.1f} questions/s (64 new tokens)")


def test_the_judge_scores_and_updates_on_the_gpu(tmp_path):
    from qcrd_ray.config import JudgeConfig
    from qcrd_ray.judge import QualityJudge

    snapshot = t5_small_student(tmp_path / "student")  # a tiny judge shares the student's tokenizer
    judge = QualityJudge(JudgeConfig(num_gpus=1, update_steps=5), snapshot, seed=0)
    assert next(judge.model.parameters()).is_cuda
    groups = [(q, ["3 + 4 = 7. So the answer is 7."], ["3 + 4 = 9. So the answer is 9."]) for _, q in QUESTIONS]
    judge.pretrain(groups)
    started = time.perf_counter()
    scores = judge.score([(q, r) for q, pos, neg in groups for r in (*pos, *neg)])
    seconds = time.perf_counter() - started
    assert len(scores) == 2 * len(groups) and all(0.0 <= s <= 1.0 for s in scores)
    judge.update(groups, 1.0)
    judge.save(str(tmp_path / "judge"))  # weights come back to the CPU for safetensors
    print(f"\njudge on {torch.cuda.get_device_name()}: {len(scores) / seconds:.0f} pairs scored/s")


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_zero_bf16_on_cuda_through_ray_train(ray_local, tmp_path, zero_stage):
    from test_student_train import dataset_loss, make_cfg, make_items, make_student
    from transformers import AutoModelForSeq2SeqLM

    from actors.student_train import train_student

    cfg = make_cfg(**{"train.use_gpu": True, "train.zero_stage": zero_stage, "train.precision": "bf16",
                      "train.steps_per_iteration": 8})  # fmt: skip
    items = make_items()
    init = make_student(cfg, items, tmp_path / "init")
    assert ray_local.cluster_resources().get("GPU", 0) >= 1, "Ray found no GPU although torch sees one"
    result = train_student(cfg, "qcrd", items, str(init), str(tmp_path / "student"), str(tmp_path / "ray"), seed=0)
    assert result["steps"] == 8 and result["loss_last"] < result["loss_first"]
    model = AutoModelForSeq2SeqLM.from_pretrained(result["student_dir"])  # gathered to fp32 on the CPU
    assert next(model.parameters()).dtype == torch.float32
    assert dataset_loss(result["student_dir"], items, "qcrd", cfg) < dataset_loss(init, items, "qcrd", cfg)
    print(f"\nZeRO-{zero_stage} bf16 QCRD step on {torch.cuda.get_device_name()}: {result['samples_per_s']:.1f} "
          "questions/s")  # fmt: skip


def test_the_vllm_teacher_on_the_gpu(builtin_teacher_dir):
    pytest.importorskip("vllm", reason="the vllm extra is not installed")
    from actors.teacher import VLLMBackend
    from qcrd_ray.config import TeacherConfig
    from qcrd_ray.tasks import get_task
    from qcrd_ray.toy import generate_split

    arith = get_task("arith")
    prompts = [arith.prompt(ex.input) for ex in generate_split("train", 256, seed=1)]
    backend = VLLMBackend(TeacherConfig(backend="vllm", model=str(builtin_teacher_dir), num_samples=5))
    try:
        started = time.perf_counter()
        out = backend.sample(prompts)
        seconds = time.perf_counter() - started
    finally:
        backend.close()
    parsed = sum(arith.parse_output(text).answer is not None for o in out for text in o) / (5 * len(prompts))
    assert parsed >= 0.8
    print(f"\nvLLM teacher on {torch.cuda.get_device_name()}: {5 * len(prompts) / seconds:.0f} samples/s")


def test_a_two_iteration_qcrd_run_with_a_t5_small_shaped_student(tmp_path):
    """The driver end to end with the student trained on the GPU (the sampler and judge stay on the CPU: a
    1-GPU machine has no second GPU for their placement group)."""
    sets = [f"run.output_dir={tmp_path / 'run'}", f"teacher.cache_dir={tmp_path / 'cache'}", "run.iterations=2",
            "train.use_gpu=true", "train.precision=bf16", "train.steps_per_iteration=50", "train.batch_size=32",
            "data.toy_train_size=256", "data.toy_eval_size=64", *T5_SMALL]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jobs.distill", *(a for s in sets for a in ("--set", s))], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "run" / "report.md").is_file()
    print(f"\nQCRD vs DSS vs fine-tuning, T5-small shape, 2 x 50 steps of 32: {time.perf_counter() - started:.0f} s")
