"""Shared pieces of the deploy/ checks: the report, YAML loading, the metric names
the code exports, and PromQL inspection."""

import re
from pathlib import Path

import promql_parser
import yaml


class Report:
    """Counts what was checked and collects what is wrong, per section."""

    def __init__(self):
        self.problems = []
        self.checked = {}

    def check(self, section, ok, message):
        """Records one check; `message` says what is wrong when `ok` is false."""
        self.checked[section] = self.checked.get(section, 0) + 1
        if not ok:
            self.problems.append(f"{section}: {message}")
            print(f"PROBLEM {section}: {message}")
        return ok

    def summary(self):
        for section, n in sorted(self.checked.items()):
            bad = sum(1 for p in self.problems if p.startswith(section + ":"))
            print(f"{section}: {n} checks, {bad} problems")


def load_yaml_docs(path):
    """Every document of a YAML file, empty ones dropped (merge keys resolved)."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# ---------------------------------------------------------------- metrics ---

# `metrics::counter!("name"`, `metrics::gauge!(`, `metrics::histogram!(` and the
# hand-written `# TYPE name kind` lines of /metrics.
MACRO = re.compile(r'\b(counter|gauge|histogram)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
TYPE_LINE = re.compile(r"# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary)")
CRATES = ["src", "model", "ingest", "pipeline", "query", "dashboard-api", "simulator"]


def exported_metrics(repo):
    """{series name: kind} of every metric the binary can export. A histogram is
    rendered by metrics-exporter-prometheus as a summary (no buckets are configured),
    so its series are the name itself (with a `quantile` label), _sum and _count."""
    kinds = {}
    for crate in CRATES:
        for path in sorted((Path(repo) / crate).rglob("*.rs")):
            text = path.read_text(encoding="utf-8")
            for kind, name in MACRO.findall(text):
                kinds[name] = kind
            for name, kind in TYPE_LINE.findall(text):
                kinds[name] = kind
    series = {}
    for name, kind in kinds.items():
        if kind == "histogram":
            series[name] = "summary"
            series[name + "_sum"] = "counter"
            series[name + "_count"] = "counter"
        else:
            series[name] = kind
    return series


# Series from other exporters that the dashboard and rules may name, with where they
# come from. Anything else must be exported by egret.
EXTERNAL_SERIES = {
    "up": "gauge",  # Prometheus itself, per scrape target
    "container_memory_working_set_bytes": "gauge",  # the kubelet's cAdvisor
}

COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
GAUGE_FUNCTIONS = {"delta", "idelta", "deriv", "predict_linear"}


def grafana_to_promql(expr):
    """Grafana's variables replaced by something PromQL parses."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    expr = re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*(:[a-z]+)?\}?", ".*", expr)
    return expr


def _children(node):
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield child
    for child in getattr(node, "args", None) or []:
        yield child


def selectors(node, inside=None):
    """(metric name, innermost function applied to it, label matchers) of every
    vector selector in a parsed expression."""
    if isinstance(node, promql_parser.VectorSelector):
        labels = {m.name: m.value for m in node.matchers.matchers}
        yield node.name or labels.get("__name__"), inside, labels
        return
    if isinstance(node, promql_parser.Call):
        inside = node.func.name
    for child in _children(node):
        yield from selectors(child, inside)


def check_promql(report, section, where, expr, known):
    """Parses `expr` and checks every series it names against `known` ({name: kind}):
    it must exist, rate-like functions must take counters, delta-like ones gauges,
    and a summary's quantile series must not be rated. Returns the names used."""
    try:
        ast = promql_parser.parse(expr)
    except ValueError as e:
        report.check(section, False, f"{where}: PromQL does not parse ({e}): {expr}")
        return set()
    report.check(section, True, "")
    used = set()
    for name, function, labels in selectors(ast):
        used.add(name)
        kind = known.get(name)
        if not report.check(section, kind is not None, f"{where}: {name!r} is not a metric egret exports (nor an allowed external one)"):
            continue
        if function in COUNTER_FUNCTIONS:
            report.check(section, kind == "counter", f"{where}: {function}() of {name}, a {kind}, not a counter")
        if function in GAUGE_FUNCTIONS:
            report.check(section, kind == "gauge", f"{where}: {function}() of {name}, a {kind}, not a gauge")
        if kind == "summary":
            report.check(section, "quantile" in labels, f"{where}: {name} is a summary; select a quantile (or use _sum/_count)")
    return used
