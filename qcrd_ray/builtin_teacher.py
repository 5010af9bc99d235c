"""The project's own tiny teacher LLM for the toy arithmetic task, trained here on first use.

A newcomer with no GPU and no hub still needs a teacher that is right often but not always, whose mistakes
differ between samples, so that self-consistency has something to vote on. This module trains one: a small
Llama-style causal LM (an architecture vLLM also serves) on the toy task's deliberately imperfect rationales
(``toy.teacher_training_text``), with a byte-level BPE that splits numbers into digits. The result is a
plain transformers directory (``save_pretrained``). The recipe's build is shipped with the package
(``qcrd_ray/assets``, 2.7 MB; building it takes ~16 min on 2 cores); any other seed or a ``--force`` rebuild is
trained here and cached, so it is built once per machine.
"""

from __future__ import annotations

import contextlib
import fcntl  # POSIX only, as is Ray's CPU tooling on these machines
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from qcrd_ray import stories
from qcrd_ray.records import Example
from qcrd_ray.tokenizer import SPECIAL_TOKENS
from qcrd_ray.toy import (
    completion_text,
    generate_split,
    gold_rationale,
    parse_answer,
    prompt_text,
    teacher_training_text,
)

VERSION = "v2"
# The teacher's training questions come from the "train" split family with their own seed, so they never
# include a validation or test question (toy.py partitions questions by hash) and differ from the
# distillation set drawn with the run's seed.
DATA_SEED_OFFSET = 1000
DONE_MARKER = "build_info.json"
SHIPPED_ROOT = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class TeacherRecipe:
    """Everything that decides the built teacher (fixed per VERSION: the cache name carries the version)."""

    num_questions: int = 16000
    error_rate: float = 0.2  # share of training rationales with a deliberate slip
    vocab_size: int = 512  # an upper bound: the task's few words saturate it below 512
    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    intermediate_size: int = 384
    steps: int = 1500  # 500 steps: 11% single-sample accuracy; 1000: 61%; 1500: 85% (SC over 5: 93%)
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 40
    weight_decay: float = 0.01


# The stories (qcrd_ray/stories.py) are harder: at the piles' 1,500 steps on 16,000 questions their teacher is
# right 31% of the time at T = 1.0 (41% by the vote of five); a slip in a quarter of its texts.
RECIPES = {"arith": TeacherRecipe(), "stories": TeacherRecipe(num_questions=32000, error_rate=0.25, steps=5000)}


def default_cache_root() -> Path:
    """``$QCRD_CACHE`` or ``~/.cache/qcrd-ray``."""
    return Path(os.environ.get("QCRD_CACHE") or Path.home() / ".cache" / "qcrd-ray")


def teacher_dir_name(name: str = "arith", seed: int = 0) -> str:
    return f"teacher-{name}-{VERSION}" + (f"-seed{seed}" if seed else "")


def ensure_builtin_teacher(
    name: str = "arith", cache_dir: str | Path | None = None, seed: int = 0, force: bool = False
) -> Path:
    """The directory of the built-in teacher (a transformers causal LM + tokenizer).

    The shipped build when it matches the recipe and seed (and no ``cache_dir`` or ``force`` asks otherwise);
    else built on first use and cached as ``<cache_dir or $QCRD_CACHE or ~/.cache/qcrd-ray>/teacher-arith-v2``.
    The build writes into a temporary directory and renames it into place at the end, under a file lock, so a
    killed build never leaves a half teacher that looks whole and two processes never build over each other.
    """
    if name not in RECIPES:
        raise ValueError(f"builtin_teacher.py: unknown built-in teacher {name!r} (known: {', '.join(RECIPES)})")
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / teacher_dir_name(name, seed)
    recipe = RECIPES[name]
    shipped = SHIPPED_ROOT / teacher_dir_name(name, seed)
    if cache_dir is None and not force and _is_built(shipped, recipe, seed):
        return shipped
    if not force and _is_built(target, recipe, seed):
        return target
    with _file_lock(root / f".{target.name}.lock"):
        if not force and _is_built(target, recipe, seed):  # another process finished it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=root))
        try:
            build_teacher(tmp, recipe, seed=seed, name=name)
            if target.exists():  # a leftover of another recipe, or --force: move it aside, then swap in
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=root))
                os.rename(target, old / "teacher")
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_built(target: Path, recipe: TeacherRecipe, seed: int) -> bool:
    """Whole (its marker is written last) and built by this very recipe and seed."""
    marker = target / DONE_MARKER
    if not marker.is_file():
        return False
    info = json.loads(marker.read_text())
    return info.get("version") == VERSION and info.get("seed") == seed and info.get("recipe") == asdict(recipe)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train_teacher_tokenizer(texts: Sequence[str], vocab_size: int):
    """Train the teacher's tokenizer on ``texts``: a byte-level BPE for a causal LM, numbers split into single
    digits (so sums are learnable digit by digit) and no post-processor (``qcrd_ray.tokenizer`` appends
    ``</s>``; here the EOS is a trained target that the builder appends itself). Left padding, as batched
    generation needs."""
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r" ?\d"), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left", **SPECIAL_TOKENS)


