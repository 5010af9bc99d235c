"""Student training on CPU without Ray: the loss, the loop's pieces and the fit's input checks (the real
Ray Train + DeepSpeed fits are in ``tests/test_streaming_fit.py``)."""

from __future__ import annotations

import pytest
import torch

from actors.student_train import Stage, deepspeed_config, train_student
from qcrd_ray.methods import student_loss
from qcrd_ray.records import TrainItem
from qcrd_ray.student_iteration import FitStopped, Slot, train_iteration
from qcrd_ray.student_loss import _split_slots
from tests.student_fixtures import fast_and_full, make_cfg, make_items, make_student

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
    reported = []  # what rank 0 streams to the driver's bar
    train_iteration(engine, tokenizer, items, cfg, Slot("dss", seed=0, iteration=1, steps=2), reported.append)
    assert seen == pytest.approx([3e-3 * 0.5, 3e-3 * 0.25])
    assert reported == [1, 2]
    # A stopped fit: the step's answer is true, and the iteration leaves there.
    with pytest.raises(FitStopped, match="dss iteration 2: stopped after step 1"):
        train_iteration(engine, tokenizer, items, cfg, Slot("dss", seed=0, iteration=1, steps=2), lambda n: True)
    assert len(seen) == 3


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


def test_an_iteration_draws_exactly_the_positions_known_ahead_and_needs_no_other_item(
    tmp_path, single_rank_process_group, monkeypatch
):
    """``iteration_positions`` are the questions ``train_iteration``'s batches draw, so the driver samples,
    scores and hands over only those: the others can be None."""
    from actors.student_train import build_engine
    from qcrd_ray import student_iteration
    from qcrd_ray.models import load_student
    from qcrd_ray.student_iteration import iteration_positions

    cfg, items = make_cfg(**{"train.steps_per_iteration": 1, "train.batch_size": 4}), make_items()
    positions = iteration_positions(len(items), cfg, seed=0, iteration=1)
    assert len(positions) == 4  # one step of 4 of the 8 questions
    model, tokenizer = load_student(make_student(cfg, items, tmp_path / "student"))
    drawn = []

    def recording(model, tokenizer, batch, *args, **kwargs):
        drawn.extend(it.id for it in batch)
        return student_loss(model, tokenizer, batch, *args, **kwargs)

    monkeypatch.setattr(student_iteration, "student_loss", recording)
    handed = [it if i in positions else None for i, it in enumerate(items)]
    metrics = train_iteration(build_engine(model, cfg.train, 1), tokenizer, handed, cfg, Slot("dss", 0, 1, 1))
    assert sorted(drawn) == sorted(items[i].id for i in positions)
    assert metrics["questions_drawn"] == 4
    # Two workers draw from their shards (items[rank::2]); group_by_length needs every item's length: all.
    two = iteration_positions(len(items), make_cfg(**{"train.steps_per_iteration": 1, "train.num_workers": 2}), 0, 1)
    assert len(two) == 4 and {p % 2 for p in two} == {0, 1}
    assert iteration_positions(len(items), make_cfg(**{"train.group_by_length": True}), 0, 1) is None
