"""Student training on CUDA: ZeRO-2, bf16, through Ray Train, for a few steps. Skipped without a GPU."""

from __future__ import annotations

import os

import pytest
import torch

pytestmark = pytest.mark.gpu

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_zero2_bf16_on_cuda_through_ray_train(tmp_path):
    import ray
    from test_student_train import dataset_loss, make_cfg, make_items, make_student
    from transformers import AutoModelForSeq2SeqLM

    from actors.student_train import train_student

    cfg = make_cfg(**{"train.use_gpu": True, "train.zero_stage": 2, "train.precision": "bf16",
                      "train.steps_per_iteration": 8})  # fmt: skip
    items = make_items()
    init = make_student(cfg, items, tmp_path / "init")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        result = train_student(cfg, "qcrd", items, str(init), str(tmp_path / "student"), iteration=0,
                               storage_path=str(tmp_path / "ray"), seed=0)  # fmt: skip
    finally:
        if started:
            ray.shutdown()
    assert result["steps"] == 8 and result["loss_last"] < result["loss_first"]
    model = AutoModelForSeq2SeqLM.from_pretrained(result["student_dir"])
    assert next(model.parameters()).dtype == torch.float32
    assert dataset_loss(result["student_dir"], items, "qcrd", cfg) < dataset_loss(init, items, "qcrd", cfg)
