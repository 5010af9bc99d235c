"""The GPU paths, each printing its throughput: run with ``pytest -m gpu -s`` on a machine with CUDA (skipped
without one). The judge and the student sampler on a GPU, DeepSpeed ZeRO-2 and ZeRO-3 bf16 on CUDA, the vLLM teacher,
and a 2-iteration QCRD run with a T5-small-shaped random student. Their figures go in BENCHMARKS.md.

Each test also holds the GPU's output to the CPU's, the reference the rest of the suite checks, computed in the
same test by the same helper, within a tolerance the test states and explains (the last, a whole run, says why
it cannot).
"""

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
T5_SMALL = [
    "student.model=null",
    "student.tiny.d_model=512",
    "student.tiny.num_layers=6",
    "student.tiny.num_heads=8",
    "student.tiny.d_ff=2048",
]
QUESTIONS = [(f"q{i}", f"Tom has {i} apples. He buys 3 more. How many apples does Tom have?") for i in range(64)]
GOOD, SLIPPED = "3 + 4 = 7. So the answer is 7.", "3 + 4 = 9. So the answer is 9."
JUDGE_GROUPS = [(q, [GOOD], [SLIPPED]) for _, q in QUESTIONS]


def t5_small_student(path: Path) -> str:
    from qcrd_ray.config import Config
    from qcrd_ray.models import build_student, build_tokenizer, save_student
    from qcrd_ray.typed_config import parse_overrides

    cfg = Config().replace(parse_overrides(T5_SMALL))
    tokenizer = build_tokenizer(cfg.student, [text for _, text in QUESTIONS] + [GOOD])
    save_student(build_student(cfg.student, tokenizer), tokenizer, path)
    return str(path)


# ---------------------------------------------------------------------------------------------------------
# what each test runs on both devices (the CPU halves need no GPU)


def greedy_decodes(sampler, snapshot: str, examples: list) -> list[tuple[str, str]]:
    """A sampler's greedy (``predict:`` label, ``explain:`` rationale) of each example, as an evaluation decodes."""
    from qcrd_ray.config import EvalConfig

    out = sampler.decode_evaluation(snapshot, examples, EvalConfig(), max_input_length=512, explained=len(examples))
    return list(zip(out["predictions"], out["rationales"], strict=True))


def cpu_greedy_decodes(snapshot: str, examples: list) -> list[tuple[str, str]]:
    from actors.student_sampler import StudentSampler

    return greedy_decodes(StudentSampler(use_gpu=False), snapshot, examples)


def judge_figures(snapshot: str, num_gpus: float) -> dict:
    """A judge's scores of every (question, rationale) pair of ``JUDGE_GROUPS`` fresh, after pretraining and
    after an update, with the losses of both, on the GPU (``num_gpus`` 1) or the CPU (0)."""
    from qcrd_ray.config import JudgeConfig
    from qcrd_ray.judge import QualityJudge

    judge = QualityJudge(JudgeConfig(num_gpus=num_gpus, update_steps=5), snapshot, seed=0)
    pairs = [(q, r) for q, pos, neg in JUDGE_GROUPS for r in (*pos, *neg)]
    fresh = judge.score(pairs)
    pretrain = judge.pretrain(JUDGE_GROUPS)
    started = time.perf_counter()
    scores = judge.score(pairs)
    seconds = time.perf_counter() - started
    update = judge.update(JUDGE_GROUPS, 1.0)
    return {
        "judge": judge,
        "fresh": fresh,
        "pretrain_losses": pretrain["losses"],
        "scores": scores,
        "score_seconds": seconds,
        "update_losses": update["losses"],
        "updated": judge.score(pairs),
    }


def fit(cfg, items, init: Path, root: Path):
    """One QCRD iteration of ``cfg`` from ``init`` through Ray Train, seed 0: its result."""
    from actors.student_train import Stage, train_student

    return train_student(cfg, Stage("qcrd", 0, str(init), str(root / "student")), items, str(root / "ray"), seed=0)[-1]


def teacher_accuracy(backend, prompts: list[str], examples: list) -> tuple[float, float, float]:
    """A teacher backend's samples of ``prompts``: (share right, share parsed, seconds)."""
    from qcrd_ray.tasks import get_task

    arith = get_task("arith")
    started = time.perf_counter()
    out = backend.sample(prompts)
    seconds = time.perf_counter() - started
    answers = [arith.parse_output(text).answer for samples in out for text in samples]
    labels = [ex.label for ex, samples in zip(examples, out, strict=True) for _ in samples]
    right = sum(a is not None and arith.is_correct(a, label) for a, label in zip(answers, labels, strict=True))
    return right / len(answers), sum(a is not None for a in answers) / len(answers), seconds


