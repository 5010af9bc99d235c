"""Sampling in which every returned sequence has its own seed, so a sample never depends on its batch.

``model.generate(do_sample=True)`` draws every row of a batch from one RNG stream: the same prompt sampled
beside other prompts gets other samples, and a teacher cache grown batch by batch would differ from one
sampled at once. Here each row draws its noise from its own ``torch.Generator``, and the token is the
Gumbel-max choice (the argmax of the warped log-probabilities plus Gumbel noise, written as ``- log E`` with
``E ~ Exp(1)``): exactly a sample from the temperature / top-k / top-p distribution transformers would sample
from. ``generate`` runs greedy decoding with this processor last, as vLLM's per-request ``seed`` does.
"""

from __future__ import annotations

import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


def row_seed(prompt_seed: int, k: int) -> int:
    """The seed of a prompt's k-th sample (``prompt_seed`` a 31-bit seed, k < 2**16)."""
    return prompt_seed * 65_536 + k


class RowSeededSampler:
    """A logits processor: scores ``(rows, vocab)`` -> the same with each row's sampled token the only maximum.

    ``seeds`` holds one seed per row, in the batch's row order (prompt-major, as ``num_return_sequences``).
    """

    def __init__(self, seeds: list[int], *, temperature: float, top_p: float, top_k: int):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)]
        if top_k > 0:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"RowSeededSampler: {scores.shape[0]} rows for {len(self.generators)} seeds")
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        vocab = scores.shape[1]
        # one Exp(1) draw per token per row per step, from the row's own stream
        exp = torch.stack([torch.empty(vocab).exponential_(generator=g) for g in self.generators])
        return scores.float() - exp.to(scores.device).log()  # argmax: the Gumbel-max sample
