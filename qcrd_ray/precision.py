"""The dtype an inference or judge actor computes in (``judge.dtype``, ``sampler.dtype``)."""

from __future__ import annotations

import torch


def compute_dtype(setting: str, device: str | torch.device) -> torch.dtype:
    """``auto``: bf16 on a GPU, fp32 on the CPU (where bf16 is fast on some chips only); else as named. On a GPU
    in fp32 matmuls may use TF32, as the fit's do."""
    on_gpu = torch.device(device).type == "cuda"
    dtype = torch.bfloat16 if setting == "bf16" or (setting == "auto" and on_gpu) else torch.float32
    if on_gpu and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dtype
