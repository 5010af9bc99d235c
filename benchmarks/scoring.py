"""Per-rationale scoring for the contrastive loss: encoder once per question vs re-encoding per rationale.

    python -m benchmarks.scoring [--architecture seq2seq|causal] [--d-model 256 --layers 4]

8 questions x 8 rationales, forward + backward (what a training step pays), on a random-init student
(``--d-model 512 --layers 6`` is t5-small's shape; the default is smaller so that the naive loop finishes in
a minute on 2 cores). Baselines on the same batch, in the same process: the naive loop (each pair on its
own, as a per-rationale implementation would) and the batched re-encode (every pair in one padded batch, the
question repeated R times).
"""

from __future__ import annotations

import argparse
import random

import torch

from benchmarks.common import machine, timed
from qcrd_ray.config import StudentConfig, TinyModelConfig
from qcrd_ray.models import build_student, build_tokenizer
from qcrd_ray.scoring import encode_batch, naive_rationale_ce, rationale_ce
from qcrd_ray.toy import generate_split


def repeated_batch(batch: dict) -> dict:
    """The same pairs with every question repeated per rationale: the batched re-encode baseline."""
    mask = batch["rationale_mask"]
    q = mask.nonzero()[:, 0]
    return {
        "input_ids": batch["input_ids"][q],
        "attention_mask": batch["attention_mask"][q],
        "labels": batch["labels"][mask].unsqueeze(1),
        "rationale_mask": torch.ones(len(q), 1, dtype=torch.bool),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--architecture", default="seq2seq", choices=["seq2seq", "causal"])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--rationales", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args(argv)
    examples = generate_split("train", 64, seed=0)
    texts = [ex.input for ex in examples] + [r.text for ex in examples for r in ex.rationales]
    tiny = TinyModelConfig(d_model=args.d_model, num_layers=args.layers, num_heads=8, d_ff=4 * args.d_model)
    cfg = StudentConfig(model=None, architecture=args.architecture, tiny=tiny)
    tokenizer = build_tokenizer(cfg, texts)
    model = build_student(cfg, tokenizer, seed=0)
    rng = random.Random(0)
    chosen = examples[: args.questions]
    prompts = ["explain: " + ex.input for ex in chosen]
    rationales = [[rng.choice(examples).rationales[0].text for _ in range(args.rationales)] for _ in chosen]
    batch = encode_batch(
        tokenizer, prompts, rationales, max_input=256, max_target=128, causal=args.architecture == "causal"
    )
    flat = repeated_batch(batch)

    def step(fn, b):
        model.zero_grad(set_to_none=True)
        fn(model, b).sum().backward()

    once = timed(lambda: step(rationale_ce, batch))
    reencode = timed(lambda: step(rationale_ce, flat))
    naive = timed(lambda: step(naive_rationale_ce, batch), repeats=1)
    pairs = args.questions * args.rationales
    print(
        f"scoring ({args.architecture}, d_model {args.d_model}, {args.layers} layers, {args.questions} questions x "
        f"{args.rationales} rationales, forward+backward) on {machine()}"
    )
    print(f"  naive per-pair loop     {naive:7.3f} s  ({pairs / naive:7.1f} pairs/s)  1.00x")
    print(f"  batched re-encode       {reencode:7.3f} s  ({pairs / reencode:7.1f} pairs/s)  {naive / reencode:.2f}x")
    print(
        f"  encode once per question{once:7.3f} s  ({pairs / once:7.1f} pairs/s)  {naive / once:.2f}x "
        f"(vs batched re-encode {reencode / once:.2f}x)"
    )


if __name__ == "__main__":
    main()