def build_teacher(
    out_dir: str | Path, recipe: TeacherRecipe, seed: int = 0, log_every: int = 100, *, name: str = "arith"
) -> dict:
    """Train the teacher of task ``name`` (``arith``: the piles of ``qcrd_ray.toy``; ``stories``:
    ``qcrd_ray.stories``) from scratch on CPU and ``save_pretrained`` it (model + tokenizer) into ``out_dir``.

    Returns the build info (also written last, as ``build_info.json``): recipe, seconds, final loss.
    """
    started = time.perf_counter()
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    if name == "stories":
        texts = stories.teacher_training_texts(recipe.num_questions, DATA_SEED_OFFSET + seed, recipe.error_rate)
    else:
        examples = generate_split("train", recipe.num_questions, seed=DATA_SEED_OFFSET + seed)
        texts = [teacher_training_text(ex, rng, recipe.error_rate) for ex in examples]
    tokenizer = train_teacher_tokenizer(texts, recipe.vocab_size)
    sequences = _tokenize_for_training(tokenizer, texts)
    max_len = max(len(ids) for ids, _ in sequences)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_heads,
        max_position_embeddings=max(256, 2 * max_len),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, recipe))
    batches = _length_grouped_batches([len(ids) for ids, _ in sequences], recipe.batch_size, rng)
    losses: list[float] = []
    for step in range(recipe.steps):
        batch = [sequences[i] for i in next(batches)]
        input_ids, attention_mask, labels = _collate(batch, tokenizer.pad_token_id)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(
                f"[builtin_teacher] step {step + 1}/{recipe.steps} loss {recent:.3f} ({time.perf_counter() - started:.0f}s)"
            )

    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    tail = losses[-min(50, len(losses)) :]
    info = {
        "version": VERSION,
        "seed": seed,
        "data_seed": DATA_SEED_OFFSET + seed,
        "recipe": asdict(recipe),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(tail) / len(tail),
        "build_seconds": time.perf_counter() - started,
    }
    (out_dir / DONE_MARKER).write_text(json.dumps(info, indent=2) + "\n")  # written last: marks it whole
    return info


def _lr_factor(step: int, recipe: TeacherRecipe) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Endless shuffled batches of indices whose sequences have similar lengths (little padding to pay for):
    each epoch is shuffled, cut into pools of 32 batches, each pool sorted by length and cut into batches."""
    if len(lengths) < batch_size:
        raise ValueError(f"builtin_teacher.py: {len(lengths)} training sequences cannot fill a batch of {batch_size}")
    pool = 32 * batch_size
    while True:
        order = rng.sample(range(len(lengths)), len(lengths))
        epoch = []
        for start in range(0, len(order) - batch_size + 1, pool):
            chunk = sorted(order[start : start + pool], key=lengths.__getitem__)
            epoch += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
        rng.shuffle(epoch)
        yield from epoch


def _tokenize_for_training(tokenizer, texts: Sequence[str]) -> list[tuple[list[int], int]]:
    """``(ids, prompt_length)`` per text: prompt and completion tokenized apart (as at inference) + EOS."""
    prompts, completions = [], []
    for text in texts:
        cut = text.index("\nA:") + len("\nA:")
        prompts.append(text[:cut])
        completions.append(text[cut:])
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    return [(p + c + [tokenizer.eos_token_id], len(p)) for p, c in zip(prompt_ids, completion_ids, strict=True)]


def _collate(batch: Sequence[tuple[list[int], int]], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` [batch, max_len]; the loss falls on the
    completion (and its EOS) only: prompt and padding positions are labelled -100."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, prompt_len : len(ids)] = torch.tensor(ids[prompt_len:])
    return input_ids, attention_mask, labels


def evaluate_teacher(
    path: str | Path,
    examples: Sequence[Example],
    *,
    k: int = 5,
    temperature: float = 0.7,
    seed: int = 0,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
) -> dict:
    """Single-sample and self-consistency accuracy of a teacher on ``examples``.

    Each question is sampled ``k`` times (``num_return_sequences``) in left-padded batches of ``batch_size``
    questions. ``accuracy`` is the mean over all k * N samples (the expected single-sample accuracy);
    ``sc_accuracy`` is the accuracy of the majority answer of each question's k samples (ties: the answer
    seen first; unparsed samples do not vote).
    """
    started = time.perf_counter()
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    if max_new_tokens is None:  # room for the longest gold completion plus a slip's worth of slack
        gold = [
            completion_text(ex.rationales[0].text, gold_rationale(ex).answer) if ex.rationales else ""
            for ex in examples
        ]
        max_new_tokens = max(len(ids) for ids in tokenizer(gold, add_special_tokens=False)["input_ids"]) + 16
    completions: list[list[str]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        enc = tokenizer(
            [prompt_text(ex.input) for ex in chunk], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                num_return_sequences=k,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        completions += [texts[i * k : (i + 1) * k] for i in range(len(chunk))]
    correct = parsed = sc_correct = 0
    for ex, samples in zip(examples, completions, strict=True):
        answers = [parse_answer(text) for text in samples]
        parsed += sum(a is not None for a in answers)
        correct += sum(a == gold_rationale(ex).answer for a in answers)
        votes = Counter(a for a in answers if a is not None)
        sc_correct += bool(votes) and votes.most_common(1)[0][0] == gold_rationale(ex).answer
    n = len(examples)
    return {
        "num_questions": n,
        "k": k,
        "temperature": temperature,
        "accuracy": correct / (n * k),
        "sc_accuracy": sc_correct / n,
        "parse_rate": parsed / (n * k),
        "seconds": time.perf_counter() - started,
        "example_completion": completions[0][0] if completions else "",
    }
