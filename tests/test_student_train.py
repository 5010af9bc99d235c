"""Student training through Ray Train + DeepSpeed on CPU: the loss, the loop's pieces, and real fits.

The fits run a real local Ray on 127.0.0.1 with a tiny T5 (and a tiny Llama) whose tokenizer is trained on
the test's own texts. Each fit costs Ray Train's fixed ~20 s, so one fit (the 1-worker QCRD iteration) is
shared by the fast tests and the other fits are marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actors.student_train import Stage, deepspeed_config, train_student
from qcrd_ray.config import Config
from qcrd_ray.methods import student_loss
from qcrd_ray.records import FitResult, TrainItem
from qcrd_ray.student_iteration import Slot, train_iteration
from qcrd_ray.student_loss import _split_slots


def make_items() -> list[TrainItem]:
    """Eight arithmetic questions with ragged positives / negatives (one question has no positive)."""
    items = []
    for i, (a, b) in enumerate([(3, 4), (2, 5), (6, 1), (4, 4), (7, 2), (1, 8), (5, 3), (2, 2)]):
        good = [f"{a} plus {b} makes {a + b}", f"adding {b} to {a} gives {a + b}"][: 1 + i % 2]
        bad = [f"{a} plus {b} makes {a + b + 2}", f"{a} times {b} is {a * b}"][: i % 3]
        if i == 7:
            good = []
        items.append(
            TrainItem(
                id=f"q{i}",
                input=f"what is {a} plus {b}?",
                label=str(a + b),
                positives=tuple(good),
                positive_scores=tuple(0.9 - 0.2 * j for j in range(len(good))),
                negatives=tuple(bad),
                negative_scores=tuple(0.1 + 0.2 * j for j in range(len(bad))),
            )
        )
    return items


def make_cfg(**overrides) -> Config:
    base = {
        "run.name": "st",
        "student.model": None,
        "train.steps_per_iteration": 6,
        "train.batch_size": 4,
        "train.lr": 3e-3,
        "student.max_input_length": 32,
        "student.max_target_length": 24,
        "student.tiny.d_model": 32,
        "student.tiny.d_ff": 64,
        "student.tiny.num_layers": 1,
        "student.tiny.num_heads": 2,
    }
    return Config().replace({**base, **overrides})


def make_student(cfg: Config, items: list[TrainItem], path: Path, seed: int = 0) -> Path:
    from qcrd_ray.models import build_student, build_tokenizer, save_student
    from qcrd_ray.tasks import EXPLAIN, PREDICT

    texts = [PREDICT + it.input for it in items] + [EXPLAIN + it.input for it in items]
    texts += [it.label for it in items] + [t for it in items for t in (*it.positives, *it.negatives)]
    tokenizer = build_tokenizer(cfg.student, texts)
    save_student(build_student(cfg.student, tokenizer, seed=seed), tokenizer, path)
    return path


def weights(student_dir: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(student_dir) / "model.safetensors"))


def flat(result: FitResult) -> dict:
    """A stage's result as one mapping: its metrics, student_dir and checkpoint."""
    return {**result.metrics, "student_dir": result.student_dir, "checkpoint": result.checkpoint}


@torch.no_grad()
def dataset_loss(student_dir: str | Path, items: list[TrainItem], method: str, cfg: Config) -> float:
    from qcrd_ray.models import load_student

    model, tokenizer = load_student(student_dir)
    model.eval()
    return student_loss(model, tokenizer, items, method, cfg)[1]["loss"]


# ---------------------------------------------------------------------------------------------------------
# the loss and the loop's pieces, without Ray


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    from qcrd_ray.models import load_student

    cfg, items = make_cfg(), make_items()
    return (cfg, items, *load_student(make_student(cfg, items, tmp_path_factory.mktemp("t5") / "student")))


def test_split_slots_puts_positives_then_negatives_with_masks_and_scores():
    items = make_items()[:4]  # positives 1, 2, 1, 2; negatives 0, 1, 2, 0
    ce = torch.arange(4 * 4, dtype=torch.float32).view(4, 4)  # [B, R], R = the widest 1 + 2 of item 2
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    pos_ce, pos_mask, pos_s, neg_ce, neg_mask, neg_s = _split_slots(items, ce, mask)
    assert pos_mask.tolist() == [[True, False], [True, True], [True, False], [True, True]]
    assert neg_mask.tolist() == [[False, False], [True, False], [True, True], [False, False]]
    assert pos_ce[1].tolist() == [4.0, 5.0] and neg_ce[1, 0] == 6.0 and neg_ce[2].tolist() == [9.0, 10.0]
    assert pos_s[1].tolist() == pytest.approx([0.9, 0.7]) and neg_s[2].tolist() == pytest.approx([0.1, 0.3])


