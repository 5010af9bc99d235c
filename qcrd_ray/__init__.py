"""qcrd_ray: the core of QCRD (quality-guided contrastive rationale distillation).

Pure Python and torch: config, data, prompts and answers, voting, losses, models, schedule, manifest,
evaluation. Nothing here imports ray, vllm or deepspeed at module top; the actors in ``actors/`` hold the
resources and call into this package.
"""

__version__ = "0.1.0"
