"""What each method trains on (qcrd_ray.methods), without Ray: DSS's raw sample, the judge ablation's weights,
the judge's data, and the figures that say whether the contrastive term is alive."""

import pytest
import torch

from qcrd_ray.config import Config
from qcrd_ray.losses import Slots, contrastive_terms
from qcrd_ray.methods import (
    build_items,
    dss_rationale,
    judge_pairs,
    pretrain_groups,
    scores_by_kind,
    update_groups,
    with_scores,
)
from qcrd_ray.records import Example, Rationale
from qcrd_ray.student_loss import contrastive_figures
from qcrd_ray.typed_config import parse_overrides
from qcrd_ray.voting import vote

EXAMPLE = Example("q1", "Tom has 3 apples and buys 4 more. How many?", "7")
# Sample 0 reaches a wrong answer; the majority (samples 1, 2) is right.
SAMPLES = [
    Rationale("3 + 5 = 8. So the answer is 8.", "8"),
    Rationale("3 + 4 = 7. So the answer is 7.", "7"),
    Rationale("He has 3 + 4 = 7. So the answer is 7.", "7"),
]


def items_for(method: str, *overrides: str, student_samples=None):
    cfg = Config().replace(parse_overrides(list(overrides)))
    votes = [vote(EXAMPLE, SAMPLES, cfg.voting)]
    return build_items(cfg, method, [EXAMPLE], votes, student_samples or {})


def test_dss_trains_on_the_first_sample_as_sampled_not_on_the_vote():
    (item,) = items_for("dss")
    assert item.positives == (SAMPLES[0].text,) and item.negatives == ()
    # QCRD without self-consistency trains on the same raw sample; with it, on the voted positives.
    (raw,) = items_for("qcrd", "run.self_consistency=false")
    assert raw.positives == (SAMPLES[0].text,)
    (voted,) = items_for("qcrd")
    assert voted.positives == (SAMPLES[1].text, SAMPLES[2].text) and voted.negatives == (SAMPLES[0].text,)


def test_dss_skips_an_unparsed_first_sample_and_falls_back_to_gold():
    cfg = Config()
    unparsed = [Rationale("3 + 4 is", None), *SAMPLES[1:]]
    assert dss_rationale(vote(EXAMPLE, unparsed, cfg.voting)) == (SAMPLES[1].text,)
    gold = Example("q2", "x", "7", (Rationale("3 + 4 = 7.", "7", "gold"),))
    assert dss_rationale(vote(gold, [Rationale("hm", None)], cfg.voting)) == ("3 + 4 = 7.",)
    assert dss_rationale(vote(EXAMPLE, [Rationale("hm", None)], cfg.voting)) == ()
    (finetune,) = items_for("finetune")
    assert finetune.positives == finetune.negatives == ()
    with pytest.raises(ValueError, match="method"):
        items_for("distill")


def test_without_the_judge_every_term_weighs_one_and_a_negative_pushes():
    """Neutral scores: s = 1 on positives, 1 - s = 1 on negatives, so a negative within the margin has a
    gradient (issue 14.2: the old all-ones scores weighed every negative by 0)."""
    (item,) = items_for("qcrd", "run.use_judge=false", student_samples={"q1": ["3 3 3 3"]})
    assert item.negatives == ("3 3 3 3", SAMPLES[0].text)
    assert item.positive_scores == (1.0, 1.0) and item.negative_scores == (0.0, 0.0)
    pos_ce = torch.tensor([[1.0, 1.5]], requires_grad=True)
    neg_ce = torch.tensor([[2.0, 1.0]], requires_grad=True)  # both within delta = 3
    ones = torch.ones(1, 2, dtype=torch.bool)
    terms = contrastive_terms(
        Slots(pos_ce, ones, torch.tensor([item.positive_scores])),
        Slots(neg_ce, ones, torch.tensor([item.negative_scores])),
    )
    terms.loss.backward()
    assert neg_ce.grad[0, 0] == pytest.approx(-0.2)  # the hardest negative, weight 1, pushed at -beta
    assert pos_ce.grad[0, 0] == pytest.approx(1.0)  # the easiest positive, weight 1


def test_judge_data_and_scores_round_trip_in_order():
    (item,) = items_for("qcrd", student_samples={"q1": ["s1"]})
    assert judge_pairs([item]) == [(EXAMPLE.input, t) for t in (*item.positives, *item.negatives)]
    (scored,) = with_scores([item], [0.9, 0.8, 0.1, 0.3])
    assert scored.positive_scores == (0.9, 0.8) and scored.negative_scores == (0.1, 0.3)
    assert scores_by_kind([scored], {"q1": ["s1"]}) == {
        "positives": [0.9, 0.8],
        "student_negatives": [0.1],
        "teacher_negatives": [0.3],
    }
    assert update_groups([scored]) == [(EXAMPLE.input, list(item.positives), list(item.negatives))]
    cfg = Config()
    assert pretrain_groups(cfg, [EXAMPLE], [vote(EXAMPLE, SAMPLES, cfg.voting)]) == [
        (EXAMPLE.input, [SAMPLES[1].text, SAMPLES[2].text], [SAMPLES[0].text])
    ]
    with pytest.raises(ValueError, match="3 scores"):
        with_scores([item], [0.1, 0.2, 0.3])


