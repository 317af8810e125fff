#!/usr/bin/env bash
# Offline validation of the observability stack (helmfile.yaml, k8s/values/, k8s/dashboards/,
# k8s/charts/organism-dashboards/). No cluster, no chart repositories: the pinned charts' defaults
# and schemas come from ../shared/charts-values.
#
#   ci/stack/validate.sh              run every check, print a summary, exit 1 on any failure
#   ci/stack/validate.sh --self-test  copy the inputs to a temp dir, inject known faults, assert
#                                     each one is caught (and that the clean copy passes)
#   ci/stack/validate.sh --budget     print the resource budget table; --budget --write also
#                                     updates it in docs/cluster.md
#
# Checks (ci/stack/check_stack.py): yamllint; helmfile.yaml pins, values files, needs/CRD order,
# `helmfile list`; every values key exists in the chart's defaults (allow-list:
# ci/stack/freeform.yaml); loki and collector values against their values.schema.json; collector
# pipelines; Grafana datasources and dashboards (UIDs, PromQL via promtool, metric names); the
# dashboard ConfigMaps (helm template); in-cluster URLs; Alertmanager config (amtool check-config,
# route tests, inhibition against a real Alertmanager: ci/stack/alertmanager-tests.yaml); the
# resource budget (at the minimum and with every HPA at its maximum), the numbers docs/cluster.md
# states and the Docker memory scripts/kind-up.sh requires.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=ci/lib/tools.sh
. "$ROOT/ci/lib/tools.sh"

mode="check"
case "${1:-}" in
  "") ;;
  --self-test) mode="self-test" ;;
  --budget) mode="budget"; shift; budget_args=("$@") ;;
  -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--self-test|--budget [--write]]" >&2; exit 2 ;;
esac

ensure_amtool                                      # amtool + prometheus-alertmanager (Debian)
ensure_promtool                                    # promtool (Debian prometheus)
ensure_venv 'PyYAML>=6' 'jsonschema>=4.18' 'yamllint>=1.35'
ensure_helm                                        # helm v4: renders the dashboards chart
ensure_helmfile                                    # helmfile 0.166 + helm 3: parses helmfile.yaml
PY="$ORGANISM_TOOLS/venv/bin/python"

check() { # check ROOT: run all checks on the tree at ROOT
  "$PY" "$HERE/check_stack.py" --root "$1" --shared "$SHARED_DIR"
}

if [ "$mode" = "budget" ]; then
  exec "$PY" "$HERE/check_stack.py" --root "$ROOT" --shared "$SHARED_DIR" --budget-table "${budget_args[@]}"
fi

if [ "$mode" = "check" ]; then
  start=$SECONDS
  if check "$ROOT"; then
    echo "stack: OK ($((SECONDS - start)) s)"
  else
    echo "stack: FAILED ($((SECONDS - start)) s)" >&2
    exit 1
  fi
  exit 0
fi

# ------------------------------------------------------------------------------- self-test
work="$(mktemp -d "${TMPDIR:-/tmp}/stack-selftest.XXXXXX")"
trap 'rm -rf "$work"' EXIT

copy_inputs() { # copy_inputs DEST: the files the checks read, symlinks kept
  local dest="$1" p
  mkdir -p "$dest"
  for p in helmfile.yaml kind-config.yaml .yamllint.yaml docs/CONTRACTS.md docs/cluster.md \
           k8s/values k8s/dashboards k8s/charts/organism-dashboards k8s/charts/organism/values.yaml \
           ci/stack/stack.yaml ci/stack/freeform.yaml ci/stack/alertmanager-tests.yaml \
           scripts/kind-up.sh; do
    [ -e "$ROOT/$p" ] || continue
    mkdir -p "$dest/$(dirname "$p")"
    cp -a "$ROOT/$p" "$dest/$p"
  done
}

# edit FILE PYTHON: load YAML FILE as `d`, run the statement, write it back.
edit() {
  "$PY" - "$1" "$2" <<'EOF'
import sys, yaml
path, stmt = sys.argv[1], sys.argv[2]
d = yaml.safe_load(open(path))
exec(stmt)
yaml.safe_dump(d, open(path, "w"), sort_keys=False)
EOF
}

KPS=k8s/values/kube-prometheus-stack.yaml
declare -a names expects injects
have_shared=0
[ -d "$SHARED_DIR/charts-values" ] && have_shared=1
# add_fault NAME EXPECT INJECT [shared]: "shared" = caught only with ../shared/charts-values.
add_fault() {
  if [ "${4:-}" = shared ] && [ "$have_shared" = 0 ]; then
    echo "skipped fault (needs ../shared/charts-values): $1"
    return
  fi
  names+=("$1"); expects+=("$2"); injects+=("$3")
}

