"""The QCRD losses: hand-computed values, the DSS special case, the margin, and detached judge weights."""

import math

import pytest
import torch

from qcrd_ray.losses import AGGREGATIONS, Slots, contrastive_loss, dss_loss, judge_level_loss, judge_loss, sequence_ce


def test_sequence_ce_ignores_padding():
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[1, 2, -100, -100], [3, 4, 5, 6]])
    first = torch.nn.functional.cross_entropy(logits[0, :2], labels[0, :2])
    second = torch.nn.functional.cross_entropy(logits[1], labels[1])
    torch.testing.assert_close(sequence_ce(logits, labels), torch.stack([first, second]))
    assert sequence_ce(logits, torch.full((2, 4), -100)).tolist() == [0.0, 0.0]  # nothing labelled: 0, not NaN


def test_one_positive_unit_score_zero_beta_is_exactly_the_dss_rationale_loss():
    logits = torch.randn(3, 5, 11, requires_grad=True)
    labels = torch.randint(0, 11, (3, 5))
    ce = sequence_ce(logits, labels)  # [3]
    ones = torch.ones(3, 1)
    neg = torch.rand(3, 2) * 5
    cl = contrastive_loss(
        Slots(ce.unsqueeze(1), ones.bool(), ones),
        Slots(neg, torch.ones(3, 2, dtype=torch.bool), torch.rand(3, 2)),
        beta=0.0,
    )
    assert torch.equal(cl, dss_loss(torch.zeros(3), ce, alpha=0.0))


def test_minmax_by_hand():
    pos = torch.tensor([[2.0, 1.0]])
    pos_s = torch.tensor([[0.9, 0.5]])
    neg = torch.tensor([[0.5, 2.0, 9.0]])
    neg_s = torch.tensor([[0.2, 0.4, 0.1]])
    mask2, mask3 = torch.ones(1, 2, dtype=torch.bool), torch.tensor([[True, True, False]])
    # easiest positive: CE 1.0 with s 0.5; hardest valid negative: CE 2.0 -> min(2 - 3, 0) = -1 with s 0.4
    expected = 0.5 * 1.0 - 0.2 * (1 - 0.4) * (-1.0)
    got = contrastive_loss(Slots(pos, mask2, pos_s), Slots(neg, mask3, neg_s), beta=0.2, delta=3.0)
    assert got.item() == pytest.approx(expected)
    maxmin = 0.9 * 2.0 - 0.2 * (1 - 0.2) * (0.5 - 3.0)
    assert contrastive_loss(
        Slots(pos, mask2, pos_s), Slots(neg, mask3, neg_s), aggregation="maxmin"
    ).item() == pytest.approx(maxmin)


def test_mean_is_unweighted_and_weighted_mean_uses_the_judge():
    """The paper's Mean ablation ignores the judge; only weighted_mean uses its scores (issue 14.3)."""
    pos, pos_s = torch.tensor([[2.0, 1.0]]), torch.tensor([[0.9, 0.5]])
    neg, neg_s = torch.tensor([[0.5, 2.0, 9.0]]), torch.tensor([[0.2, 0.4, 0.1]])
    mask2, mask3 = torch.ones(1, 2, dtype=torch.bool), torch.tensor([[True, True, False]])
    # positives: mean CE (2 + 1) / 2; valid negatives clip to 0.5 - 3 = -2.5 and 2 - 3 = -1
    mean = (2 + 1) / 2 - 0.2 * (-2.5 + -1.0) / 2
    assert contrastive_loss(
        Slots(pos, mask2, pos_s), Slots(neg, mask3, neg_s), aggregation="mean"
    ).item() == pytest.approx(mean)
    other_scores = contrastive_loss(Slots(pos, mask2, 1 - pos_s), Slots(neg, mask3, 1 - neg_s), aggregation="mean")
    assert other_scores.item() == pytest.approx(mean)  # the judge plays no part
    # weights s = 0.9, 0.5 on positives, 1 - s = 0.8, 0.6 on negatives
    weighted = (0.9 * 2 + 0.5 * 1) / 1.4 - 0.2 * ((0.8 * -2.5) + (0.6 * -1.0)) / 1.4
    got = contrastive_loss(Slots(pos, mask2, pos_s), Slots(neg, mask3, neg_s), aggregation="weighted_mean")
    assert got.item() == pytest.approx(weighted)


