"""The Grafana dashboard of a run's metrics (``cluster/grafana/qcrd.json``): a panel for each of
``qcrd_ray.metrics.WATCHED_METRICS``.

Like Ray's own dashboards it takes its Prometheus data source from a ``datasource`` variable, so it imports
next to them unchanged; a ``run`` variable picks runs and seeds (the ``run`` tag is ``<run.name>/seed_<s>``).
``python -m qcrd_ray.grafana`` rewrites the shipped file; tests/test_grafana.py holds it equal to this.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from qcrd_ray.metrics import JUDGE_SCORE_METRIC

DASHBOARD_FILE = Path(__file__).resolve().parents[1] / "cluster" / "grafana" / "qcrd.json"
PROMETHEUS_PREFIX = "ray_"  # Ray exports application metrics under this prefix
RUN = 'run=~"$run"'
SCORES = f"{PROMETHEUS_PREFIX}{JUDGE_SCORE_METRIC}"
WINDOW = "[$__rate_interval]"

# (title, unit, [(PromQL, legend)]): one time series panel each, two to a row.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Teacher samples per second", "short", [(f"ray_qcrd_samples_per_second{{{RUN}}}", "{{run}}")]),
    (
        "Teacher: vote agreement and voted accuracy",
        "percentunit",
        [
            (f"ray_qcrd_mean_agreement{{{RUN}}}", "agreement {{run}}"),
            (f"ray_qcrd_self_consistency_accuracy{{{RUN}}}", "voted accuracy {{run}}"),
        ],
    ),
    ("Iteration", "short", [(f'ray_qcrd_iteration{{{RUN}, phase="iteration"}}', "{{method}} {{run}}")]),
    ("Seconds per phase (last block)", "s", [(f"ray_qcrd_phase_seconds{{{RUN}}}", "{{phase}} {{method}} {{run}}")]),
    (
        "Accuracy on predict: and from the student's rationale",
        "percentunit",
        [
            (f"ray_qcrd_accuracy{{{RUN}}}", "predict: {{method}} {{run}}"),
            (f"ray_qcrd_rationale_accuracy{{{RUN}}}", "rationale {{method}} {{run}}"),
        ],
    ),
    (
        "Training losses",
        "short",
        [
            (f"ray_qcrd_loss{{{RUN}}}", "loss {{method}} {{run}}"),
            (f"ray_qcrd_loss_pred{{{RUN}}}", "predict: {{method}} {{run}}"),
            (f"ray_qcrd_loss_cl{{{RUN}}}", "contrastive {{method}} {{run}}"),
        ],
    ),
    (
        "Negatives still inside the margin",
        "percentunit",
        [(f"ray_qcrd_negative_term_active{{{RUN}}}", "{{method}} {{run}}")],
    ),
    (
        "Judge: held-out AUC of positives against",
        "short",
        [
            (f"ray_qcrd_judge_auc_minority{{{RUN}}}", "teacher minority {{run}}"),
            (f"ray_qcrd_judge_auc_student{{{RUN}}}", "student samples {{run}}"),
        ],
    ),
    (
        "Judge: mean score by rationale kind",
        "short",
        [
            (
                f"sum by (kind) (increase({SCORES}_sum{{{RUN}}}{WINDOW}))"
                f" / sum by (kind) (increase({SCORES}_count{{{RUN}}}{WINDOW}))",
                "{{kind}}",
            )
        ],
    ),
    (
        "Judge: median score by rationale kind",
        "short",
        [
            (
                f"histogram_quantile(0.5, sum by (le, kind) (increase({SCORES}_bucket{{{RUN}}}{WINDOW})))",
                "{{kind}}",
            )
        ],
    ),
]


def panel(index: int, title: str, unit: str, queries: list[tuple[str, str]]) -> dict:
    """One time series panel at ``index`` (two to a row, 12 x 8 grid units each)."""
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(queries)
        ],
    }


def dashboard() -> dict:
    """The dashboard as Grafana's import takes it."""
    return {
        "title": "QCRD distillation",
        "uid": "qcrd-ray",
        "tags": ["qcrd", "ray"],
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
                {
                    "name": "run",
                    "label": "Run / seed",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": "label_values(ray_qcrd_iteration, run)",
                    "includeAll": True,
                    "multi": True,
                    "refresh": 2,
                },
            ]
        },
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


def metrics_named(expr: str) -> set[str]:
    """The ``qcrd_*`` metrics a PromQL expression reads (histogram series folded into their metric)."""
    names = re.findall(rf"\b{PROMETHEUS_PREFIX}(qcrd_\w+)", expr)
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith(JUDGE_SCORE_METRIC) else n for n in names}


def main() -> None:
    DASHBOARD_FILE.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_FILE.write_text(json.dumps(dashboard(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {DASHBOARD_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
