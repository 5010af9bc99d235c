"""The project's own pretrained tiny student for the toy arithmetic task: a T5 that can already compute.

A student distilled in the paper (T5) already reads and computes a little; distillation teaches it the task.
A randomly initialised tiny T5 cannot learn arithmetic from 500 questions, so every method would stay at the
floor and nothing would tell them apart. This module pretrains one on generic text of the domain that is
NOT the task (``pretraining_pairs``): arithmetic chains written out step by step ("compute: 14 * 3, - 6" ->
"14 * 3 = 42. 42 - 6 = 36."), their results in one shot ("result: 14 * 3, - 6" -> "36"), copying and number
reading of the domain's words in random order and of short stories, and span filling on those stories. The
stories come from templates of their own: the student knows the task's words but never sees its sentences
("He buys 4 more", "How many ... does Tom have?"), so mapping a story onto a chain is what distillation
adds. Its tokenizer splits digits.

The recipe's build is shipped (``qcrd_ray/assets/student-arith-v2``); ``python -m jobs.build_student
--force`` rebuilds it. ``student.model: builtin:arith-student`` resolves to it (``qcrd_ray.shipped_student``).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import T5Config, T5ForConditionalGeneration

from qcrd_ray import toy
from qcrd_ray.models import generate
from qcrd_ray.shipped_student import DONE_MARKER, VERSION
from qcrd_ray.tokenizer import train_tokenizer
from qcrd_ray.toy import _MUL, _OBJECTS, _PEOPLE, MAX_AMOUNT, MAX_MUL_BASE, MAX_VALUE

# Stories of the domain, in sentences the task never uses. {n} is a number, {p}/{o} people, {obj} objects.
_STORY_SENTENCES = (
    "{p} keeps {n} {obj} in a box.",
    "There are {n} {obj} on the table.",
    "{p} counts {n} {obj} at the market.",
    "A shelf holds {n} {obj}.",
    "{p} and {o} share {n} {obj}.",
    "{p} wants {n} {obj} for a party.",
    "The shop offers {n} {obj} a day.",
    "{o} paints {n} {obj} red.",
    "{p} saw {n} {obj} in the park.",
    "Each bag holds {n} {obj}.",
)
SENTINEL = "<extra_id_0>"


def domain_words() -> list[str]:
    """Every word of the domain, the task's included, as a bag without order: a real student's vocabulary
    knows them all, and copying them is generic. Only the task's sentences stay unseen."""
    texts = [*toy._ADD, *toy._SUB, *toy._MUL.values(), *_STORY_SENTENCES, "has How many does have"]
    words = {w.strip(".:,?") for t in texts for w in t.split() if not w.startswith("{")}
    words |= {p for pair in _PEOPLE for p in pair} | set(toy._OBJECT_PRONOUN.values()) | set(_OBJECTS)
    return sorted(w for w in words if w)


@dataclass(frozen=True)
class StudentRecipe:
    """Everything that decides the built student (fixed per VERSION)."""

    d_model: int = 128
    num_layers: int = 3
    num_heads: int = 4
    d_ff: int = 512
    vocab_size: int = 512  # an upper bound: the domain's few words saturate it below
    steps: int = 6000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01


RECIPE = StudentRecipe()


# ---------------------------------------------------------------------------------------------------------
# the pretraining corpus


def random_chain(rng: random.Random) -> tuple[int, list[tuple[str, int]]]:
    """A start value and 1-4 operations whose values stay in 1..99, as in the task's arithmetic."""
    value = start = rng.randint(2, MAX_VALUE if rng.random() < 0.3 else 20)
    ops: list[tuple[str, int]] = []
    for _ in range(rng.randint(1, 4)):
        choices = [op for op, ok in (("+", value < MAX_VALUE), ("-", value > 1), ("*", value <= MAX_MUL_BASE)) if ok]
        op = rng.choice(choices)
        if op == "+":
            amount = rng.randint(1, min(MAX_AMOUNT, MAX_VALUE - value))
        elif op == "-":
            amount = rng.randint(1, min(MAX_AMOUNT, value - 1))
        else:
            amount = rng.choice([k for k in _MUL if value * k <= MAX_VALUE])
        ops.append((op, amount))
        value = value + amount if op == "+" else value - amount if op == "-" else value * amount
    return start, ops


def chain_text(start: int, ops: Sequence[tuple[str, int]]) -> tuple[str, str, int]:
    """(the chain as asked, "14 * 3, - 6", its worked computation "14 * 3 = 42. 42 - 6 = 36.", the result)."""
    asked = [f"{start} {ops[0][0]} {ops[0][1]}", *(f"{op} {k}" for op, k in ops[1:])]
    worked, value = [], start
    for op, k in ops:
        result = value + k if op == "+" else value - k if op == "-" else value * k
        worked.append(f"{value} {op} {k} = {result}.")
        value = result
    return ", ".join(asked), " ".join(worked), value


def random_story(rng: random.Random) -> str:
    """2-3 sentences of the domain from the templates above (never the task's own)."""
    people = [p for p, _ in _PEOPLE]
    sentences = []
    for template in rng.sample(_STORY_SENTENCES, rng.randint(2, 3)):
        p, o = rng.sample(people, 2)
        sentences.append(template.format(p=p, o=o, n=rng.randint(1, MAX_VALUE), obj=rng.choice(_OBJECTS)))
    return " ".join(sentences)


