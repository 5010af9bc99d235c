"""Rate two methods' student rationales pairwise with an LLM judge (the paper's Table 7), for any task.

    python -m jobs.rate_rationales --run runs/qcrd --endpoint http://127.0.0.1:8000 [--model NAME]
        [--methods dss,qcrd] [--questions 50] [--seed 0] [--out FILE]

Reads each ``{run}/seed_<s>/<method>/predictions.jsonl`` that the final evaluation writes, draws the same
``--questions`` test questions for every seed (from those both methods answered in every seed), and asks an
OpenAI-compatible judge (``POST {endpoint}/v1/chat/completions``) which rationale is better, in both orders: LLM
judges favour a position, so a method wins a question only when both orders name it, and anything else is a tie.
Prints wins / ties / losses of the second method against the first and writes them, with every verdict, the model,
the endpoint and the prompt, to ``--out`` (default ``{run}/rationale_ratings.json``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from qcrd_ray.data import read_json_lines  # its errors name the file and line
from qcrd_ray.errors import DataError
from qcrd_ray.evaluation import PREDICTIONS_FILE

PROMPT = """Two students explained their answer to the same question. Judge the explanations, not the students.

Question: {question}
Correct answer: {label}

Rationale A:
{a}

Rationale B:
{b}

Which rationale reasons more correctly and clearly towards the correct answer? Reply with one word: A, B or tie."""
VERDICT = re.compile(r"\b(A|B|(?i:tie))\b")  # A and B in capitals only: "a" is the English article
TIE = "tie"
Preds = dict[int, tuple[dict, dict]]  # seed -> (method1, method2) predictions by question id


class JudgeError(RuntimeError):
    """The judge endpoint could not be reached or answered out of shape."""


@dataclass(frozen=True)
class Rating:
    """One question of one seed: the judge's raw answers (method1 as A, then as B) and what they add up to."""

    seed: int
    id: str
    answers: tuple[str, str]
    verdicts: tuple[str | None, str | None]  # the method each order names, "tie", or None when unparsed
    outcome: str  # for method2 against method1: "win", "tie" or "loss"
    flipped: bool  # both answers parsed and they differ: the order changed the verdict


def parse_verdict(answer: str) -> str | None:
    """The first "A", "B" or "tie" token of a judge's answer ("tie" in any case), None when there is none."""
    match = VERDICT.search(answer)
    return None if match is None else match.group(1) if match.group(1) in ("A", "B") else TIE


def outcome(first: str | None, second: str | None, methods: tuple[str, str]) -> str:
    """Method2's result from both orders' verdicts: a win or loss only when both orders name the same method."""
    return {methods[1]: "win", methods[0]: "loss"}.get(first, TIE) if first == second else TIE