def fast_and_full(model, tokenizer, items, cfg):
    """QCRD's loss, its parts and its gradient, the fast way (``choose_first``) and through every rationale."""
    model.eval()  # no dropout: both ways see one network
    results = []
    for choose_first in (True, False):
        model.zero_grad(set_to_none=True)
        loss, parts = student_loss(model, tokenizer, items, "qcrd", cfg, choose_first=choose_first)
        loss.backward()
        results.append((loss.item(), parts, [p.grad.clone() for p in model.parameters()]))
    return results


def assert_same_step(fast, full):
    (fast_loss, fast_parts, fast_grads), (full_loss, full_parts, full_grads) = fast, full
    assert fast_loss == pytest.approx(full_loss, rel=1e-5)
    assert fast_parts["negative_term_active"] == full_parts["negative_term_active"]
    for key in ("ce_chosen_positive", "ce_chosen_negative", "weight_negative"):
        assert fast_parts[key] == pytest.approx(full_parts[key], rel=1e-5)
    for a, b in zip(fast_grads, full_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("aggregation", ["minmax", "maxmin"])
def test_choosing_without_a_gradient_gives_the_same_loss_and_gradient(t5, aggregation):
    """QCRD's fast path (pick the chosen rationales under no_grad, backpropagate through them alone) is the
    full computation's loss and gradient; delta is large so that every negative pushes."""
    cfg, items, model, tokenizer = t5
    fast, full = fast_and_full(
        model, tokenizer, items, cfg.replace({"loss.aggregation": aggregation, "loss.delta": 100.0})
    )
    assert_same_step(fast, full)
    assert fast[1]["negative_term_active"] == 1.0


@torch.no_grad()
def test_negatives_past_the_margin_skip_the_backward_and_change_nothing(t5):
    """With delta between the chosen negatives' CEs, some negative terms are silent: the fast path leaves
    those negatives out of its differentiable pass, and the loss, figures and gradient stay the same."""
    from qcrd_ray.scoring import encode_batch, rationale_ce
    from qcrd_ray.tasks import EXPLAIN

    cfg, items, model, tokenizer = t5
    model.eval()
    enc = encode_batch(
        tokenizer,
        [EXPLAIN + it.input for it in items],
        [list(it.negatives) for it in items],
        max_input=cfg.student.max_input_length,
        max_target=cfg.student.max_target_length,
        causal=False,
    )
    ce = rationale_ce(model, enc).masked_fill(~enc["rationale_mask"], float("-inf"))
    chosen = sorted(c for c in ce.max(dim=1).values.tolist() if c > float("-inf"))  # minmax: the largest CE
    delta = (chosen[1] + chosen[2]) / 2  # two of the five chosen negatives push, three are silent
    with torch.enable_grad():
        fast, full = fast_and_full(model, tokenizer, items, cfg.replace({"loss.delta": delta}))
    assert_same_step(fast, full)
    assert fast[1]["negative_term_active"] == pytest.approx(2 / 5)


def test_qcrd_with_one_positive_scored_one_and_beta_zero_is_exactly_dss(t5):
    cfg, items, model, tokenizer = t5
    items = [
        TrainItem(
            it.id,
            it.input,
            it.label,
            it.positives[:1],
            (1.0,) * len(it.positives[:1]),
            it.negatives,
            it.negative_scores,
        )
        for it in items
    ]
    a = 0.3
    qcrd_cfg = cfg.replace({"loss.beta": 0.0, "loss.alpha_pred": a, "loss.alpha_cl": 1 - a})
    dss_cfg = cfg.replace({"loss.dss_alpha": a})
    model.eval()
    qcrd, qcrd_parts = student_loss(model, tokenizer, items, "qcrd", qcrd_cfg)
    dss, dss_parts = student_loss(model, tokenizer, items, "dss", dss_cfg)
    assert qcrd.item() == pytest.approx(dss.item(), rel=1e-6)
    assert qcrd_parts["loss_cl"] == pytest.approx(dss_parts["loss_rationale"], rel=1e-6)
    assert qcrd_parts["ce_chosen_negative"] > 0  # negatives were scored, only beta = 0 silenced them


def test_contrast_pushes_negatives_and_finetune_sees_only_labels(t5):
    cfg, items, model, tokenizer = t5
    model.eval()
    plain = student_loss(model, tokenizer, items, "qcrd", cfg.replace({"loss.beta": 0.0}))[0]
    # Every negative sits inside a margin of 100, so each adds -beta * (1 - s) * (l - delta) > 0.
    pushed = student_loss(model, tokenizer, items, "qcrd", cfg.replace({"loss.beta": 1.0, "loss.delta": 100.0}))[0]
    assert pushed.item() > plain.item() + 1.0
    loss, parts = student_loss(model, tokenizer, items, "finetune", cfg)
    assert set(parts) == {"loss", "loss_pred"} and parts["loss"] == pytest.approx(parts["loss_pred"])
    model.zero_grad()
    loss.backward()
    assert model.shared.weight.grad is not None and model.shared.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="method must be one of"):
        student_loss(model, tokenizer, items, "distill", cfg)