def pretraining_pair(rng: random.Random) -> tuple[str, str]:
    """One (input, target) pair of the pretraining mix."""
    kind = rng.random()
    if kind < 0.45:
        asked, worked, _ = chain_text(*random_chain(rng))
        return f"compute: {asked}", worked
    if kind < 0.70:
        asked, _, result = chain_text(*random_chain(rng))
        return f"result: {asked}", str(result)
    if kind < 0.88:  # copying and reading: the domain's words in random order, with numbers among them
        words = rng.choices(_WORDS, k=rng.randint(6, 16))
        words = [str(rng.randint(1, MAX_VALUE)) if rng.random() < 0.2 else w for w in words]
        text = " ".join(words)
        return (
            (f"copy: {text}", text) if kind < 0.84 else (f"numbers: {text}", " ".join(w for w in words if w.isdigit()))
        )
    story = random_story(rng)
    if kind < 0.93:
        return f"copy: {story}", story
    if kind < 0.96:
        return f"numbers: {story}", " ".join(w for w in story.replace(".", "").split() if w.isdigit())
    words = story.split()
    start = rng.randrange(len(words))
    length = rng.randint(1, min(3, len(words) - start))
    masked = [*words[:start], SENTINEL, *words[start + length :]]
    return f"fill: {' '.join(masked)}", " ".join(words[start : start + length])


_WORDS = domain_words()


def pretraining_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(f"qcrd-student-pretraining/{seed}")
    return [pretraining_pair(rng) for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------
# building


def pretrain_builtin_student(
    out_dir: str | Path, recipe: StudentRecipe = RECIPE, seed: int = 0, log_every: int = 200
) -> dict:
    """Pretrain the student from scratch on CPU and save it (model + tokenizer) into ``out_dir``.

    Returns the build info (also written last, as ``build_info.json``): recipe, seconds, held-out accuracy.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    vocab_texts = [t for pair in pretraining_pairs(20_000, seed + 1) for t in pair] + domain_words()
    # The task's own words must tokenize too: names and objects are shared, the story verbs are byte pieces.
    tokenizer = train_tokenizer([*vocab_texts, SENTINEL], recipe.vocab_size, split_digits=True)
    tokenizer.add_special_tokens({"additional_special_tokens": [SENTINEL]})
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=recipe.d_model,
        d_kv=recipe.d_model // recipe.num_heads,
        d_ff=recipe.d_ff,
        num_layers=recipe.num_layers,
        num_decoder_layers=recipe.num_layers,
        num_heads=recipe.num_heads,
        dropout_rate=0.0,
        tie_word_embeddings=True,  # tied: T5 then rescales its logits
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    model = T5ForConditionalGeneration(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, recipe))
    batches = _batches(tokenizer, recipe.batch_size, seed)
    losses: list[float] = []
    for step in range(recipe.steps):
        enc, labels = next(batches)
        loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / log_every
            print(
                f"[builtin_student] step {step + 1}/{recipe.steps} loss {recent:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    model.eval()
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {
        "version": VERSION,
        "seed": seed,
        "recipe": asdict(recipe),
        "num_parameters": model.num_parameters(),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "build_seconds": time.perf_counter() - started,
        "held_out": evaluate_pretraining(model, tokenizer, seed=seed + 2),
    }
    (out_dir / DONE_MARKER).write_text(json.dumps(info, indent=2) + "\n")  # written last: marks it whole
    return info


def evaluate_pretraining(model, tokenizer, n: int = 500, seed: int = 2) -> dict:
    """Exact-match accuracy on held-out chains, worked out (``compute:``) and in one shot (``result:``)."""
    rng = random.Random(f"qcrd-student-held-out/{seed}")
    chains = [chain_text(*random_chain(rng)) for _ in range(n)]
    worked = generate(
        model,
        tokenizer,
        [f"compute: {a}" for a, _, _ in chains],
        max_new_tokens=64,
        batch_size=100,
        max_input_length=128,
    )
    results = generate(
        model, tokenizer, [f"result: {a}" for a, _, _ in chains], max_new_tokens=8, batch_size=100, max_input_length=128
    )
    return {
        "num_chains": n,
        "compute_exact": sum(o[0].strip() == w for o, (_, w, _) in zip(worked, chains, strict=True)) / n,
        "result_exact": sum(o[0].strip() == str(r) for o, (_, _, r) in zip(results, chains, strict=True)) / n,
    }


def _lr_factor(step: int, recipe: StudentRecipe) -> float:
    """Linear warmup, then cosine decay to 5% of the peak."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _batches(tokenizer, batch_size: int, seed: int) -> Iterator[tuple[dict, object]]:
    """Endless fresh batches of pretraining pairs: (encoder inputs, labels with -100 at padding)."""
    rng = random.Random(f"qcrd-student-pretraining/{seed}")
    while True:
        pairs = [pretraining_pair(rng) for _ in range(batch_size)]
        enc = tokenizer([a for a, _ in pairs], padding=True, return_tensors="pt")
        labels = tokenizer([b for _, b in pairs], padding=True, return_tensors="pt")["input_ids"]
        labels[labels == tokenizer.pad_token_id] = -100
        yield dict(enc), labels
