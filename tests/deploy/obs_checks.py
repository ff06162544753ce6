"""deploy/grafana and deploy/prometheus: the dashboard and the alert rules, every
PromQL expression parsed and every metric it names checked against what the code
exports (and how: counters are rated, summaries have quantiles)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import promql_parser

from common import EXTERNAL_SERIES, check_promql, grafana_to_promql, load_yaml

# What the issue asks the dashboard and the rules to cover, as the egret metrics that
# carry it today (the rest is listed as missing in the report, not invented here).
DASHBOARD_MUST_USE = {
    "egret_events_consumed_total": "throughput per topic",
    "egret_consumer_lag": "consumer lag",
    "egret_dead_letters_total": "dead letters by reason",
    "egret_watermark_ms": "event-time delay",
    "egret_api_request_seconds": "API latency",
    "egret_violations_total": "violations by kind",
}
ALERTS_MUST_USE = {
    "egret_consumer_lag": "lag",
    "egret_dead_letters_total": "dead-letter spikes",
    "egret_events_consumed_total": "silent readers",
}


def check_grafana(report, repo, known):
    s = "grafana"
    path = Path(repo) / "deploy/grafana/egret-dashboard.json"
    dash = json.loads(path.read_text(encoding="utf-8"))
    for key in ("title", "uid", "panels", "schemaVersion", "templating"):
        report.check(s, key in dash, f"dashboard has no {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    report.check(s, variables.get("datasource", {}).get("type") == "datasource", "a datasource variable, so the dashboard imports into any Grafana")
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    ids = [p.get("id") for p in panels]
    report.check(s, len(ids) == len(set(ids)) and None not in ids, "panel ids must be unique")
    used, cells = set(), {}
    for p in panels:
        where = f"panel {p.get('id')} {p.get('title')!r}"
        g = p.get("gridPos", {})
        report.check(s, all(k in g for k in "hwxy") and g.get("x", 0) + g.get("w", 0) <= 24, f"{where}: gridPos {g}")
        hit = set()
        for cx in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for cy in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (cx, cy) in cells:
                    hit.add(cells[(cx, cy)])
                cells[(cx, cy)] = p.get("id")
        report.check(s, not hit, f"{where} overlaps panels {sorted(hit)}")
        if p.get("type") == "row":
            continue
        report.check(s, p.get("datasource", {}).get("uid") == "${datasource}", f"{where}: use the datasource variable")
        report.check(s, bool(p.get("targets")), f"{where}: no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for var in re.findall(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)", expr):
                report.check(s, var.startswith("__") or var in variables, f"{where}: unknown variable ${var}")
            used |= check_promql(report, s, where, grafana_to_promql(expr), known)
    for metric, what in DASHBOARD_MUST_USE.items():
        report.check(s, metric in used, f"the dashboard shows no {what} ({metric})")
    unused = sorted(m for m in known if m.startswith("egret_") and m not in used and not m.endswith(("_sum", "_count")) and known[m] != "summary")
    print(f"grafana: egret metrics not on the dashboard: {unused or 'none'}")


def output_labels(node):
    """The labels an expression's result keeps: a set, or None when it keeps the
    input series' labels (unknown here)."""
    if isinstance(node, promql_parser.AggregateExpr):
        m = node.modifier
        if m is None:
            return set()
        return set(m.labels) if m.type == promql_parser.AggModifierType.By else None
    if isinstance(node, promql_parser.BinaryExpr):
        left, right = output_labels(node.lhs), output_labels(node.rhs)
        if isinstance(node.lhs, promql_parser.NumberLiteral):
            return right
        return left
    if isinstance(node, promql_parser.ParenExpr):
        return output_labels(node.expr)
    if isinstance(node, promql_parser.Call):
        vectors = [a for a in node.args if not isinstance(a, (promql_parser.NumberLiteral, promql_parser.StringLiteral))]
        return output_labels(vectors[0]) if vectors else set()
    if isinstance(node, promql_parser.MatrixSelector):
        return None
    return None if isinstance(node, promql_parser.VectorSelector) else set()


def check_alerts(report, repo, known):
    s = "alerts"
    doc = load_yaml(Path(repo) / "deploy/prometheus/alerts.yaml")
    rules = [(g.get("name"), r) for g in doc.get("groups", []) for r in g.get("rules", [])]
    report.check(s, bool(rules), "no rules")
    names = [r.get("alert") for _, r in rules]
    report.check(s, len(names) == len(set(names)) and None not in names, "every rule is an alert with a unique name")
    used = set()
    for group, r in rules:
        where = f"{group}/{r.get('alert')}"
        extra = set(r) - {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        report.check(s, not extra, f"{where}: unknown fields {sorted(extra)}")
        report.check(s, r.get("labels", {}).get("severity") in ("warning", "critical"), f"{where}: severity warning or critical")
        report.check(s, bool(r.get("annotations", {}).get("summary")), f"{where}: a summary annotation")
        if "for" in r:
            try:
                promql_parser.parse_duration(str(r["for"]))
                report.check(s, True, "")
            except ValueError:
                report.check(s, False, f"{where}: for: {r['for']!r} is no duration")
        expr = str(r.get("expr", ""))
        used |= check_promql(report, s, where, expr, known)
        try:
            keeps = output_labels(promql_parser.parse(expr))
        except ValueError:
            continue
        text = json.dumps(r.get("annotations", {}))
        for label in re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text):
            report.check(s, keeps is None or label in keeps, f"{where}: the annotations use $labels.{label}, which the expression aggregates away")
    for metric, what in ALERTS_MUST_USE.items():
        report.check(s, metric in used, f"no alert on {what} ({metric})")
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "rules", str(Path(repo) / "deploy/prometheus/alerts.yaml")], capture_output=True, text=True)
        report.check(s, r.returncode == 0, f"promtool check rules: {r.stdout}{r.stderr}")
    else:
        print("alerts: skipped `promtool check rules`: no promtool here (expressions parsed with promql-parser)")


def known_series(exported):
    return {**exported, **EXTERNAL_SERIES}