def teacher_prompts(n: int = 256) -> tuple[list[str], list]:
    from qcrd_ray.tasks import get_task
    from qcrd_ray.toy import generate_split

    examples = generate_split("train", n, seed=1)
    return [get_task("arith").prompt(ex.input) for ex in examples], examples


def cpu_teacher_accuracy(teacher_dir: str, prompts: list[str], examples: list) -> tuple[float, float, float]:
    """The transformers backend's (fp32, on the CPU) 5 samples per prompt at the default's T = 1.0."""
    from actors.teacher import TransformersBackend
    from qcrd_ray.config import TeacherConfig

    return teacher_accuracy(TransformersBackend(TeacherConfig(model=teacher_dir, num_samples=5)), prompts, examples)


# ---------------------------------------------------------------------------------------------------------
# the tests


def test_the_student_sampler_decodes_on_the_gpu(tmp_path):
    from actors.student_sampler import StudentSampler
    from qcrd_ray.config import NegativesConfig
    from qcrd_ray.shipped_student import NAME, resolve_student
    from qcrd_ray.toy import generate_split

    snapshot = t5_small_student(tmp_path / "student")
    sampler = StudentSampler(use_gpu=True)
    started = time.perf_counter()
    out = sampler.sample(snapshot, QUESTIONS, NegativesConfig(max_new_tokens=64, batch_size=64), 0, 512)
    seconds = time.perf_counter() - started
    assert len(out) == len(QUESTIONS) and sampler.device == "cuda"
    print(f"\nsampler on {torch.cuda.get_device_name()}: {len(QUESTIONS) / seconds:.1f} questions/s (64 new tokens)")

    # Samples are drawn from CUDA's generator, not the CPU's, so they differ by design; greedy decoding is what
    # the two devices must agree on. The shipped pretrained student writes real answers and rationales (a
    # random one's near-uniform logits would tie more often). Both in fp32; a near tie between two tokens
    # (within float error) can flip one greedy choice and with it the rest of that output, so up to 10% of
    # the outputs may differ.
    pretrained = resolve_student(NAME)
    examples = generate_split("test", 64, seed=0)
    gpu, cpu = greedy_decodes(sampler, pretrained, examples), cpu_greedy_decodes(pretrained, examples)
    same = sum(g == c for g, c in zip(gpu, cpu, strict=True)) / len(examples)
    assert same >= 0.9, [(g, c) for g, c in zip(gpu, cpu, strict=True) if g != c][:5]


def test_the_judge_scores_and_updates_on_the_gpu(tmp_path):
    snapshot = t5_small_student(tmp_path / "student")  # a tiny judge shares the student's tokenizer
    gpu = judge_figures(snapshot, num_gpus=1)
    assert next(gpu["judge"].model.parameters()).is_cuda
    gpu["judge"].save(str(tmp_path / "judge"))  # weights come back to the CPU for safetensors
    print(f"\njudge on {torch.cuda.get_device_name()}: {len(gpu['scores']) / gpu['score_seconds']:.0f} pairs scored/s")

    # It learnt: after pretraining, every right rationale scores above its slipped one (CPU: 0.42-0.87 against
    # 0.13-0.33).
    assert all(good > slipped for good, slipped in zip(gpu["scores"][0::2], gpu["scores"][1::2], strict=True))

    # The same seed builds the same D on the CPU and moves it to the GPU; the judge has no dropout and its
    # batches and corruptions come from Python's generator, so both devices compute the same thing in fp32 up
    # to the order of float sums: the fresh D's scores agree to 1e-4. Training could compound those differences
    # over its 65 AdamW steps; on the CPU it does not (1 thread against 2 moves the trained D's scores and losses
    # by 1e-7), so the losses and the trained D's scores are held to 1e-3.
    cpu = judge_figures(snapshot, num_gpus=0)
    assert not next(cpu["judge"].model.parameters()).is_cuda
    assert gpu["fresh"] == pytest.approx(cpu["fresh"], abs=1e-4)
    for key in ("pretrain_losses", "scores", "update_losses", "updated"):
        assert gpu[key] == pytest.approx(cpu[key], abs=1e-3), key


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_zero_bf16_on_cuda_through_ray_train(ray_local, tmp_path, zero_stage):
    from transformers import AutoModelForSeq2SeqLM

    from tests.student_fixtures import dataset_loss, make_cfg, make_items, make_student

    cfg = make_cfg(
        **{
            "train.use_gpu": True,
            "train.zero_stage": zero_stage,
            "train.precision": "bf16",
            "train.steps_per_iteration": 8,
        }
    )
    items = make_items()
    init = make_student(cfg, items, tmp_path / "init")
    assert ray_local.cluster_resources().get("GPU", 0) >= 1, "Ray found no GPU although torch sees one"
    result = fit(cfg, items, init, tmp_path / "gpu")
    metrics = result.metrics
    assert metrics["steps"] == 8 and metrics["loss_last"] < metrics["loss_first"]
    model = AutoModelForSeq2SeqLM.from_pretrained(result.student_dir)  # gathered to fp32 on the CPU
    assert next(model.parameters()).dtype == torch.float32
    print(
        f"\nZeRO-{zero_stage} bf16 QCRD step on {torch.cuda.get_device_name()}: {metrics['samples_per_s']:.1f} "
        "questions/s"
    )

    # The same fit in fp32 on the CPU (ZeRO-0, the suite's default): same initial weights, same batches, no
    # dropout in the tiny student, so bf16's rounding is all that tells them apart. On the CPU, bf16 ZeRO-2
    # and ZeRO-3 against fp32 ZeRO-0 moved the first step's loss by 0.05% (5.3688 against 5.3662) and the
    # trained student's loss on the training items by 0.1% (3.423 against 3.419; 5.047 before training); a GPU
    # sums in another order, so 2% and 5% are held, well inside the 32% the training takes off.
    reference = fit(make_cfg(**{"train.steps_per_iteration": 8}), items, init, tmp_path / "cpu")
    assert metrics["loss_first"] == pytest.approx(reference.metrics["loss_first"], rel=0.02)
    trained = dataset_loss(result.student_dir, items, "qcrd", cfg)
    assert trained == pytest.approx(dataset_loss(reference.student_dir, items, "qcrd", cfg), rel=0.05)
    assert trained < dataset_loss(init, items, "qcrd", cfg)