def test_sampling_picks_valid_slots_only():
    pos = torch.tensor([[1.0, 100.0]])
    neg = torch.tensor([[0.0, 100.0]])
    mask = torch.tensor([[True, False]])
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        got = contrastive_loss(
            Slots(pos, mask, torch.ones(1, 2)), Slots(neg, mask, torch.zeros(1, 2)), aggregation="sampling", generator=g
        )
        assert got.item() == pytest.approx(1.0 - 0.2 * (0.0 - 3.0))


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_negative_beyond_the_margin_gives_no_gradient(aggregation):
    neg_logits = torch.randn(1, 4, 6, requires_grad=True)
    labels = torch.randint(0, 6, (1, 4))
    with torch.no_grad():
        neg_logits[0, torch.arange(4), labels[0]] = -30.0  # the student finds this negative very unlikely
    neg_ce = sequence_ce(neg_logits, labels)
    assert neg_ce.item() > 3.0
    loss = contrastive_loss(
        Slots(torch.ones(1, 1), torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 1)),
        Slots(neg_ce.view(1, 1), torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1)),
        aggregation=aggregation,
    )
    loss.backward()
    assert torch.count_nonzero(neg_logits.grad) == 0


def test_mean_clips_each_negative_before_aggregating():
    # Two negatives: CE 5 (beyond the margin delta = 3) and CE 1. Clipped first, the far one adds 0 and no
    # gradient while the near one keeps pushing; clipping the mean (3.0 - 3 = 0) would have stopped both.
    neg = torch.tensor([[5.0, 1.0]], requires_grad=True)
    mask = torch.ones(1, 2, dtype=torch.bool)
    one = torch.ones(1, 1)
    loss = contrastive_loss(
        Slots(one, one.bool(), one), Slots(neg, mask, torch.zeros(1, 2)), beta=0.2, aggregation="mean"
    )
    assert loss.item() == pytest.approx(1.0 - 0.2 * (0.0 + (1.0 - 3.0)) / 2)
    loss.backward()
    assert neg.grad[0, 0] == 0 and neg.grad[0, 1] == pytest.approx(-0.1)  # descent raises its CE


def test_no_gradient_reaches_the_judge_through_the_weights():
    scores = torch.rand(2, 3, requires_grad=True)
    ce = torch.rand(2, 3, requires_grad=True)
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss = contrastive_loss(Slots(ce, mask, scores), Slots(ce * 0.5, mask, scores))
    loss.backward()
    assert scores.grad is None and ce.grad is not None


def test_questions_without_negatives_or_positives_drop_their_term():
    pos, neg = torch.tensor([[2.0], [3.0]]), torch.tensor([[1.0], [1.0]])
    pos_mask, neg_mask = torch.tensor([[True], [False]]), torch.tensor([[False], [True]])
    got = contrastive_loss(Slots(pos, pos_mask, torch.ones(2, 1)), Slots(neg, neg_mask, torch.zeros(2, 1)))
    assert got.item() == pytest.approx((2.0 + (-0.2 * -2.0)) / 2)


def test_judge_loss_forms_by_hand():
    pos, neg = torch.tensor([[0.9, 0.7]]), torch.tensor([[0.2, 0.1, 0.5]])
    pm, nm = torch.ones(1, 2, dtype=torch.bool), torch.tensor([[True, True, False]])
    sp, sn = math.exp(0.9) + math.exp(0.7), math.exp(0.2) + math.exp(0.1)
    assert judge_loss(pos, pm, neg, nm).item() == pytest.approx(-math.log(sp / (sp + sn)))
    assert judge_loss(pos, pm, neg, nm, "paper_printed").item() == pytest.approx(-math.log(sp / sn))
    empty = judge_loss(pos, pm, neg, torch.zeros(1, 3, dtype=torch.bool))
    assert empty.item() == 0.0
    with pytest.raises(ValueError, match="form must be one of"):
        judge_loss(pos, pm, neg, nm, "hinge")


def test_judge_level_loss_by_hand_weighs_the_classes_alike_and_skips_padding():
    pos, neg = torch.tensor([[0.9, 0.7]]), torch.tensor([[0.2, 0.1, 0.99]])
    pm, nm = torch.ones(1, 2, dtype=torch.bool), torch.tensor([[True, True, False]])
    positives = -(math.log(0.9) + math.log(0.7)) / 2
    negatives = -(math.log(0.8) + math.log(0.9)) / 2
    assert judge_level_loss(pos, pm, neg, nm).item() == pytest.approx((positives + negatives) / 2)
    # Unlike L_D, it sees the level: the same scores shifted up cost the negatives more than the positives gain.
    shifted = judge_level_loss(pos + 0.05, pm, neg + 0.05, nm).item()
    assert shifted != pytest.approx(judge_level_loss(pos, pm, neg, nm).item())
    assert judge_loss(pos + 0.05, pm, neg + 0.05, nm).item() == pytest.approx(judge_loss(pos, pm, neg, nm).item())
    no_negatives = judge_level_loss(pos, pm, neg, torch.zeros(1, 3, dtype=torch.bool))
    assert no_negatives.item() == pytest.approx(positives)