# name | the FAIL line that must appear (check: detail substring) | how to inject (run in the copy)
add_fault "dashboard with an unknown datasource UID" \
  "dashboards|datasource uid 'no-such-datasource' is not provisioned" \
  "sed 's/\"uid\": \"organism-auto-healer\"/\"uid\": \"bogus\"/; s/\"title\": \"Nervous system: auto-healer\"/\"title\": \"Bogus\"/; 0,/\"uid\": \"prometheus\"/s//\"uid\": \"no-such-datasource\"/' k8s/dashboards/auto-healer.json > k8s/dashboards/zz-bogus.json"
add_fault "values key the upstream chart does not have" \
  "values keys kube-prometheus-stack|unknown key prometheus/prometheusSpec/retentionPeriod" \
  "edit $KPS \"d['prometheus']['prometheusSpec']['retentionPeriod'] = '2d'\"" shared
add_fault "remediable alert no longer reaches alert-service (continue: true removed)" \
  "alertmanager routes|remediable crash loop goes to the healer and to alert-service" \
  "edit $KPS \"[r.pop('continue') for r in d['alertmanager']['config']['route']['routes'] if r.get('receiver') == 'auto-healer']\""
add_fault "node-down inhibition removed" \
  "alertmanager inhibition|is active, expected inhibited" \
  "edit $KPS \"d['alertmanager']['config']['inhibit_rules'] = [r for r in d['alertmanager']['config']['inhibit_rules'] if 'node' not in (r.get('equal') or [])]\""
add_fault "collector pipeline exports to an undefined exporter" \
  "collector pipelines|exporter otlp/jaeger is not defined" \
  "edit k8s/values/opentelemetry-collector.yaml \"d['config']['service']['pipelines']['traces']['exporters'].append('otlp/jaeger')\""
add_fault "loki values violate the chart's schema" \
  "values schema loki|singleBinary/replicas" \
  "edit k8s/values/loki.yaml \"d['singleBinary']['replicas'] = 'one'\"" shared
add_fault "dashboard queries a metric nobody exports" \
  "dashboards|metric heart_beat_total is not in docs/CONTRACTS.md" \
  "sed -i 's/rate(heart_beats_total{/rate(heart_beat_total{/' k8s/dashboards/organism-overview.json"
add_fault "docs state a stale memory budget" \
  "budget in docs|the values add up to" \
  "edit $KPS \"d['prometheus']['prometheusSpec']['resources']['requests']['memory'] = '480Mi'\""
add_fault "kind-up.sh asks Docker for less memory than the HPA maxima need" \
  "budget in kind-up.sh|must say DOCKER_MEMORY_MIN_MIB=" \
  "sed -i 's/^DOCKER_MEMORY_MIN_MIB=.*/DOCKER_MEMORY_MIN_MIB=2048/' scripts/kind-up.sh"

start=$SECONDS
echo "self-test: baseline (clean copy must pass)"
copy_inputs "$work/baseline"
if ! check "$work/baseline" > "$work/baseline.out" 2>&1; then
  cat "$work/baseline.out"
  echo "self-test: FAILED: the clean copy does not pass, faults would prove nothing" >&2
  exit 1
fi

pids=()
for i in "${!names[@]}"; do
  dir="$work/fault$i"
  copy_inputs "$dir"
  ( cd "$dir" && eval "${injects[$i]}" ) > "$work/inject$i.out" 2>&1 || {
    cat "$work/inject$i.out"; echo "self-test: could not inject fault: ${names[$i]}" >&2; exit 1; }
  ( rc=0; check "$dir" > "$work/fault$i.out" 2>&1 || rc=$?; echo "$rc" > "$work/fault$i.rc" ) &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

caught=0
for i in "${!names[@]}"; do
  want_check="${expects[$i]%%|*}"
  want_text="${expects[$i]#*|}"
  out="$work/fault$i.out"
  rc="$(cat "$work/fault$i.rc")"
  fails="$(grep -E '^FAIL  ' "$out" | sed -E 's/^FAIL  ([^:]+):.*/\1/' | sort -u | paste -sd, -)"
  if [ "$rc" != 0 ] && grep -q "^FAIL  $want_check:" "$out" && grep -qF -- "$want_text" "$out" \
     && [ "$fails" = "$want_check" ]; then
    caught=$((caught + 1))
    printf 'caught  %-70s -> FAIL %s\n' "${names[$i]}" "$want_check"
    grep -F -- "$want_text" "$out" | head -1 | sed 's/^ */          /'
  else
    printf 'MISSED  %-70s (exit %s, failing checks: %s)\n' "${names[$i]}" "$rc" "${fails:-none}"
    sed 's/^/          | /' "$out"
  fi
done
echo "self-test: $caught/${#names[@]} injected faults caught, each by exactly its check ($((SECONDS - start)) s)"
[ "$caught" -eq "${#names[@]}" ]