def test_the_vllm_teacher_on_the_gpu(builtin_teacher_dir):
    pytest.importorskip("vllm", reason="the vllm extra is not installed")
    from actors.teacher import VLLMBackend
    from qcrd_ray.config import TeacherConfig

    prompts, examples = teacher_prompts()
    backend = VLLMBackend(TeacherConfig(backend="vllm", model=str(builtin_teacher_dir), num_samples=5))
    try:
        accuracy, parsed, seconds = teacher_accuracy(backend, prompts, examples)
    finally:
        backend.close()
    assert parsed >= 0.8
    print(f"\nvLLM teacher on {torch.cuda.get_device_name()}: {5 * len(prompts) / seconds:.0f} samples/s")

    # vLLM draws its samples with its own generator (and in its own precision), so they cannot equal the
    # transformers backend's one for one; what must agree is the distribution they come from. On the same 256
    # prompts, 5 samples each at T = 1.0, three independent draws on the CPU (teacher seeds 0, 1, 2) got 0.698,
    # 0.669 and 0.684 right, every sample parsed: 0.06 is about 4 standard deviations of a difference.
    cpu_accuracy, cpu_parsed, _ = cpu_teacher_accuracy(str(builtin_teacher_dir), prompts, examples)
    assert accuracy == pytest.approx(cpu_accuracy, abs=0.06)
    assert parsed == pytest.approx(cpu_parsed, abs=0.06)


def test_a_two_iteration_qcrd_run_with_a_t5_small_shaped_student(tmp_path):
    """The driver end to end with the student trained on the GPU (the sampler and judge stay on the CPU: a
    1-GPU machine has no second GPU for their placement group).

    Not compared with the CPU: the same run there (a 60M-parameter student, 3 methods x 100 steps of 32) takes
    longer than the GPU test's budget, and 100 steps of bf16 against fp32 leave no tolerance worth stating. Nor
    held above the floor: a random-init student learns nothing of the task in 100 steps (studies/README.md).
    Held instead: every method trained (its loss fell from the first iteration to the second)."""
    import json

    sets = [
        f"run.output_dir={tmp_path / 'run'}",
        f"teacher.cache_dir={tmp_path / 'cache'}",
        "run.iterations=2",
        "train.use_gpu=true",
        "train.precision=bf16",
        "train.steps_per_iteration=50",
        "train.batch_size=32",
        "data.toy_train_size=256",
        "data.toy_eval_size=64",
        *T5_SMALL,
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.distill", *(a for s in sets for a in ("--set", s))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "run" / "report.md").is_file()
    summaries = json.loads((tmp_path / "run" / "summary.json").read_text())
    (summary,) = summaries["summaries"] if isinstance(summaries, dict) else summaries
    for method in ("finetune", "dss", "qcrd"):
        losses = [h["loss"] for h in summary["methods"][method]["history"]]
        assert len(losses) == 2 and losses[1] < losses[0], (method, losses)
    print(f"\nQCRD vs DSS vs fine-tuning, T5-small shape, 2 x 50 steps of 32: {time.perf_counter() - started:.0f} s")
