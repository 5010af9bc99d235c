"""The shipped Grafana dashboard reads only what the run exports, and every watched metric has a panel."""

import json

from qcrd_ray.grafana import DASHBOARD_FILE, dashboard, metrics_named
from qcrd_ray.metrics import WATCHED_METRICS


def test_the_shipped_dashboard_is_the_one_the_code_builds():
    assert json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")) == dashboard(), "run: python -m qcrd_ray.grafana"


def test_every_panel_queries_exported_metrics_and_every_watched_metric_has_a_panel():
    panels = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))["panels"]
    plotted = set()
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for target in p["targets"]:
            named = metrics_named(target["expr"])
            assert named, (p["title"], target["expr"])
            assert named <= set(WATCHED_METRICS), (p["title"], named - set(WATCHED_METRICS))
            plotted |= named
    assert plotted == set(WATCHED_METRICS)
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert metrics_named(variables["run"]["query"]) == {"qcrd_iteration"}