@pytest.fixture(scope="module")
def single_rank_process_group():
    """A gloo process group of one rank on 127.0.0.1, what a 1-worker Ray Train fit gives its worker. One for
    the module: DeepSpeed keeps the groups it derives from the first, so a second one breaks its engines."""
    import os
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_a_non_finite_loss_stops_the_iteration_naming_step_and_parts(tmp_path, single_rank_process_group):
    """A NaN never reaches the weights or a report: the iteration stops at the first non-finite loss."""
    from actors.student_train import build_engine
    from qcrd_ray.models import load_student

    cfg, items = make_cfg(), make_items()
    model, tokenizer = load_student(make_student(cfg, items, tmp_path / "student"))
    with torch.no_grad():
        model.shared.weight.fill_(float("nan"))
    engine = build_engine(model, cfg.train, 1)
    with pytest.raises(FloatingPointError, match=r"dss iteration 3, step 1: the loss is not finite \(loss_pred nan"):
        train_iteration(engine, tokenizer, items, cfg, Slot("dss", seed=0, iteration=2, steps=2))


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_the_learning_rate_decays_linearly_over_the_run_on_a_deepspeed_engine(
    tmp_path, zero_stage, single_rank_process_group
):
    """Iteration 2 of 2, 2 steps each: its steps run at lr * (1 - 2/4) and lr * (1 - 3/4), under any ZeRO stage."""
    from actors.student_train import build_engine
    from qcrd_ray.models import load_student

    cfg = make_cfg(**{"run.iterations": 2, "train.zero_stage": zero_stage, "train.warmup_ratio": 0.0})
    items = make_items()
    model, tokenizer = load_student(make_student(cfg, items, tmp_path / "student"))
    engine = build_engine(model, cfg.train, 1)
    seen = []
    step = engine.step
    engine.step = lambda: (seen.append(engine.optimizer.param_groups[0]["lr"]), step())
    train_iteration(engine, tokenizer, items, cfg, Slot("dss", seed=0, iteration=1, steps=2))
    assert seen == pytest.approx([3e-3 * 0.5, 3e-3 * 0.25])


def test_deepspeed_config_follows_the_train_section():
    cfg = make_cfg(**{"train.batch_size": 8, "train.num_workers": 2, "train.zero_stage": 2, "train.precision": "bf16"})
    ds = deepspeed_config(cfg.train, world_size=2)
    assert ds["train_micro_batch_size_per_gpu"] == 4 and ds["train_batch_size"] == 8
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"] and not ds["fp16"]["enabled"]
    assert ds["optimizer"]["params"] == {"lr": 3e-3, "weight_decay": 0.0, "torch_adam": True}
    assert ds["gradient_clipping"] == 1.0