def load_predictions(path: Path) -> dict[str, dict]:
    """A method's predictions by id; DataError naming the file (and line) when it is missing or malformed."""
    if not path.is_file():
        raise DataError(f"{path}: missing (the final evaluation writes it)")
    rows: dict[str, dict] = {}
    for number, row in read_json_lines(path):
        where = f"{path}:{number}"
        for key in ("id", "question", "label"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{where}: {key!r} must be a string")
        if row.get("rationale") is None:
            raise DataError(f"{where}: rationale is null: this method writes no rationales to rate")
        if not isinstance(row["rationale"], str):
            raise DataError(f"{where}: 'rationale' must be a string or null")
        if row["id"] in rows:
            raise DataError(f"{where}: id {row['id']!r} appears twice")
        rows[row["id"]] = row
    return rows


def load_run(run: Path, methods: tuple[str, str]) -> Preds:
    """Both methods' predictions for each ``seed_<s>`` of a run, read and checked before the judge is asked."""
    if not run.is_dir():
        raise DataError(f"{run}: no such run directory")
    dirs = sorted((int(p.name[5:]), p) for p in run.glob("seed_*") if p.is_dir() and p.name[5:].isdigit())
    if not dirs:
        raise DataError(f"{run}: no seed_<s> directories")
    return {s: tuple(load_predictions(d / m / PREDICTIONS_FILE) for m in methods) for s, d in dirs}


def draw(preds: Preds, questions: int, seed: int) -> list[str]:
    """The ids rated in every seed: ``questions`` of those both methods answered in every seed."""
    common = set.intersection(*(set(p) for pair in preds.values() for p in pair))
    if not common:
        raise DataError("the two methods share no question ids in every seed")
    # Sorted first: the draw then depends on the seed alone, not on file or set order.
    return random.Random(seed).sample(sorted(common), min(questions, len(common)))


def ask(endpoint: str, path: str, body: dict | None = None, attempts: int = 3) -> dict:
    """GET (no body) or POST JSON to the judge; transient failures are retried, the last one is a JudgeError."""
    url = f"{endpoint}{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())
        except (OSError, ValueError) as err:  # URLError, HTTPError and timeouts are OSErrors; bad JSON a ValueError
            if (isinstance(err, urllib.error.HTTPError) and err.code < 500) or attempt == attempts - 1:
                raise JudgeError(f"judge at {url}: {err}") from None  # a 4xx request stays bad: no retry
            time.sleep(2**attempt)
    return {}  # not reached: the last attempt returns or raises


def served_model(endpoint: str) -> str:
    """The first model an endpoint serves (``GET /v1/models``)."""
    try:
        return str(ask(endpoint, "/v1/models")["data"][0]["id"])
    except (KeyError, IndexError, TypeError):
        raise JudgeError(f"judge at {endpoint}/v1/models lists no model: pass --model") from None


def judge(endpoint: str, model: str, question: dict, a: str, b: str) -> str:
    """The judge's answer text for one ordered pair (greedy, a few tokens)."""
    prompt = PROMPT.format(question=question["question"], label=question["label"], a=a, b=b)
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 16}
    reply = ask(endpoint, "/v1/chat/completions", body)
    try:
        return str(reply["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        raise JudgeError(f"judge at {endpoint}: no choices[0].message.content in {str(reply)[:200]}") from None


def rate(preds: Preds, ids: list[str], endpoint: str, model: str, methods: tuple[str, str]) -> list[Rating]:
    """Each seed's pair of rationales for each id, judged in both orders."""
    ratings = []
    for s, (first, second) in preds.items():
        for qid in ids:
            x, y = first[qid]["rationale"], second[qid]["rationale"]
            answers = (judge(endpoint, model, first[qid], x, y), judge(endpoint, model, first[qid], y, x))
            # The second order shows method2 as A: its position maps to the other method.
            raw = [parse_verdict(a) for a in answers]
            verdicts = tuple(v if v in (None, TIE) else methods["AB".index(v) ^ i] for i, v in enumerate(raw))
            flipped = None not in verdicts and verdicts[0] != verdicts[1]
            ratings.append(Rating(s, qid, answers, verdicts, outcome(*verdicts, methods), flipped))
    return ratings


def totals(ratings: list[Rating]) -> dict:
    """Wins, ties and losses of method2, order flips and their share, and unparsed answers over some ratings."""
    flips = sum(r.flipped for r in ratings)
    return {
        "questions": len(ratings),
        "wins": sum(r.outcome == "win" for r in ratings),
        "ties": sum(r.outcome == TIE for r in ratings),
        "losses": sum(r.outcome == "loss" for r in ratings),
        "flips": flips,
        "flip_rate": flips / len(ratings) if ratings else 0.0,
        "unparsed": sum(v is None for r in ratings for v in r.verdicts),
    }


def markdown(result: dict) -> str:
    """The ratings as a table: one row per seed, then their sum."""
    first, second = result["methods"]
    lines = [
        f"{second} vs {first}, judged by {result['model']} at {result['endpoint']} (both orders per question)",
        "",
        f"| seed | questions | {second} wins | ties | {second} losses | order flips | unparsed answers |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, t in [*result["per_seed"].items(), ("all", result["totals"])]:
        flips = f"{t['flips']} ({100 * t['flip_rate']:.1f}%)"
        lines.append(
            f"| {seed} | {t['questions']} | {t['wins']} | {t['ties']} | {t['losses']} | {flips} | {t['unparsed']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Rate, print the table, write the JSON; a bad input or an unreachable judge is one line on stderr, exit 2."""
    parser = argparse.ArgumentParser(prog="qcrd rate-rationales", description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="a run directory with seed_<s>/<method>/")
    parser.add_argument("--endpoint", required=True, help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="the judge model (default: the first the endpoint serves)")
    parser.add_argument("--methods", default="dss,qcrd", help="method1,method2: rate method2 against method1")
    parser.add_argument("--questions", type=int, default=50, help="test questions drawn (the same for every seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the question draw")
    parser.add_argument("--out", type=Path, help="JSON output (default: {run}/rationale_ratings.json)")
    args = parser.parse_args(argv)
    methods = tuple(args.methods.split(","))
    if len(methods) != 2 or len(set(methods)) != 2 or "" in methods:
        parser.error(f"--methods: two different method names such as dss,qcrd, got {args.methods!r}")
    if args.questions < 1:
        parser.error("--questions: at least 1")
    endpoint = re.sub(r"(/v1)?/*$", "", args.endpoint)  # accept http://host:port and http://host:port/v1
    try:
        preds = load_run(args.run, methods)
        ids = draw(preds, args.questions, args.seed)
        model = args.model or served_model(endpoint)
        ratings = rate(preds, ids, endpoint, model, methods)
    except (DataError, JudgeError, OSError) as err:  # an OSError (unreadable file) names its file
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or args.run / "rationale_ratings.json"
    result = {
        "run": str(args.run),
        "endpoint": endpoint,
        "model": model,
        "methods": list(methods),
        "selection_seed": args.seed,
        "question_ids": ids,
        "prompt_template": PROMPT,
        "totals": totals(ratings),
        "per_seed": {str(s): totals([r for r in ratings if r.seed == s]) for s in preds},
        "ratings": [asdict(r) for r in ratings],
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
