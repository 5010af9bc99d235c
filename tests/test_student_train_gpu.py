"""Student training on CUDA: ZeRO-2, bf16, through Ray Train, for a few steps. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_zero2_bf16_on_cuda_through_ray_train(ray_local, tmp_path):
    from test_student_train import dataset_loss, make_cfg, make_items, make_student
    from transformers import AutoModelForSeq2SeqLM

    from actors.student_train import train_student

    cfg = make_cfg(**{"train.use_gpu": True, "train.zero_stage": 2, "train.precision": "bf16",
                      "train.steps_per_iteration": 8})  # fmt: skip
    items = make_items()
    init = make_student(cfg, items, tmp_path / "init")
    assert ray_local.cluster_resources().get("GPU", 0) >= 1, "Ray found no GPU although torch sees one"
    result = train_student(cfg, "qcrd", items, str(init), str(tmp_path / "student"), str(tmp_path / "ray"), seed=0)
    assert result["steps"] == 8 and result["loss_last"] < result["loss_first"]
    model = AutoModelForSeq2SeqLM.from_pretrained(result["student_dir"])
    assert next(model.parameters()).dtype == torch.float32
    assert dataset_loss(result["student_dir"], items, "qcrd", cfg) < dataset_loss(init, items, "qcrd", cfg)