def test_train_student_rejects_bad_input_before_starting(tmp_path):
    cfg, items = make_cfg(), make_items()
    args = {"storage_path": str(tmp_path), "seed": 0}

    def stage(method: str, init: str) -> Stage:
        return Stage(method, 0, init, str(tmp_path / "out"))

    with pytest.raises(FileNotFoundError, match="init_dir"):
        train_student(cfg, stage("qcrd", str(tmp_path / "nothing")), items, **args)
    init = make_student(cfg, items, tmp_path / "init")
    with pytest.raises(ValueError, match="method must be one of"):
        train_student(cfg, stage("sft", str(init)), items, **args)
    bad = [TrainItem("x", "q", "1", ("r",), (0.5, 0.5))]
    with pytest.raises(ValueError, match="item 'x' has 1 positives"):
        train_student(cfg, stage("qcrd", str(init)), bad, **args)
    with pytest.raises(ValueError, match="num_workers=2"):
        train_student(make_cfg(**{"train.num_workers": 2}), stage("qcrd", str(init)), items[:1], **args)


# ---------------------------------------------------------------------------------------------------------
# real fits: Ray Train + DeepSpeed on CPU


@pytest.fixture(scope="module")
def ray_session(_ray_session):
    """The session's local Ray from tests/conftest.py (started again if another module shut it down)."""
    from conftest import _init_ray

    if not _ray_session.is_initialized():
        _init_ray()
    return _ray_session


@pytest.fixture(scope="module")
def qcrd_fit(ray_session, tmp_path_factory):
    """One QCRD iteration handed to a streaming fit (as the driver does), 1 worker, ZeRO-0 fp32: the fit the
    fast tests share."""
    from actors.student_train import StreamingFit

    root = tmp_path_factory.mktemp("qcrd_fit")
    cfg, items = make_cfg(), make_items()
    init = make_student(cfg, items, root / "init")
    with StreamingFit(cfg, 0, str(root / "ray")) as fit:
        result = fit.train(Stage("qcrd", 0, str(init), str(root / "snapshots")), items)
    return cfg, items, init, root, flat(result)


def test_one_qcrd_iteration_trains_saves_a_student_and_a_checkpoint(qcrd_fit):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    cfg, items, init, root, result = qcrd_fit
    assert result["steps"] == 6 and result["samples"] == 24 and result["iteration"] == 0
    assert result["samples_per_s"] > 0 and result["seconds"] > 0 and result["setup_seconds"] > 0
    assert {"loss", "loss_pred", "loss_cl", "negative_term_active"} <= set(result) and "loss_rationale" not in result
    assert result["loss_last"] < result["loss_first"]
    assert result["student_dir"] == str(root / "snapshots" / "iter_0001")
    # The saved student loads with one line and beats the initial one on the training data.
    model = AutoModelForSeq2SeqLM.from_pretrained(result["student_dir"])
    assert AutoTokenizer.from_pretrained(result["student_dir"]).pad_token == "<pad>"
    assert next(model.parameters()).dtype == torch.float32
    assert dataset_loss(result["student_dir"], items, "qcrd", cfg) < dataset_loss(init, items, "qcrd", cfg) - 0.1
    changed = [k for k, v in weights(init).items() if not torch.equal(v, weights(result["student_dir"])[k])]
    assert changed
    # The DeepSpeed checkpoint (weights + Adam state) and the loop's state sit in the reported checkpoint.
    ckpt = Path(result["checkpoint"])
    assert (ckpt / "deepspeed" / "latest").read_text() == "iter_0001"
    assert (ckpt / "deepspeed" / "iter_0001" / "mp_rank_00_model_states.pt").is_file()
    state = json.loads((ckpt / "qcrd_train_state.json").read_text())
    assert {k: state[k] for k in ("completed", "method", "checkpoint")} == {
        "completed": 1,
        "method": "qcrd",
        "checkpoint": ckpt.name,
    }
    assert state["metrics"]["steps"] == 6  # what a restarted worker hands the driver if the feed never got it


