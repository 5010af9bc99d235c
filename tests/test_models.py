"""Students and the judge: built tiny, saved, reloaded from a directory (the hub-name path), and generating."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from qcrd_ray.config import JudgeConfig, StudentConfig, TinyModelConfig
from qcrd_ray.models import (
    build_judge,
    build_student,
    build_tokenizer,
    generate,
    is_seq2seq,
    judge_text,
    load_judge,
    load_student,
    save_judge,
    save_student,
)
from qcrd_ray.scoring import causal_prompt, causal_prompt_ids

ROOT = Path(__file__).resolve().parents[1]

TEXTS = ["predict: Tom has 3 apples.", "explain: Tom has 3 apples.", "3 + 4 = 7. So the answer is 7."] * 10
PROMPTS = ["explain: Tom has 3 apples and buys 4 more.", "explain: x", "predict: Tom has 3 apples."]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared 2-core machine: one thread avoids intra-op contention (10x on small matmuls)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _manual_greedy(model, tokenizer, prompt: str, steps: int) -> str:
    """Greedy decoding by hand: full forward passes on the unpadded prompt, no cache, no generate()."""
    if is_seq2seq(model):
        enc = torch.tensor([tokenizer(prompt)["input_ids"]])
        out = [model.config.decoder_start_token_id]
        for _ in range(steps):
            out.append(int(model(input_ids=enc, decoder_input_ids=torch.tensor([out])).logits[0, -1].argmax()))
            if out[-1] == tokenizer.eos_token_id:
                break
        out = out[1:]
    else:
        ids, out = causal_prompt_ids(tokenizer, prompt), []
        for _ in range(steps):
            out.append(int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax()))
            if out[-1] == tokenizer.eos_token_id:
                break
    return tokenizer.decode(out, skip_special_tokens=True)


@pytest.mark.parametrize("architecture", ["seq2seq", "causal"])
def test_student_saves_reloads_and_generates(tmp_path, architecture):
    cfg = StudentConfig(model=None, architecture=architecture)
    tokenizer = build_tokenizer(cfg, TEXTS)
    model = build_student(cfg, tokenizer, seed=0)
    assert is_seq2seq(model) == (architecture == "seq2seq")
    same = build_student(cfg, tokenizer, seed=0)
    other = build_student(cfg, tokenizer, seed=1)
    first = next(iter(model.state_dict()))
    assert torch.equal(model.state_dict()[first], same.state_dict()[first])
    assert not torch.equal(model.state_dict()[first], other.state_dict()[first])

    save_student(model, tokenizer, tmp_path / architecture)
    # The path a hub name takes: from_pretrained on a local directory.
    auto = AutoModelForSeq2SeqLM if architecture == "seq2seq" else AutoModelForCausalLM
    reloaded = build_student(StudentConfig(model=str(tmp_path / architecture)), tokenizer)
    assert type(reloaded) is type(auto.from_pretrained(tmp_path / architecture)) is type(model)
    model2, tokenizer2 = load_student(tmp_path / architecture)
    assert tokenizer2("3 + 4 = 7.")["input_ids"] == tokenizer("3 + 4 = 7.")["input_ids"]
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    prompts = [causal_prompt(p) for p in PROMPTS] if architecture == "causal" else PROMPTS
    rng_before = torch.get_rng_state()
    sampling = {"max_new_tokens": 6, "do_sample": True, "temperature": 1.5, "num_return_sequences": 2}
    sampled = generate(model2, tokenizer2, prompts, **sampling, batch_size=2, seed=0, max_input_length=64)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    assert len(sampled) == 3 and all(len(o) == 2 and all(isinstance(t, str) for t in o) for o in sampled)
    again = generate(model2, tokenizer2, prompts, **sampling, batch_size=2, seed=0, max_input_length=64)
    assert again == sampled
    assert model2.training is False

    # Greedy, batched with padding (prompts of different lengths): the continuation a hand-written loop finds.
    # A fresh init is nearly uniform and says the same thing (or nothing) everywhere: sharpen it first.
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=noise))
    model2.train()
    greedy = [g[0] for g in generate(model2, tokenizer2, prompts, max_new_tokens=5, batch_size=3, max_input_length=64)]
    assert model2.training  # the mode is restored
    assert all(greedy) and len(set(greedy)) == len(prompts)
    model2.eval()
    with torch.no_grad():
        assert greedy == [_manual_greedy(model2, tokenizer2, p, 5) for p in prompts]


def test_generate_refuses_several_greedy_sequences():
    tokenizer = build_tokenizer(StudentConfig(model=None), TEXTS)
    model = build_student(
        StudentConfig(model=None, tiny=TinyModelConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32)), tokenizer
    )
    with pytest.raises(ValueError, match="do_sample"):
        generate(model, tokenizer, PROMPTS, max_new_tokens=3, num_return_sequences=2, max_input_length=64)


@pytest.mark.parametrize("architecture", ["seq2seq", "causal"])
def test_a_prompt_longer_than_the_limit_is_cut_before_it_reaches_the_model(architecture):
    """An 8,000-character input once needed a 5.1 GB allocation: every generate call bounds its prompts."""
    from qcrd_ray.models import input_limit

    tiny = TinyModelConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32)
    cfg = StudentConfig(model=None, architecture=architecture, tiny=tiny, max_input_length=32, max_target_length=32)
    tokenizer = build_tokenizer(cfg, TEXTS)
    model = build_student(cfg, tokenizer)
    huge = "explain: " + "Tom has 3 apples. " * 450
    out = generate(model, tokenizer, [huge], max_new_tokens=4, max_input_length=16)
    cut = tokenizer.decode(
        tokenizer(huge, add_special_tokens=False)["input_ids"][-16:]
        if architecture == "causal"
        else tokenizer(huge, truncation=True, max_length=16)["input_ids"],
        skip_special_tokens=True,
    )
    assert out == generate(model, tokenizer, [cut], max_new_tokens=4, max_input_length=16)
    # A decoder-only model's positions hold the prompt and the new tokens (64 here: 32 + 32).
    assert input_limit(model, 8, 4096) == (4096 if architecture == "seq2seq" else 56)
    with pytest.raises(ValueError, match="no room for a prompt"):
        input_limit(model, 64, 4096) if architecture == "causal" else input_limit(model, 8, 0)


def test_a_tokenizer_directory_builds_and_generates(tmp_path):
    """``student.tokenizer: DIR`` as a user gives it: here the real T5 vocabulary, saved to a local directory."""
    from transformers import T5Tokenizer

    T5Tokenizer(vocab_file=str(ROOT.parent / "shared/data/tokenizers/t5/spiece.model")).save_pretrained(tmp_path)
    cfg = StudentConfig(
        model=None, tokenizer=str(tmp_path), tiny=TinyModelConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32)
    )
    tokenizer = build_tokenizer(cfg)
    model = build_student(cfg, tokenizer)
    assert model.config.vocab_size == len(tokenizer) and model.config.decoder_start_token_id == tokenizer.pad_token_id
    out = generate(
        model,
        tokenizer,
        PROMPTS[:2],
        max_new_tokens=4,
        do_sample=True,
        num_return_sequences=3,
        seed=1,
        max_input_length=64,
    )
    assert [len(o) for o in out] == [3, 3]
    with pytest.raises(ValueError, match="texts"):
        build_tokenizer(StudentConfig(model=None, tokenizer="train"))


def test_judge_scores_and_round_trip(tmp_path):
    tokenizer = build_tokenizer(StudentConfig(model=None), TEXTS)
    judge = build_judge(JudgeConfig(encoder=None), tokenizer, seed=0).eval()
    assert torch.equal(judge.head[-1].weight, torch.zeros_like(judge.head[-1].weight))  # s = 0.5 from the start
    with torch.no_grad():
        torch.nn.init.normal_(judge.head[-1].weight, generator=torch.Generator().manual_seed(0))  # as if trained
    texts = [judge_text("Tom has 3 apples.", r) for r in ("3 + 4 = 7.", "3 + 4 = 8 and many more words here")]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()
    with torch.no_grad():
        scores = judge(enc["input_ids"], enc["attention_mask"])
        alone = judge(**tokenizer(texts[:1], return_tensors="pt"))
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    torch.testing.assert_close(alone, scores[:1])  # padding never reaches the max-pool

    save_judge(judge, tokenizer, tmp_path / "judge")
    judge2, tokenizer2 = load_judge(tmp_path / "judge")
    enc2 = tokenizer2(texts, padding=True, return_tensors="pt")
    assert torch.equal(enc2["input_ids"], enc["input_ids"])
    with torch.no_grad():
        assert torch.equal(judge2.eval()(enc2["input_ids"], enc2["attention_mask"]), scores)

    judge2.train()
    judge2(enc2["input_ids"], enc2["attention_mask"]).sum().backward()
    assert judge2.encoder.get_input_embeddings().weight.grad.abs().sum() > 0  # D trains end to end
    with pytest.raises(FileNotFoundError, match="judge.json"):
        load_judge(tmp_path)