def test_contrastive_figures_say_when_one_far_negative_silences_a_question():
    """minmax: a negative with CE above delta is the max, so its question's negative term is 0."""
    pos_ce = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    pos_s = torch.tensor([[0.8, 0.6], [0.8, 0.6]])
    neg_ce = torch.tensor([[1.0, 5.0], [1.0, 2.0]])  # question 0: a far negative (5 > 3); question 1: none
    neg_s = torch.tensor([[0.5, 0.25], [0.5, 0.25]])
    ones = torch.ones(2, 2, dtype=torch.bool)
    figures = contrastive_figures(contrastive_terms(Slots(pos_ce, ones, pos_s), Slots(neg_ce, ones, neg_s)))
    assert figures["negative_term_active"] == pytest.approx(0.5)
    assert figures["ce_chosen_positive"] == pytest.approx(1.0)
    assert figures["ce_chosen_negative"] == pytest.approx((5.0 + 2.0) / 2)
    assert figures["weight_positive"] == pytest.approx(0.8)
    assert figures["weight_negative"] == pytest.approx(0.75)
    none = torch.zeros(2, 2, dtype=torch.bool)
    empty = contrastive_figures(contrastive_terms(Slots(pos_ce, ones, pos_s), Slots(neg_ce, none, neg_s)))
    assert all(empty[k] != empty[k] for k in ("negative_term_active", "ce_chosen_negative"))  # NaN: no negatives


def test_every_method_reports_exactly_its_metrics_and_explains_as_it_trains(tmp_path):
    """The registry is the one place a method is described: each entry's loss returns the parts it declares,
    and a method that explains trains on rationales (its items carry some) while one that does not never does."""
    from qcrd_ray.methods import METHODS, student_loss
    from qcrd_ray.models import load_student
    from tests.student_fixtures import make_cfg, make_items, make_student

    cfg, items = make_cfg(), make_items()
    model, tokenizer = load_student(make_student(cfg, items, tmp_path / "student"))
    for name, method in METHODS.items():
        _, parts = student_loss(model, tokenizer, items, name, cfg)
        assert set(parts) == {"loss", "loss_pred", *method.metrics}, name
        (item,) = items_for(name)
        assert bool(item.positives) == method.explains, name
        assert bool(item.negatives) == method.contrastive, name


@pytest.mark.parametrize("architecture", ["seq2seq", "causal"])
def test_qcrds_pick_shares_the_explain_encoder_pass_and_keeps_the_gradient(architecture, tmp_path):
    """QCRD's step with the pick under no_grad: a seq2seq student runs its encoder once per input (predict:,
    explain:), the pick and the differentiable pass sharing the explain: one; either kind of student gets the
    loss and gradient of the pass through every rationale (delta large: every negative pushes)."""
    from qcrd_ray.models import load_student
    from tests.student_fixtures import fast_and_full, make_cfg, make_items, make_student

    cfg, items = make_cfg(**{"student.architecture": architecture, "loss.delta": 100.0}), make_items()
    model, tokenizer = load_student(make_student(cfg, items, tmp_path / "student"))
    encoder_runs = []
    if architecture == "seq2seq":
        model.get_encoder().register_forward_hook(lambda *_: encoder_runs.append(1))
    (fast_loss, fast_parts, fast_grads), (full_loss, full_parts, full_grads) = fast_and_full(
        model, tokenizer, items, cfg
    )
    assert encoder_runs == ([1] * 4 if architecture == "seq2seq" else [])  # 2 a step: predict:, explain:
    assert fast_parts["negative_term_active"] == full_parts["negative_term_active"] == 1.0
    assert fast_loss == pytest.approx(full_loss, rel=1e-5)
    for fast, full in zip(fast_grads, full_grads, strict=True):
        assert torch.allclose(fast, full, atol=1e-6, rtol=1e-4)


def test_without_self_consistency_the_judge_pretrains_on_no_vote():
    """The no-self-consistency ablation's judge learns from what its pipeline has: DSS's raw sample, no minority
    (issue 33); with self-consistency it learns the vote's positives against its minority."""
    cfg = Config()
    votes = [vote(EXAMPLE, SAMPLES, cfg.voting)]
    ablated = cfg.replace({"run.self_consistency": False})
    assert pretrain_groups(ablated, [EXAMPLE], votes) == [(EXAMPLE.input, [SAMPLES[0].text], [])]
    no_minority = cfg.replace({"negatives.include_teacher_minority": False})
    assert pretrain_groups(no_minority, [EXAMPLE], votes) == [(EXAMPLE.input, [SAMPLES[1].text, SAMPLES[2].text], [])]
