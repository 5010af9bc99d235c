"""Class balancing for the judge's pretraining (docs/METHOD.md section 4): synthetic negatives from positives.

Self-consistency leaves far more positives (the majority) than negatives (the minority), so D would learn
"everything is good". The paper balances the classes by corrupting positives: random word masking and random
word replacement. Here a corrupted word is either masked (dropped from the text) or replaced: a number by a
perturbed number (the error that matters in arithmetic rationales), any other word by a word drawn from the
corpus vocabulary. Every draw comes from the caller's seeded ``random.Random``, so a run is reproducible.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

# A word's core number, with any punctuation around it kept apart: "(84.0", "7.", "-3," -> "84.0", "7", "-3".
_NUMBER = re.compile(r"^(?P<pre>\W*?)(?P<num>-?\d+(?:\.\d+)?)(?P<post>\W*)$")


def corpus_vocabulary(texts: Sequence[str]) -> list[str]:
    """The distinct whitespace-separated words of ``texts``, in first-seen order (deterministic)."""
    return list(dict.fromkeys(word for text in texts for word in text.split()))


def perturb_number(word: str, rng: random.Random) -> str | None:
    """A different number in place of the number in ``word`` (punctuation kept), or None if it holds none.

    Integers move by a nonzero offset in [-9, 9]; decimals keep their number of decimal places.
    """
    match = _NUMBER.match(word)
    if match is None:
        return None
    text = match["num"]
    decimals = len(text.split(".")[1]) if "." in text else 0
    offset = rng.choice([d for d in range(-9, 10) if d != 0])
    value = float(text) + offset
    new = f"{value:.{decimals}f}" if decimals else str(int(value))
    return f"{match['pre']}{new}{match['post']}"


def corrupt(text: str, vocabulary: Sequence[str], rng: random.Random, mask_probability: float) -> str:
    """One synthetic negative from ``text``: each word is corrupted with ``mask_probability``.

    A corrupted word is masked (dropped) or replaced (numbers perturbed, other words drawn from
    ``vocabulary``) with equal chance. At least one word is always corrupted, so the result differs from
    ``text`` whenever a change is possible.
    """
    if not 0.0 <= mask_probability < 1.0:
        raise ValueError(f"augment.corrupt: mask_probability must be in [0, 1), got {mask_probability!r}")
    words = text.split()
    if not words:
        raise ValueError("augment.corrupt: cannot corrupt an empty text")
    chosen = [i for i in range(len(words)) if rng.random() < mask_probability]
    if not chosen:
        chosen = [rng.randrange(len(words))]
    out: list[str | None] = list(words)
    for i in chosen:
        if rng.random() < 0.5 and len(words) > 1:
            out[i] = None
            continue
        number = perturb_number(words[i], rng)
        if number is not None:
            out[i] = number
            continue
        others = [w for w in vocabulary if w != words[i]]
        # A one-word vocabulary leaves nothing to swap in: mask instead, the only change available.
        out[i] = rng.choice(others) if others else None
    kept = [w for w in out if w is not None]
    # Masking every word would leave an empty text: keep the last replaced or original word then.
    return " ".join(kept) if kept else words[chosen[0]]


def balance_negatives(
    positives: Sequence[str], negatives: Sequence[str], rng: random.Random, mask_probability: float
) -> list[str]:
    """Augmented negatives that bring ``len(negatives)`` up to ``len(positives)`` (none if already there).

    Positives are used as sources in a shuffled round-robin, so each is corrupted about equally often.
    The vocabulary for replacement words is that of ``positives + negatives``. Texts without words cannot be
    corrupted and are skipped as sources; a result equal to a positive (possible for very short texts) is
    drawn again a few times, then kept out.
    """
    missing = len(positives) - len(negatives)
    sources = [p for p in positives if p.split()]
    if missing <= 0 or not sources:
        return []
    vocabulary = corpus_vocabulary([*positives, *negatives])
    positive_set = set(positives)
    order = list(range(len(sources)))
    rng.shuffle(order)
    augmented: list[str] = []
    for k in range(missing):
        source = sources[order[k % len(order)]]
        for _attempt in range(8):
            candidate = corrupt(source, vocabulary, rng, mask_probability)
            if candidate not in positive_set:
                augmented.append(candidate)
                break
    return augmented
