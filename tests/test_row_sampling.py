"""Row-seeded sampling draws from the distribution transformers samples from, and each row from its own seed."""

import torch

from qcrd_ray.row_sampling import RowSeededSampler, row_seed

LOGITS = torch.tensor([2.0, 1.0, 0.0, -1.0, -3.0])


def draws(rows: int, **warping) -> torch.Tensor:
    """The token each of ``rows`` rows (seeds 0..rows-1) picks from LOGITS at one step: shape (rows,)."""
    sampler = RowSeededSampler(list(range(rows)), **warping)
    scores = sampler(torch.zeros(rows, 1, dtype=torch.long), LOGITS.expand(rows, -1).clone())
    return scores.argmax(dim=-1)


def test_tokens_follow_the_tempered_softmax():
    picks = draws(20_000, temperature=0.7, top_p=1.0, top_k=0)
    freq = torch.bincount(picks, minlength=len(LOGITS)).float() / len(picks)
    assert torch.allclose(freq, torch.softmax(LOGITS / 0.7, dim=-1), atol=0.015), freq


def test_top_p_and_top_k_cut_the_tail():
    # softmax(LOGITS) = 0.64, 0.23, 0.09, ...: top-p 0.8 keeps the first two tokens, top-k 3 the first three
    assert set(draws(4_000, temperature=1.0, top_p=0.8, top_k=0).tolist()) == {0, 1}
    assert set(draws(4_000, temperature=1.0, top_p=1.0, top_k=3).tolist()) == {0, 1, 2}


def test_a_row_draws_the_same_whatever_its_neighbours():
    alone = RowSeededSampler([row_seed(7, 1)], temperature=1.0, top_p=1.0, top_k=0)
    beside = RowSeededSampler([row_seed(3, 0), row_seed(7, 1)], temperature=1.0, top_p=1.0, top_k=0)
    for _ in range(5):  # step by step, the row's stream advances the same way
        a = alone(torch.zeros(1, 1, dtype=torch.long), LOGITS.expand(1, -1).clone())
        b = beside(torch.zeros(2, 1, dtype=torch.long), LOGITS.expand(2, -1).clone())
        assert torch.equal(a[0], b[1])
    assert row_seed(7, 1) != row_seed(7, 0) != row_seed(8, 0)
