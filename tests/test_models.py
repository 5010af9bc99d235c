"""Students and the judge: built tiny, saved, reloaded from a directory (the hub-name path), and generating."""

import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from qcrd_ray.config import DiscriminatorConfig, StudentConfig
from qcrd_ray.models import (build_discriminator, build_student, build_tokenizer, generate, is_seq2seq,
                             judge_text, load_discriminator, load_student, save_discriminator, save_student)

TEXTS = ["predict: Tom has 3 apples.", "explain: Tom has 3 apples.", "3 + 4 = 7. So the answer is 7."] * 10


def test_students_save_reload_and_generate(tmp_path):
    for architecture, auto in (("seq2seq", AutoModelForSeq2SeqLM), ("causal", AutoModelForCausalLM)):
        cfg = StudentConfig(architecture=architecture)
        tokenizer = build_tokenizer(cfg, TEXTS)
        model = build_student(cfg, tokenizer, seed=0)
        assert is_seq2seq(model) == (architecture == "seq2seq")
        save_student(model, tokenizer, tmp_path / architecture)
        # the path a hub name takes: from_pretrained on a local directory
        reloaded = build_student(StudentConfig(model=str(tmp_path / architecture)), tokenizer)
        assert isinstance(reloaded, type(auto.from_pretrained(tmp_path / architecture)))
        model2, tokenizer2 = load_student(tmp_path / architecture)
        for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        outs = generate(model2, tokenizer2, ["explain: Tom has 3 apples."] * 3, max_new_tokens=6, do_sample=True,
                        temperature=1.5, num_return_sequences=2, seed=0)
        assert len(outs) == 3 and all(len(o) == 2 and all(isinstance(t, str) for t in o) for o in outs)
        again = generate(model2, tokenizer2, ["explain: Tom has 3 apples."] * 3, max_new_tokens=6, do_sample=True,
                         temperature=1.5, num_return_sequences=2, seed=0)
        assert again == outs


def test_discriminator_scores_and_round_trip(tmp_path):
    tokenizer = build_tokenizer(StudentConfig(), TEXTS)
    judge = build_discriminator(DiscriminatorConfig(), tokenizer).eval()
    enc = tokenizer([judge_text("Tom has 3 apples.", r) for r in ("3 + 4 = 7.", "3 + 4 = 8 and more words")],
                    padding=True, return_tensors="pt")
    scores = judge(enc["input_ids"], enc["attention_mask"])
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    save_discriminator(judge, tokenizer, tmp_path / "judge")
    judge2, tokenizer2 = load_discriminator(tmp_path / "judge")
    enc2 = tokenizer2([judge_text("Tom has 3 apples.", r) for r in ("3 + 4 = 7.", "3 + 4 = 8 and more words")],
                      padding=True, return_tensors="pt")
    torch.testing.assert_close(judge2.eval()(enc2["input_ids"], enc2["attention_mask"]), scores)
