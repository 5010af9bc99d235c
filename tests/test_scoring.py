"""All rationales of a question scored with one encoder (or prompt) pass equal the naive computation."""

import pytest
import torch

from qcrd_ray.config import StudentConfig
from qcrd_ray.models import build_student, build_tokenizer
from qcrd_ray.scoring import causal_prompt, causal_prompt_ids, encode_batch, naive_rationale_ce, rationale_ce

TEXTS = ["explain: Tom has 3 apples and buys 4 more. How many?", "Tom has 3 apples. 3 + 4 = 7.", "8 - 2 = 6."] * 10
# Prompts of different lengths (padding) and 3, 1, 0 and 2 rationales per question (ragged, one question empty).
PROMPTS = [
    "explain: Tom has 3 apples and buys 4 more. How many?",
    "explain: Ann has 8 pens.",
    "explain: y",
    "explain: x",
]
RATIONALES = [["3 + 4 = 7.", "3 + 4 = 8. So wrong", "Tom buys 4."], ["8 - 2 = 6."], [], ["a", "b b b b b b b"]]
MASK = [[True] * 3, [True, False, False], [False] * 3, [True, True, False]]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids intra-op contention (10x on small matmuls)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gpt2(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def _student(kind: str):
    architecture = "seq2seq" if kind == "t5" else "causal"
    tokenizer = build_tokenizer(StudentConfig(model=None, architecture=architecture), TEXTS)
    model = (
        _gpt2(tokenizer)
        if kind == "gpt2"
        else build_student(StudentConfig(model=None, architecture=architecture), tokenizer)
    )
    return model.eval(), tokenizer


def _hf_loss_loop(model, tokenizer, causal: bool) -> torch.Tensor:
    """The textbook reference, independent of our CE code: one forward per pair with transformers' own loss."""
    out = torch.zeros(len(PROMPTS), 3)
    for n, (prompt, rationales) in enumerate(zip(PROMPTS, RATIONALES, strict=True)):
        for r, rationale in enumerate(rationales):
            if causal:
                prompt_ids = causal_prompt_ids(tokenizer, causal_prompt(prompt))
                target = tokenizer(rationale, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                ids = torch.tensor([prompt_ids + target])
                labels = torch.tensor([[-100] * len(prompt_ids) + target])
            else:
                ids = torch.tensor([tokenizer(prompt)["input_ids"]])
                labels = torch.tensor([tokenizer(rationale)["input_ids"]])
            out[n, r] = model(input_ids=ids, labels=labels).loss
    return out


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_encode_once_equals_naive_and_the_textbook_loop(kind):
    model, tokenizer = _student(kind)
    causal = kind != "t5"
    batch = encode_batch(tokenizer, PROMPTS, RATIONALES, max_input=64, max_target=32, causal=causal)
    assert batch["labels"].shape[:2] == (4, 3) and batch["rationale_mask"].tolist() == MASK
    # Padding really happens: the prompts differ in length, and so do the targets.
    assert (batch["attention_mask"] == 0).any() and (batch["labels"] == -100).any()
    with torch.no_grad():
        fast, naive = rationale_ce(model, batch), naive_rationale_ce(model, batch)
        reference = _hf_loss_loop(model, tokenizer, causal)
    assert fast.shape == (4, 3)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)
    assert (fast[~batch["rationale_mask"]] == 0).all() and (fast[batch["rationale_mask"]] > 0).all()


@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_gradients_flow_and_match_the_naive_ones(kind):
    model, tokenizer = _student(kind)
    batch = encode_batch(tokenizer, PROMPTS, RATIONALES, max_input=64, max_target=32, causal=kind != "t5")
    grads = []
    for score in (rationale_ce, naive_rationale_ce):
        model.zero_grad()
        score(model, batch).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    fast, naive = grads
    assert fast.keys() == naive.keys() and len(fast) == len(list(model.parameters()))
    assert any(g.abs().sum() > 0 for g in fast.values())
    for name in fast:
        torch.testing.assert_close(fast[name], naive[name], atol=1e-5, rtol=1e-4, msg=name)


def test_causal_layout_is_prompt_newline_then_rationale_and_eos():
    _, tokenizer = _student("llama")
    batch = encode_batch(tokenizer, ["explain: x"], [["y z"]], max_input=64, max_target=32, causal=True)
    prompt = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert prompt == tokenizer("explain: x\n", add_special_tokens=False)["input_ids"]  # no BOS, no EOS
    target = batch["labels"][0, 0][batch["labels"][0, 0] != -100].tolist()
    assert target[-1] == tokenizer.eos_token_id and tokenizer.decode(target[:-1]) == "y z"
    # Truncation keeps the end of the prompt (the separator the continuation follows).
    short = causal_prompt_ids(tokenizer, causal_prompt("explain: a long question " * 5), max_length=4)
    assert len(short) == 4 and tokenizer.decode(short).endswith("\n")
    with pytest.raises(ValueError, match="no token"):
        causal_prompt_ids(tokenizer, "")


def test_a_batch_encoded_for_the_other_architecture_is_refused():
    model, tokenizer = _student("t5")
    batch = encode_batch(tokenizer, PROMPTS, RATIONALES, max_input=64, max_target=32, causal=True)
    with pytest.raises(ValueError, match="causal=True"):
        rationale_ce(model, batch)
    with pytest.raises(ValueError, match="rationale lists"):
        encode_batch(tokenizer, PROMPTS, RATIONALES[:2], max_input=64, max_target=32, causal=False)
