#!/usr/bin/env python3
"""Cross-checks the observability files against the code, so they say only
what is true:

- every metric a Prometheus rule or a dashboard panel reads is one bookingd
  exports (src/telemetry/metrics.rs, named as the OpenTelemetry Collector's
  prometheus exporter names it), and every label it filters or groups on is
  one of that metric family's attributes (or a label Prometheus/the exporter
  adds);
- every check_name a rule or panel names is an integrity check
  (src/integrity/checks.rs);
- every alert has severity, summary and a runbook_url pointing at a heading
  of docs/operations.md;
- the dashboard JSON parses and every panel query is non-empty.

Usage: python3 deploy/check_observability.py   (from the repository root)
"""

import json
import re
import sys
from pathlib import Path

import yaml  # PyYAML, a dependency of kubernetes-validate

ROOT = Path(__file__).resolve().parent.parent
METRICS_RS = ROOT / "src/telemetry/metrics.rs"
CHECKS_RS = ROOT / "src/integrity/checks.rs"
RULES = ROOT / "deploy/prometheus/alerts.yaml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/bookingd.json"
OPERATIONS = ROOT / "docs/operations.md"

# labels that do not come from bookingd's attributes: Prometheus' own, the
# exporter's (job/instance from service.name/service.instance.id) and the
# resource attributes (resource_to_telemetry_conversion)
EXTRA_LABELS = {"le", "job", "instance", "service_name", "service_instance_id", "k8s_pod_name",
                "deployment_environment_name", "__name__"}
# PromQL words that look like identifiers
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile", "by", "without",
    "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "absent", "absent_over_time",
    "vector", "bool", "topk", "bottomk", "label_values", "clamp_min", "clamp_max", "time", "scalar",
}
UNIT_SUFFIX = {"ms": "milliseconds", "s": "seconds", "By": "bytes"}


def prom_name(otel_name, kind, unit):
    name = otel_name.replace(".", "_")
    if unit and not unit.startswith("{"):
        name += "_" + UNIT_SUFFIX.get(unit, unit)
    if kind == "counter":
        return [name + "_total"]
    if kind == "histogram":
        return [name + s for s in ("_bucket", "_sum", "_count")]
    return [name]


def exported_metrics():
    """{prometheus metric name: set of label names} from metrics.rs."""
    text = METRICS_RS.read_text()
    builders = re.findall(r'\.(u64|f64|i64)_(counter|histogram|gauge|up_down_counter)\("([^"]+)"\)(.*?)\.build\(\)',
                          text, re.S)
    if not builders:
        sys.exit(f"no instruments found in {METRICS_RS}")
    # attributes: every KeyValue::new("a.b", ...) in the function that records
    # the instrument; we do not try to be that precise and accept any
    # attribute written in metrics.rs for the instrument's family prefix
    fn_bodies = re.split(r"\n(?=pub(?:\(crate\))? (?:async )?fn )", text)
    families = {}
    for _, kind, otel_name, rest in builders:
        unit = re.search(r'with_unit\("([^"]+)"\)', rest)
        field = None
        # the struct field the instrument is stored in, e.g. `bookings: meter`
        m = re.search(r"(\w+): meter\s*\.\w+\(\"" + re.escape(otel_name) + r"\"", text)
        if m:
            field = m.group(1)
        labels = set()
        for body in fn_bodies:
            if field and re.search(r"\bm\." + field + r"\s*\.", body):
                labels |= {k.replace(".", "_") for k in re.findall(r'KeyValue::new\("([^"]+)"', body)}
        for name in prom_name(otel_name, kind, unit.group(1) if unit else None):
            families[name] = labels
    return families


def check_names():
    return set(re.findall(r'^\s*name: "([a-z_]+)",', CHECKS_RS.read_text(), re.M))


def github_anchor(heading):
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def anchors():
    return {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", OPERATIONS.read_text(), re.M)}


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def check_expr(where, expr, metrics, checks, problems):
    if not expr.strip():
        problems.append(f"{where}: empty query")
        return
    bare = strip_strings(expr)
    # grafana variables
    bare = re.sub(r"\$\{?\w+\}?", "1", bare)
    # label names: inside {...} selectors and by/without/on/ignoring (...)
    label_names = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", bare))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", bare):
        label_names |= {l.strip() for l in group.split(",") if l.strip()}
    used_metrics = set()
    for token in re.findall(r"(?<![\w.])([a-zA-Z_]\w*)(?=\s*[{\[)]|\s*$|\s*[/><*+-]|\s+(?:unless|and|or|offset|by)\b)",
                            re.sub(r"\{[^}]*\}", "", bare)):
        if token in PROMQL_WORDS or token in label_names or token in EXTRA_LABELS:
            continue
        used_metrics.add(token)
    known_labels = set(EXTRA_LABELS)
    for metric in used_metrics:
        if metric not in metrics:
            problems.append(f"{where}: metric {metric} is not exported by bookingd")
        else:
            known_labels |= metrics[metric]
    for label in label_names - known_labels:
        problems.append(f"{where}: label {label} is not an attribute of {sorted(used_metrics)}")
    for name in re.findall(r'check_name\s*=\s*"([a-z_]+)"', expr):
        if name not in checks:
            problems.append(f"{where}: no integrity check named {name}")
    for alternatives in re.findall(r'check_name\s*!?=~\s*"([a-z_|]+)"', expr):
        for name in alternatives.split("|"):
            if name not in checks:
                problems.append(f"{where}: no integrity check named {name}")


def main():
    problems = []
    metrics = exported_metrics()
    checks = check_names()
    headings = anchors()

    rules = yaml.safe_load(RULES.read_text())
    alerts = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            where = f"{RULES.name}: {name}"
            check_expr(where, rule["expr"], metrics, checks, problems)
            if "alert" not in rule:
                continue
            alerts += 1
            if rule.get("labels", {}).get("severity") not in {"page", "warn", "info"}:
                problems.append(f"{where}: severity must be page, warn or info")
            notes = rule.get("annotations", {})
            if not notes.get("summary"):
                problems.append(f"{where}: no summary")
            url = notes.get("runbook_url", "")
            m = re.fullmatch(r"docs/operations\.md#([\w-]+)", url)
            if not m:
                problems.append(f"{where}: runbook_url {url!r} is not docs/operations.md#<section>")
            elif m.group(1) not in headings:
                problems.append(f"{where}: docs/operations.md has no section #{m.group(1)}")

    dashboard = json.loads(DASHBOARD.read_text())
    queries = 0
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"dashboard panel {panel.get('title')!r}: no query")
        for target in targets:
            queries += 1
            check_expr(f"dashboard panel {panel.get('title')!r}", target.get("expr", ""), metrics, checks, problems)
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            check_expr(f"dashboard variable {var['name']}", query.get("query", ""), metrics, checks, problems)

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"observability files consistent with the code: {alerts} alerts, {queries} dashboard queries, "
          f"{len(metrics)} exported series names, {len(checks)} integrity checks")


if __name__ == "__main__":
    main()