@pytest.mark.slow
def test_methods_share_a_fit_and_adam_state_carries_across_fits(qcrd_fit):
    """A fit that trains fine-tuning, then two QCRD iterations == the fixture's QCRD iteration (a method change
    starts afresh from its init_dir) + a second fit resumed from its checkpoint (Adam's moments carry over)."""
    from actors.student_train import StreamingFit

    cfg, items, init, root, first = qcrd_fit
    with StreamingFit(cfg, 0, str(root / "ray_both")) as fit:
        tuned = flat(fit.train(Stage("finetune", 0, str(init), str(root / "finetune")), items))
        both = [flat(fit.train(Stage("qcrd", t, str(init), str(root / "both")), items)) for t in range(2)]
    assert "worker_start_seconds" in tuned and "worker_start_seconds" not in both[0] and "setup_seconds" in both[0]
    assert [h["iteration"] for h in both] == [0, 1] and both[1]["student_dir"] == str(root / "both" / "iter_0002")
    one = weights(both[0]["student_dir"])
    assert all(torch.equal(v, weights(first["student_dir"])[k]) for k, v in one.items())  # same seed, same weights
    resumed = Stage("qcrd", 1, first["student_dir"], str(root / "second"), optimizer_state=first["checkpoint"])
    second = flat(train_student(cfg, resumed, items, str(root / "ray_second"), seed=0)[-1])
    two = weights(second["student_dir"])
    assert all(torch.equal(v, weights(both[1]["student_dir"])[k]) for k, v in two.items())
    assert not all(torch.equal(v, one[k]) for k, v in two.items())  # the second iteration did train


@pytest.mark.slow
def test_two_workers_zero2_dss_runs_every_iteration_in_one_fit(ray_session, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    cfg = make_cfg(**{"train.num_workers": 2, "train.zero_stage": 2, "train.steps_per_iteration": 3})
    items = make_items()
    init = make_student(cfg, items, tmp_path / "init")
    stages = train_student(
        cfg, Stage("dss", 0, str(init), str(tmp_path / "students")), items, str(tmp_path / "ray"), seed=1, iterations=2
    )
    result = {**flat(stages[-1]), "iterations": [flat(h) for h in stages]}
    assert [Path(h["student_dir"]).name for h in result["iterations"]] == ["iter_0001", "iter_0002"]
    assert "loss_rationale" in result and "loss_cl" not in result and result["samples"] == 12
    for h in result["iterations"]:
        AutoModelForSeq2SeqLM.from_pretrained(h["student_dir"])
    shards = sorted(p.name for p in (Path(result["checkpoint"]) / "deepspeed" / "iter_0002").iterdir())
    assert [s for s in shards if "optim_states" in s] == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    assert dataset_loss(result["student_dir"], items, "dss", cfg) < dataset_loss(init, items, "dss", cfg)


@pytest.mark.slow
def test_causal_student_trains_under_zero3_bf16_and_finetune_runs(ray_session, tmp_path):
    from transformers import AutoModelForCausalLM

    cfg = make_cfg(**{"student.architecture": "causal", "train.zero_stage": 3, "train.precision": "bf16"})
    items = make_items()
    init = make_student(cfg, items, tmp_path / "init")
    result = flat(
        train_student(cfg, Stage("qcrd", 0, str(init), str(tmp_path / "llama")), items, str(tmp_path / "ray"), seed=0)[
            -1
        ]
    )
    model = AutoModelForCausalLM.from_pretrained(result["student_dir"])  # gathered from ZeRO-3 shards
    assert next(model.parameters()).dtype == torch.float32
    assert dataset_loss(result["student_dir"], items, "qcrd", cfg) < dataset_loss(init, items, "qcrd", cfg)
    t5 = str(make_student(make_cfg(), items, tmp_path / "t5"))
    tuned = flat(
        train_student(
            make_cfg(), Stage("finetune", 0, t5, str(tmp_path / "ft")), items, str(tmp_path / "ray_ft"), seed=0
        )[-1]
    )
    assert set(tuned) >= {"loss", "loss_pred"} and tuned["loss"] == pytest.approx(tuned["loss_pred"])
    assert tuned["loss_last"] < tuned["loss_first"]


@pytest.mark.slow
def test_a_streaming_fit_stops_when_the_driver_fails_between_iterations(ray_session, tmp_path):
    """Leaving the block on an error stops the waiting workers: the fit ends, nothing is left running."""
    from actors.student_train import StreamingFit

    cfg, items = make_cfg(), make_items()
    init = make_student(cfg, items, tmp_path / "init")
    with pytest.raises(KeyError, match="the driver failed"), StreamingFit(cfg, 0, str(tmp_path / "ray")) as fit:
        fit.train(Stage("qcrd", 0, str(init), str(tmp_path / "snapshots")), items)
        raise KeyError("the driver failed")
    # Reaching this line is the point: leaving the block waited for the fit, which ended instead of hanging.
    assert (tmp_path / "snapshots" / "iter_0001").is_dir() and not (tmp_path / "snapshots" / "iter_0002").exists()
