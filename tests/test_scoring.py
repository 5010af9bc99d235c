"""All rationales of a question scored with one encoder (or prompt) pass equal the naive computation."""

import pytest
import torch

from qcrd_ray.config import StudentConfig
from qcrd_ray.models import build_student, build_tokenizer
from qcrd_ray.scoring import encode_batch, naive_rationale_ce, rationale_ce

TEXTS = ["explain: Tom has 3 apples and buys 4 more. How many?", "Tom has 3 apples. 3 + 4 = 7.", "8 - 2 = 6."] * 10
PROMPTS = ["explain: Tom has 3 apples and buys 4 more. How many?", "explain: Ann has 8 pens.", "explain: x"]
RATIONALES = [["3 + 4 = 7.", "3 + 4 = 8. So wrong", "Tom buys 4."], ["8 - 2 = 6."], ["a", "b b b b b b b"]]


@pytest.mark.parametrize("architecture", ["seq2seq", "causal"])
def test_encode_once_equals_naive_and_backpropagates(architecture):
    cfg = StudentConfig(architecture=architecture)
    tokenizer = build_tokenizer(cfg, TEXTS)
    model = build_student(cfg, tokenizer, seed=0)
    batch = encode_batch(tokenizer, PROMPTS, RATIONALES, max_input=64, max_target=32, causal=architecture == "causal")
    assert batch["labels"].shape[:2] == (3, 3)
    assert batch["rationale_mask"].tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    fast, naive = rationale_ce(model, batch), naive_rationale_ce(model, batch)
    assert fast.shape == (3, 3)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    assert (fast[~batch["rationale_mask"]] == 0).all() and (fast[batch["rationale_mask"]] > 0).all()
    fast.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
