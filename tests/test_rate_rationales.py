"""jobs.rate_rationales over real HTTP on 127.0.0.1: a fake OpenAI-compatible judge that prefers the rationale
reaching the gold answer, and otherwise answers by position, so that order flips, ties, unparsed answers and
every seed's counts are checked against numbers worked out by hand."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jobs import rate_rationales
from jobs.rate_rationales import TIE, main, outcome, parse_verdict

ROOT = Path(__file__).resolve().parents[1]
PROMPT = re.compile(r"Correct answer: (.*?)\n\nRationale A:\n(.*?)\n\nRationale B:\n(.*?)\n\nWhich", re.S)


def verdict(label: str, a: str, b: str) -> str:
    """What the fake judge answers: the position of the one rationale ending in the gold number, else "A"."""
    if "garbage" in a:  # only while it is shown first: one answer of the pair is unparsed
        return "I cannot tell."
    if "same" in a and "same" in b:
        return "Tie: both are fine."
    right = [re.findall(r"-?\d+", r)[-1] == label for r in (a, b)]
    if right == [False, True]:
        return "**B** is better"
    return "A" if right == [True, False] else "A, I think"  # both or neither right: a position bias


class Judge(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_GET(self):
        self.reply({"object": "list", "data": [{"id": "fake-judge", "object": "model"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Judge.requests.append(body)
        label, a, b = PROMPT.search(body["messages"][0]["content"]).groups()
        message = {"role": "assistant", "content": verdict(label, a, b)}
        self.reply({"object": "chat.completion", "choices": [{"index": 0, "message": message}]})

    def reply(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def endpoint():
    Judge.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/"  # a trailing /v1/ is accepted
    server.shutdown()
    server.server_close()


GOLD = {f"q{i}": str(10 + i) for i in range(6)}
RIGHT, WRONG = "so the answer is {gold}", "so the answer is 99"
# (dss, qcrd) rationale per question and seed, and what qcrd gets: seed 0 has 2 wins, 3 ties (2 flips, and one
# where dss's first answer is unparsed: no flip), 1 loss; seed 1 has 2 wins, 2 ties (1 flip, 1 agreed tie), 2 losses.
PAIRS = {
    0: [(WRONG, RIGHT), (WRONG, RIGHT), (RIGHT, WRONG), (RIGHT, RIGHT), (WRONG, WRONG), ("garbage 1", RIGHT)],
    1: [(WRONG, RIGHT), (RIGHT, WRONG), (RIGHT, WRONG), ("same 1", "same 2"), (WRONG, WRONG), (WRONG, RIGHT)],
}


def write_run(root: Path) -> Path:
    for seed, pairs in PAIRS.items():
        for m, method in enumerate(("dss", "qcrd", "ft")):
            rows = [
                {"id": qid, "question": f"What is {qid}?", "label": gold, "prediction": gold}
                | {"rationale": None if method == "ft" else pair[m].format(gold=gold)}
                for (qid, gold), pair in zip(GOLD.items(), pairs, strict=True)
            ]
            if method == "qcrd":  # only qcrd answered it: never drawn
                rows.append({"id": "extra", "question": "?", "label": "1", "prediction": "1", "rationale": "1"})
            path = root / f"seed_{seed}" / method / "predictions.jsonl"
            path.parent.mkdir(parents=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.parametrize(
    ("answer", "parsed"),
    [
        ("A", "A"),
        ("**B** is better", "B"),
        ("Tie.", TIE),
        ("TIE", TIE),
        ("a tie", TIE),
        ("Answer: B", "B"),
        ("?", None),
    ],
)
def test_parse_verdict_takes_the_first_token(answer, parsed):
    assert parse_verdict(answer) == parsed


def test_a_verdict_that_changes_with_the_order_is_a_tie():
    methods = ("dss", "qcrd")
    assert outcome("qcrd", "qcrd", methods) == "win" and outcome("dss", "dss", methods) == "loss"
    assert {outcome("dss", "qcrd", methods), outcome("qcrd", TIE, methods), outcome(None, None, methods)} == {TIE}


def test_counts_flips_and_seeds_over_http(tmp_path, endpoint, capsys):
    run = write_run(tmp_path / "run")
    assert main(["--run", str(run), "--endpoint", endpoint]) == 0
    result = json.loads((run / "rationale_ratings.json").read_text())
    assert result["model"] == "fake-judge" and result["endpoint"] == endpoint.removesuffix("/v1/")
    assert sorted(result["question_ids"]) == sorted(GOLD)  # 50 asked, 6 shared: "extra" is qcrd's alone
    assert "{a}" in result["prompt_template"] and result["methods"] == ["dss", "qcrd"]
    per_seed = {
        s: {k: t[k] for k in ("wins", "ties", "losses", "flips", "unparsed")} for s, t in result["per_seed"].items()
    }
    assert per_seed == {
        "0": {"wins": 2, "ties": 3, "losses": 1, "flips": 2, "unparsed": 1},
        "1": {"wins": 2, "ties": 2, "losses": 2, "flips": 1, "unparsed": 0},
    }
    totals = result["totals"]
    assert (totals["questions"], totals["wins"], totals["ties"], totals["losses"]) == (12, 4, 5, 3)
    assert (totals["flips"], totals["flip_rate"], totals["unparsed"]) == (3, 0.25, 1)
    both_right = next(r for r in result["ratings"] if r["seed"] == 0 and r["id"] == "q3")
    assert both_right["answers"] == ["A, I think", "A, I think"] and both_right["verdicts"] == ["dss", "qcrd"]
    assert both_right["outcome"] == TIE and both_right["flipped"]
    assert len(Judge.requests) == 24 and {r["model"] for r in Judge.requests} == {"fake-judge"}
    shown = [PROMPT.search(r["messages"][0]["content"]).groups()[1:] for r in Judge.requests]
    assert shown[1::2] == [(b, a) for a, b in shown[::2]]  # each pair asked twice, swapped the second time
    qid = result["question_ids"][0]
    assert shown[0][0] == PAIRS[0][int(qid[1:])][0].format(gold=GOLD[qid])  # method1 (dss) is A first
    table = capsys.readouterr().out
    assert "| all | 12 | 4 | 5 | 3 | 3 (25.0%) | 1 |" in table and "| 0 | 6 | 2 | 3 | 1 | 2 (33.3%) | 1 |" in table


def test_the_same_seeded_draw_for_every_seed(tmp_path, endpoint):
    run = write_run(tmp_path / "run")
    drawn = []
    for seed in (0, 0, 1):
        out = tmp_path / f"ratings_{len(drawn)}.json"
        assert (
            main(
                ["--run", str(run), "--endpoint", endpoint, "--questions", "3", "--seed", str(seed)]
                + ["--out", str(out)]
            )
            == 0
        )
        result = json.loads(out.read_text())
        assert {r["seed"] for r in result["ratings"]} == {0, 1} and result["totals"]["questions"] == 6
        assert [r["id"] for r in result["ratings"]] == result["question_ids"] * 2
        drawn.append(result["question_ids"])
    assert drawn[0] == drawn[1] and drawn[0] != drawn[2] and set(drawn[0]) < set(GOLD)
    assert drawn[0] == random.Random(0).sample(sorted(GOLD), 3)  # reproducible anywhere: not set or file order


def bad_json(run: Path) -> tuple[Path, str]:
    path = run / "seed_1" / "qcrd" / "predictions.jsonl"
    path.write_text(path.read_text().replace('"q2"', "q2"))
    return run, f"{path}:3: not valid JSON"


def missing(run: Path) -> tuple[Path, str]:
    path = run / "seed_1" / "dss" / "predictions.jsonl"
    path.unlink()
    return run, f"{path}: missing"


@pytest.mark.parametrize(
    ("methods", "breaks"),
    [
        ("dss,qcrd", missing),
        ("dss,qcrd", bad_json),
        ("dss,ft", lambda run: (run, f"{run}/seed_0/ft/predictions.jsonl:1: rationale is null")),
        ("dss,qcrd", lambda run: (run / "nowhere", f"{run}/nowhere: no such run directory")),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, endpoint, capsys, methods, breaks):
    run, message = breaks(write_run(tmp_path / "run"))
    assert main(["--run", str(run), "--endpoint", endpoint, "--methods", methods]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {err.removeprefix('error: ').strip()}\n" and message in err
    assert Judge.requests == []  # checked before the judge is asked anything


def test_the_command_line_exits_2_without_a_traceback(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "seed_0" / "qcrd" / "predictions.jsonl").unlink()
    # An endpoint nothing listens on: the input is checked first, so it is never asked.
    args = ["--run", str(run), "--endpoint", "http://127.0.0.1:9"]
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.rate_rationales", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip() == f"error: {run}/seed_0/qcrd/predictions.jsonl: missing (the final evaluation writes it)"
    )


def test_an_unreachable_judge_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(rate_rationales.time, "sleep", lambda s: None)  # the retries' back-off
    run = write_run(tmp_path / "run")
    assert main(["--run", str(run), "--endpoint", "http://127.0.0.1:9", "--model", "m"]) == 2
    assert capsys.readouterr().err.startswith("error: judge at http://127.0.0.1:9/v1/chat/completions: ")
