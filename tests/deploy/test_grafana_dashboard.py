"""deploy/grafana/ccrec.json: every PromQL query names metrics (and labels) that the code
exports. The exported metrics are read from the source: every prometheus_client
Counter/Gauge/Histogram/Summary (and Counter/Gauge metric family of a collector)
constructed in serve/, streaming/ and features/."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "ccrec.json"
#: The sample names each metric type exports, from prometheus_client's exposition.
SUFFIXES = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count"),
            "Summary": ("_sum", "_count", ""),
            # collectors that read state at scrape time (streaming/metrics.py)
            "CounterMetricFamily": ("_total",), "GaugeMetricFamily": ("",)}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "inf", "nan"}


def exported() -> dict[str, set[str]]:
    """Sample name → its label names, for every metric constructed in the service code."""
    out: dict[str, set[str]] = {}
    for directory in ("serve", "streaming", "features"):
        for file in sorted((REPO / directory).glob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in SUFFIXES and node.args
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, str)):
                    continue
                labels_node = node.args[2] if len(node.args) > 2 else next(
                    (k.value for k in node.keywords if k.arg in ("labelnames", "labels")), None)
                labels = {e.value for e in getattr(labels_node, "elts", [])
                          if isinstance(e, ast.Constant)}
                name = node.args[0].value.removesuffix("_total")
                for suffix in SUFFIXES[node.func.id]:
                    out[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
                    if node.func.id == "Summary" and suffix == "":
                        out[name] |= {"quantile"}
    return out


def problems(expr: str, metrics: dict[str, set[str]]) -> list[str]:
    """What in one PromQL expression the code does not export: metrics, then labels."""
    expr = expr.replace("$__rate_interval", "5m")
    labels = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    names = {m.group(1) for m in re.finditer(r"\b([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
             if m.group(1).lower() not in KEYWORDS and not re.fullmatch(r"\d.*", m.group(1))}
    unknown = sorted(n for n in names if n not in metrics)
    known = set().union(*(metrics[n] for n in names if n in metrics))
    return unknown + sorted(f"label {label}" for label in labels - known)


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel["targets"]]


def test_every_query_names_exported_metrics_and_labels():
    metrics = exported()
    assert "ccrec_request_latency_seconds_bucket" in metrics  # the parse finds serve/metrics.py
    queries = _queries()
    assert len(queries) >= 18
    bad = {title + ": " + expr: problems(expr, metrics) for title, expr in queries
           if problems(expr, metrics)}
    assert bad == {}


def test_the_check_catches_unknown_metrics_and_labels():
    metrics = exported()
    assert problems("sum(rate(ccrec_requests_total[5m]))", metrics) == []
    assert problems("rate(ccrec_nothing_total[5m])", metrics) == ["ccrec_nothing_total"]
    assert problems('sum by (user) (ccrec_requests_total{route="/"})', metrics) == ["label user"]
    assert problems("ccrec_request_latency_seconds", metrics) == ["ccrec_request_latency_seconds"]
    assert problems('histogram_quantile(0.9, sum by (le, stage) '
                    '(rate(ccrec_stage_latency_seconds_bucket[$__rate_interval])))', metrics) == []


def test_the_dashboard_covers_the_service():
    titles = " | ".join(title.lower() for title, _ in _queries())
    for topic in ("request latency", "stage latency", "freshness", "events/s", "errors",
                  "model version", "online accuracy", "consumer lag", "dead-letter"):
        assert topic in titles, topic
