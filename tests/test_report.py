"""The run report: files, valid PNGs, the numbers in the table, missing methods and the density helpers."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from qcrd_ray.plots import score_density
from qcrd_ray.report import results_table_markdown, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _summary(seed: int, accuracies: dict[str, float], with_scores: bool = True) -> dict:
    rng = random.Random(seed)
    methods = {}
    for name, final in accuracies.items():
        methods[name] = {
            "accuracy_per_iteration": [final * 0.4, final * 0.7, final],
            "final_accuracy": final,
            **(
                {}
                if name == "finetune"
                else {
                    "rationale_accuracy_per_iteration": [final, final, final + 0.1],
                    "final_rationale_accuracy": final + 0.1,
                }
            ),
            "examples": [
                {
                    "input": f"What is {seed} + 2?",
                    "label": f"{seed} + 2",  # an equation label, scored by its value
                    "prediction": str(seed + 2),
                    "rationale": f"{seed} plus 2 is {seed + 2}.",
                },
                {
                    "input": "What is 3 * 3?",
                    "label": "9",
                    "prediction": "6",
                    "rationale": "" if name == "finetune" else "3 ``` 3",
                },
            ],
        }
    summary = {
        "seed": seed,
        "task": "arith",
        "student": "tiny-t5",
        "teacher": {
            "model": "builtin:arith",
            "single_sample_accuracy": 0.61,
            "self_consistency_accuracy": 0.72 + 0.02 * seed,
            "mean_agreement": 0.68,
            "parsed_fraction": 0.97,
            "fallback_questions": 12,
            "num_questions": 1000,
            "num_samples": 5000,
        },
        "methods": methods,
        "majority_label": {"label": "4", "accuracy": 0.05},
        "phase_seconds": {"teacher": 12.0 + seed, "vote": 0.4, "train": 100.0},
        "total_seconds": 600.0 + 10 * seed,
    }
    if with_scores:
        summary["judge_scores"] = {
            "positives": [min(1.0, max(0.0, rng.gauss(0.75, 0.1))) for _ in range(300)],
            "student_negatives": [min(1.0, max(0.0, rng.gauss(0.3, 0.1))) for _ in range(300)],
            "teacher_negatives": [min(1.0, max(0.0, rng.gauss(0.5, 0.1))) for _ in range(50)],
        }
    return summary


def _two_seeds() -> list[dict]:
    return [
        _summary(0, {"finetune": 0.20, "dss": 0.30, "qcrd": 0.40}),
        _summary(1, {"finetune": 0.30, "dss": 0.40, "qcrd": 0.50, "qcrd_no_judge": 0.45}),
    ]


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000  # a plot with axes, lines and a legend, not an empty canvas


def test_report_files_and_pngs(tmp_path):
    report = write_report(tmp_path / "run", _two_seeds())
    assert report == tmp_path / "run" / "report.md"
    text = report.read_text()
    for png in ("accuracy_per_iteration.png", "judge_scores.png"):
        _assert_png(tmp_path / "run" / png)
        assert f"]({png})" in text
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == _two_seeds()
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_table_holds_mean_std_and_per_seed_values():
    table = results_table_markdown(_two_seeds())
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table.splitlines()[2:]}
    # mean of 20% and 30% is 25%; sample std of the two is 7.07
    assert rows["fine-tuning, predict:"] == ["25.00 ± 7.07", "20.00", "30.00"]
    assert rows["DSS, predict:"] == ["35.00 ± 7.07", "30.00", "40.00"]
    assert rows["QCRD, predict:"] == ["45.00 ± 7.07", "40.00", "50.00"]
    # a student that explains has a second row: the answer read from its own rationale
    assert rows["QCRD, from its rationale"] == ["55.00 ± 7.07", "50.00", "60.00"]
    assert "fine-tuning, from its rationale" not in rows
    # an ablation present in one seed only: its mean is of that seed, and the table says so
    assert rows["qcrd_no_judge, predict:"] == ["45.00 (n=1)", "-", "45.00"]
    assert rows["always the most frequent training answer (4)"] == ["5.00 ± 0.00", "5.00", "5.00"]
    assert rows["teacher, single sample"][0] == "61.00 ± 0.00"
    assert rows["teacher, self-consistency, K=5"] == ["73.00 ± 1.41", "72.00", "74.00"]
    assert list(rows)[:3] == ["fine-tuning, predict:", "DSS, predict:", "QCRD, predict:"]


def test_the_lead_metric_comes_first():
    summaries = [{**s, "lead_metric": "rationale"} for s in _two_seeds()]
    rows = [line.split("|")[1].strip() for line in results_table_markdown(summaries).splitlines()[2:]]
    assert rows[:3] == ["DSS, from its rationale", "QCRD, from its rationale", "qcrd_no_judge, from its rationale"]
    assert rows[3] == "fine-tuning, predict:"
    with pytest.raises(ValueError, match="lead_metric"):
        results_table_markdown([{**summaries[0], "lead_metric": "median"}])


def test_single_seed_table_has_no_spread():
    table = results_table_markdown([_summary(3, {"qcrd": 0.5})])
    assert "| QCRD, predict: | 50.00 |" in table
    assert "±" not in table
    assert "DSS" not in table and "fine-tuning" not in table


def test_report_contents(tmp_path):
    text = write_report(tmp_path, _two_seeds(), num_examples=2).read_text()
    for section in (
        "## Results",
        "## Accuracy per iteration",
        "## Judge scores",
        "## Wall time per phase",
        "## Example rationales",
        "How to read this",
    ):
        assert section in text
    assert "| teacher | 12.5 |" in text  # mean phase seconds of 12 and 13
    # the teacher table: parsed share, agreement, and the questions whose positive is the gold fallback
    assert "| 0 | builtin:arith | 1000 | 5000 | 97.00 | 68.00 | 12 |" in text
    assert "| **total** | 605.0 | 100.0% | 600.0 | 610.0 |" in text
    # examples: both of the first seed's, the wrong one marked, the backtick fence not broken by the content
    assert "prediction: 2 (correct)" in text and "prediction: 6 (wrong)" in text
    assert "````text\ninput:      What is 3 * 3?" in text
    assert "rationale:  0 plus 2 is 2." in text
    # the judge separates positives (around 0.75) from student negatives (around 0.3)
    line = next(ln for ln in text.splitlines() if "student negatives)" in ln and ln.startswith("- P("))
    assert float(line.split("= ")[1].split(" ")[0]) > 0.95


def test_the_start_up_row_counts_the_fit_once_and_each_methods_set_up(tmp_path):
    summary = _summary(0, {"finetune": 0.2, "dss": 0.3, "qcrd": 0.4})
    summary["methods"]["finetune"]["history"] = [{"worker_start_seconds": 20.0, "setup_seconds": 4.0}, {}]
    summary["methods"]["dss"]["history"] = [{"setup_seconds": 3.0}, {}]
    summary["methods"]["qcrd"]["history"] = [{"setup_seconds": 3.0}, {}]
    text = write_report(tmp_path, [summary]).read_text()
    assert "| of which Ray Train start-up (workers, set-up) | 30.0 | 5.0% |" in text  # of 600 s


def test_missing_methods_scores_and_timings(tmp_path):
    only_qcrd = [_summary(0, {"qcrd": 0.4}, with_scores=False), _summary(1, {"qcrd": 0.6}, with_scores=False)]
    for s in only_qcrd:
        del s["phase_seconds"], s["total_seconds"], s["teacher"], s["majority_label"]
    text = write_report(tmp_path, only_qcrd).read_text()
    assert "| QCRD, predict: | 50.00 ± 14.14 | 40.00 | 60.00 |" in text
    results = text.split("## Results")[1].split("## Accuracy")[0]
    assert "DSS" not in results and "fine-tuning" not in results and "teacher" not in results
    assert "No judge scores" in text and "No timings were recorded." in text
    _assert_png(tmp_path / "accuracy_per_iteration.png")
    assert not (tmp_path / "judge_scores.png").exists()


def test_run_with_no_methods_still_reports(tmp_path):
    summary = _summary(0, {})
    text = write_report(tmp_path, [summary]).read_text()
    assert "teacher, single sample | 61.00" in text
    assert "No per-iteration accuracy was recorded." in text and "No examples were recorded." in text


def test_stale_plot_removed(tmp_path):
    write_report(tmp_path, _two_seeds())
    assert (tmp_path / "judge_scores.png").exists()
    write_report(tmp_path, [_summary(0, {"qcrd": 0.4}, with_scores=False)])
    assert not (tmp_path / "judge_scores.png").exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s[1].update(seed=0), "seeds must differ"),
        (lambda s: s[1].update(task="svamp"), "one task"),
        (lambda s: s[0]["methods"]["dss"].update(final_accuracy=35.0), "summaries[0].methods.dss.final_accuracy"),
        (lambda s: s[1]["methods"]["qcrd"]["accuracy_per_iteration"].append(1.5), "accuracy_per_iteration[3]"),
        (lambda s: s[0]["teacher"].update(mean_agreement=68), "summaries[0].teacher.mean_agreement"),
        (lambda s: s[1]["majority_label"].update(accuracy=5), "summaries[1].majority_label.accuracy"),
    ],
)
def test_invalid_summaries_raise(tmp_path, mutate, message):
    summaries = _two_seeds()
    mutate(summaries)
    with pytest.raises(ValueError, match=re.escape(message)):
        write_report(tmp_path, summaries)
    assert not (tmp_path / "report.md").exists()


def test_no_summaries_raise(tmp_path):
    with pytest.raises(ValueError, match="at least one summary"):
        write_report(tmp_path, [])


def test_score_density_integrates_to_one_and_peaks_at_the_mode():
    rng = np.random.default_rng(0)
    grid, density = score_density(np.clip(rng.normal(0.7, 0.05, 2000), 0, 1).tolist())
    step = grid[1] - grid[0]
    assert density.sum() * step == pytest.approx(1.0)
    assert abs(grid[np.argmax(density)] - 0.7) < 0.03
    assert density[grid < 0.4].max() < 1e-3 * density.max()
    _, empty = score_density([])
    assert not empty.any()


def test_paired_differences_in_the_report_and_differences_json(tmp_path):
    summaries = _two_seeds()
    for s in summaries:
        s["methods"]["finetune"]["correct"] = [True] * 60 + [False] * 40
        s["methods"]["dss"]["correct"] = [True] * 70 + [False] * 30
    text = write_report(tmp_path, summaries).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| DSS - fine-tuning, predict: |"))
    points, interval, excludes, size = (cell.strip() for cell in row.split("|")[2:6])
    assert (points, excludes, size) == ("+10.00", "yes", "2 x 100")
    # 10 of 200 question-seeds differ: the normal approximation's interval is 10 +- 4.2 points
    low, high = (float(x) for x in interval.strip("[]").split(", "))
    assert low == pytest.approx(5.8, abs=1.0) and high == pytest.approx(14.2, abs=1.0)
    (row,) = json.loads((tmp_path / "differences.json").read_text())
    assert (row["later"], row["earlier"], row["metric"]) == ("dss", "finetune", "predict")
    assert row["difference"]["mean"] == pytest.approx(0.1) and row["difference"]["excludes_zero"]


def test_rationale_quality_table_and_wins_ties_losses(tmp_path):
    summaries = _two_seeds()
    for s in summaries:
        s["methods"]["dss"]["rationale_quality"] = {"fully_correct": 0.2, "answer_right": 0.3}
        s["methods"]["dss"]["rationale_fully_correct"] = [True, False, False, True]
        s["methods"]["qcrd"]["rationale_quality"] = {"fully_correct": 0.4, "answer_right": 0.5}
        s["methods"]["qcrd"]["rationale_fully_correct"] = [True, True, True, False]
    text = write_report(tmp_path, summaries).read_text()
    assert "| DSS | 20.00 | 30.00 |" in text and "| QCRD | 40.00 | 50.00 |" in text
    assert "- QCRD against DSS: 4 wins, 2 ties, 2 losses" in text  # 2 seeds x (2 wins, 1 tie, 1 loss)
    assert "| QCRD - DSS, fully correct rationale | +25.00 |" in text
