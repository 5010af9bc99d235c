"""Real fits: Ray Train + DeepSpeed on CPU, on a real local Ray on 127.0.0.1, with a tiny T5 (and a tiny Llama)
whose tokenizer is trained on the test's own texts. Each fit costs Ray Train's fixed ~20 s, so one fit (the
1-worker QCRD iteration) is shared by the fast tests and the other fits are marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actors.student_train import Stage, train_student
from tests.student_fixtures import dataset_loss, flat, make_cfg, make_items, make_student, weights

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
