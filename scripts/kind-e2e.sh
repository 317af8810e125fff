#!/usr/bin/env bash
# End-to-end checks against the kind cluster scripts/kind-up.sh made (cargo xtask kind-e2e).
#
#   1. the gateway answers on localhost:8080 (curl), then carries load (hey)
#   2. traces of that traffic are in Tempo (its HTTP API), logs in Loki (its API, by trace id),
#      metrics and exemplars in Prometheus (localhost:9090)
#   3. heart's HPA scales out under `hey` load on /beat
#   4. a deleted pod is replaced and Ready again; the script prints the MTTR
#   5. the closed loop in the cluster (cargo xtask scenario's cluster counterparts):
#      a. heart crash (/chaos) -> the auto-healer records a decision about heart -> heart Ready
#      b. database outage (postgres scaled to 0) -> user-service not ready, NOT restarted by the
#         healer -> database back -> user-service Ready, the user created before still there
#      c. node NotReady (docker stop of a kind worker) -> health-monitor finding -> the healer
#         cordons and drains it (PDBs respected) -> docker start -> Ready again -> health-monitor's
#         node-recovered finding -> the healer uncordons it
#
# DISRUPTIVE: step 3 loads the cluster for minutes, step 5 crashes heart, scales postgres to 0
# (user-service is unavailable for minutes) and stops a kind worker container (its pods are
# evicted). Run it on a throw-away kind cluster, not one you work in.
#
# The waits of step 5 are derived from what is deployed (not guessed): health-monitor's
# `interval_secs` and `thresholds.not_ready_after` from its ConfigMap, the healer's
# `cooldown_secs` from its policy ConfigMap, the kubelet's node grace period (50 s) and
# Alertmanager's group_wait, each plus a margin. The stopped worker is one that hosts none of
# health-monitor, auto-healer and Alertmanager (moved off it first when both workers host one):
# the nervous system must survive the outage it is meant to heal.
#
# Every wait is bounded. Environment: GATEWAY (http://localhost:8080), PROMETHEUS
# (http://localhost:9090), HPA_TIMEOUT (s, 240), RECOVERY_TIMEOUT (s, 180), MARGIN (s, 60).
set -euo pipefail

GATEWAY="${GATEWAY:-http://localhost:8080}"
PROMETHEUS="${PROMETHEUS:-http://localhost:9090}"
HPA_TIMEOUT="${HPA_TIMEOUT:-240}"
RECOVERY_TIMEOUT="${RECOVERY_TIMEOUT:-180}"
MARGIN="${MARGIN:-60}"
NS=organism
MON=monitoring

pass() { printf 'ok    %s\n' "$*"; }
die() { printf 'FAIL  %s\n' "$*" >&2; exit 1; }

missing=()
for tool in kubectl curl hey jq; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ "${#missing[@]}" -eq 0 ] || die "missing: ${missing[*]} (hey: apt install hey / brew install hey; jq: apt/brew install jq)"
kubectl -n "$NS" get deployment api-gateway >/dev/null 2>&1 \
  || die "no organism deployment in the current kube context: run scripts/kind-up.sh first"

# retry SECONDS CMD...: run CMD every 3 s until it succeeds or SECONDS pass.
retry() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 3
  done
}

pf_pids=()
cleanup() { [ "${#pf_pids[@]}" -eq 0 ] || kill "${pf_pids[@]}" 2>/dev/null || true; }
# (background `hey` runs are added to pf_pids too, so an early exit stops them)
trap cleanup EXIT
# port_forward SERVICE LOCAL:REMOTE: a background kubectl port-forward to monitoring/SERVICE.
port_forward() {
  kubectl -n "$MON" port-forward "svc/$1" "$2" >/dev/null 2>&1 &
  pf_pids+=($!)
  retry 30 curl -s -o /dev/null "http://127.0.0.1:${2%%:*}/ready" || true
}

# ---------------------------------------------------------------- 1. the front door
retry 60 curl -fsS -o /dev/null "$GATEWAY/healthz" || die "gateway $GATEWAY/healthz does not answer"
pass "gateway answers $GATEWAY/healthz"
code="$(curl -s -o /dev/null -w '%{http_code}' "$GATEWAY/beat")"
[ "$code" = 200 ] || die "GET $GATEWAY/beat returned $code"
pass "GET /beat through the gateway: 200"
hey -z 20s -c 8 "$GATEWAY/beat" >/dev/null
hey -z 10s -c 4 "$GATEWAY/think" >/dev/null || true
pass "hey: 30 s of traffic on /beat and /think"

# ---------------------------------------------------------------- 2. signals
port_forward tempo 3200:3200
port_forward loki 3100:3100
tempo_trace() {
  trace_id="$(curl -fsS -G "http://127.0.0.1:3200/api/search" \
    --data-urlencode 'q={ resource.service.name = "api-gateway" }' --data-urlencode limit=5 \
    | jq -r '.traces[0].traceID // empty')"
  [ -n "$trace_id" ]
}
retry 90 tempo_trace || die "Tempo has no api-gateway traces (collector -> Tempo)"
curl -fsS -o /dev/null "http://127.0.0.1:3200/api/traces/$trace_id" || die "Tempo cannot return trace $trace_id"
pass "Tempo: trace $trace_id of api-gateway"

loki_query() { # loki_query LOGQL: at least one line in the last 15 minutes
  local n
  n="$(curl -fsS -G "http://127.0.0.1:3100/loki/api/v1/query_range" --data-urlencode "query=$1" \
        --data-urlencode "start=$(( $(date +%s) - 900 ))000000000" --data-urlencode limit=10 \
        | jq '[.data.result[].values[]] | length')"
  [ "${n:-0}" -gt 0 ]
}
retry 90 loki_query '{service_name="api-gateway"}' || die "Loki has no api-gateway logs (collector -> Loki /otlp)"
pass "Loki: api-gateway logs"
if retry 30 loki_query "{service_name=~\".+\"} | trace_id=\"$trace_id\""; then
  pass "Loki: log lines of trace $trace_id (log <-> trace correlation)"
else
  echo "warn  no log line carries trace_id $trace_id (does the traced request log?)"
fi

prom_value() { # prom_value PROMQL: first sample value, or empty
  curl -fsS -G "$PROMETHEUS/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}
prom_positive() { local v; v="$(prom_value "$1")"; [ -n "$v" ] && awk "BEGIN{exit !($v > 0)}"; }
retry 90 prom_positive 'sum(rate(heart_beats_total[1m]))' || die "Prometheus: heart_beats_total is not increasing"
pass "Prometheus: pulse $(prom_value 'sum(rate(heart_beats_total[1m]))') beats/s"
retry 90 prom_positive 'sum(rate(traces_spanmetrics_calls_total[2m]))' \
  || die "Prometheus: no span metrics (collector spanmetrics -> remote write)"
pass "Prometheus: span metrics from the collector"
exemplars() {
  local now n
  now="$(date +%s)"
  n="$(curl -fsS -G "$PROMETHEUS/api/v1/query_exemplars" \
        --data-urlencode 'query=traces_spanmetrics_duration_seconds_bucket' \
        --data-urlencode "start=$((now - 900))" --data-urlencode "end=$now" | jq '[.data[].exemplars[]] | length')"
  [ "${n:-0}" -gt 0 ]
}
retry 60 exemplars || die "Prometheus: no exemplars on traces_spanmetrics_duration_seconds_bucket"
pass "Prometheus: exemplars (trace ids) stored"

# ---------------------------------------------------------------- 3. HPA
replicas() { local r; r="$(kubectl -n "$NS" get hpa heart -o jsonpath='{.status.currentReplicas}')"; echo "${r:-0}"; }
kubectl -n "$NS" get hpa heart >/dev/null 2>&1 || die "no HPA heart in namespace $NS"
before="$(replicas)"
[ "$before" -gt 0 ] || before=1
echo "      heart HPA before load: ${before} replica(s); loading /beat for up to ${HPA_TIMEOUT}s"
hey -z "${HPA_TIMEOUT}s" -c 64 "$GATEWAY/beat" >/dev/null 2>&1 &
hey_pid=$!
pf_pids+=("$hey_pid")
scaled() { [ "$(replicas)" -gt "$before" ]; }
if retry "$HPA_TIMEOUT" scaled; then
  kill "$hey_pid" 2>/dev/null || true
  pass "HPA: heart scaled from $before to $(replicas) replicas"
else
  kill "$hey_pid" 2>/dev/null || true
  kubectl -n "$NS" describe hpa heart | tail -20
  die "HPA: heart stayed at $before replica(s) for ${HPA_TIMEOUT}s"
fi
wait "$hey_pid" 2>/dev/null || true

# ---------------------------------------------------------------- 4. recovery
victim="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=brain -o jsonpath='{.items[0].metadata.name}')"
[ -n "$victim" ] || die "no brain pod to delete"
want="$(kubectl -n "$NS" get deployment brain -o jsonpath='{.spec.replicas}')"
t0=$(date +%s.%N)
kubectl -n "$NS" delete pod "$victim" --wait=false >/dev/null
recovered() {
  local ready
  ready="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=brain \
            -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
            | awk -v v="$victim" '$1 != v && $2 == "True"' | wc -l)"
  [ "$ready" -ge "$want" ]
}
retry "$RECOVERY_TIMEOUT" recovered || die "brain did not recover within ${RECOVERY_TIMEOUT}s after deleting $victim"
t1=$(date +%s.%N)
mttr="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}')"
pass "recovery: brain pod $victim deleted, $want replacement(s) Ready"
echo "MTTR (pod deleted -> replacement Ready): ${mttr} s"

# ---------------------------------------------------------------- 5. the closed loop
# secs DURATION: seconds of a humantime-style duration (90, 90s, 2m, 1h, 1m30s).
secs() {
  local d="$1" total=0 n unit
  [[ "$d" =~ ^[0-9]+$ ]] && { echo "$d"; return; }
  while [[ "$d" =~ ^([0-9]+)(ms|s|m|h)(.*)$ ]]; do
    n="${BASH_REMATCH[1]}"; unit="${BASH_REMATCH[2]}"; d="${BASH_REMATCH[3]}"
    case "$unit" in ms) ;; s) total=$((total + n)) ;; m) total=$((total + 60 * n)) ;; h) total=$((total + 3600 * n)) ;; esac
  done
  echo "$total"
}
# config_value CONFIGMAP KEY_REGEX DEFAULT: a top-level or nested `key: value` of the YAML file
# inside the deployed ConfigMap (first match), or DEFAULT.
config_value() {
  local v
  v="$(kubectl -n "$NS" get configmap "$1" -o json 2>/dev/null \
        | jq -r '.data | to_entries[0].value // ""' \
        | sed -n -E "s/^[[:space:]]*($2):[[:space:]]*\"?([^\"#[:space:]]+)\"?.*$/\2/p" | head -1)"
  echo "${v:-$3}"
}
HM_INTERVAL="$(secs "$(config_value health-monitor-config 'interval_secs' 15)")"
NOT_READY_AFTER="$(secs "$(config_value health-monitor-config 'not_ready_after' 2m)")"
COOLDOWN="$(secs "$(config_value auto-healer-config 'cooldown_secs' 120)")"
NODE_GRACE=50      # kube-controller-manager --node-monitor-grace-period (default since 1.29)
AM_GROUP_WAIT=5    # k8s/values/kube-prometheus-stack.yaml route group_wait
# A finding needs not_ready_after, then a sweep; Alertmanager groups it; the healer acts.
FINDING_WAIT=$((NOT_READY_AFTER + HM_INTERVAL + AM_GROUP_WAIT + MARGIN))
echo "      waits from the deployed config: health-monitor interval ${HM_INTERVAL}s, not_ready_after ${NOT_READY_AFTER}s, healer cooldown ${COOLDOWN}s -> finding wait ${FINDING_WAIT}s"
CLUSTER="${KIND_CLUSTER_NAME:-$(sed -n 's/^name: *//p' kind-config.yaml 2>/dev/null | head -1)}"
CLUSTER="${CLUSTER:-organism}"
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}'; }
# ns_forward NAMESPACE SERVICE LOCAL:REMOTE: a background port-forward, waited for.
ns_forward() {
  kubectl -n "$1" port-forward "svc/$2" "$3" >/dev/null 2>&1 &
  pf_pids+=($!)
  retry 30 curl -fsS -o /dev/null "http://127.0.0.1:${3%%:*}/healthz" || true
}
ns_forward "$NS" auto-healer 18085:8085
ns_forward "$NS" health-monitor 18084:8084
chaos_token="$(kubectl -n "$NS" get secret organism-tokens -o jsonpath='{.data.chaos-token}' 2>/dev/null | base64 -d || true)"
auth=()
[ -z "$chaos_token" ] || auth=(-H "authorization: Bearer $chaos_token")
decisions_about() { curl -fsS "http://127.0.0.1:18085/api/v1/actions?limit=200" | jq "[.actions[] | select(tostring | test(\"$1\"))] | length"; }

# 5a. heart crash, repeated until it is a crash loop (a single crash is kubelet's to restart)
before_heart="$(decisions_about heart)"
t0=$(date +%s.%N)
heart_decided() { [ "$(decisions_about heart)" -gt "$before_heart" ]; }
heart_ready() { [ "$(kubectl -n "$NS" get deployment heart -o jsonpath='{.status.readyReplicas}')" -ge 1 ]; }
deadline=$((SECONDS + 300))
until heart_decided; do
  [ "$SECONDS" -lt "$deadline" ] || die "the auto-healer recorded no decision about heart within 300 s"
  # A fresh port-forward each round: the old one died with the pod it pointed at.
  kubectl -n "$NS" port-forward svc/heart 18081:8081 >/dev/null 2>&1 &
  pf=$!
  pf_pids+=("$pf")
  sleep 2
  curl -fsS "${auth[@]}" -H 'content-type: application/json' -d '{"crash_after_s":1}' \
    http://127.0.0.1:18081/chaos >/dev/null 2>&1 || true
  sleep 8
  kill "$pf" 2>/dev/null || true
done
retry 300 heart_ready || die "heart not Ready again within 300 s"
pass "heart crash loop: healer decision recorded, heart Ready again after $(elapsed "$t0") s"

# 5b. database outage: the healer must not restart user-service
email="e2e-$(date +%s)@example.org"
id="$(curl -fsS -H 'content-type: application/json' -d "{\"name\":\"E2E Survivor\",\"email\":\"$email\"}" "$GATEWAY/users" | jq -r .id)"
{ [ -n "$id" ] && [ "$id" != null ]; } || die "could not create a user before the outage"
restarts_before="$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=user-service -o jsonpath='{.items[*].metadata.uid}')"
t0=$(date +%s.%N)
kubectl -n "$NS" scale statefulset postgres --replicas=0 >/dev/null
not_ready() { [ "$(kubectl -n "$NS" get deployment user-service -o jsonpath='{.status.readyReplicas}')" = "" ] \
  || [ "$(kubectl -n "$NS" get deployment user-service -o jsonpath='{.status.readyReplicas}')" = 0 ]; }
retry $((3 * 10 + MARGIN)) not_ready || die "user-service stayed ready with its database down"
named() { curl -fsS "http://127.0.0.1:18084/api/v1/findings" | jq -e '[.findings[] | select(.dependency == "database")] | length > 0' >/dev/null; }
# pod-not-ready names the dependency once the pod was not ready for not_ready_after, at a sweep.
retry "$FINDING_WAIT" named || die "no finding names the database within ${FINDING_WAIT}s (not_ready_after ${NOT_READY_AFTER}s + sweep ${HM_INTERVAL}s + margin)"
pass "database outage: user-service not ready after $(elapsed "$t0") s, the finding names the database"
sleep 60
[ "$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=user-service -o jsonpath='{.items[*].metadata.uid}')" = "$restarts_before" ] \
  || die "user-service pods were replaced during a database outage"
pass "database outage: the healer left user-service alone for 60 s"
kubectl -n "$NS" scale statefulset postgres --replicas=1 >/dev/null
users_ready() { [ "$(kubectl -n "$NS" get deployment user-service -o jsonpath='{.status.readyReplicas}')" -ge 1 ]; }
retry 300 users_ready || die "user-service did not recover after the database returned"
curl -fsS -o /dev/null "$GATEWAY/user/$id" || die "user $id created before the outage is gone"
pass "database outage: recovered after $(elapsed "$t0") s, user $id kept"

# 5c. node NotReady -> cordon + drain -> Ready -> uncordon
if command -v docker >/dev/null 2>&1; then
  nervous='app.kubernetes.io/name in (health-monitor,auto-healer,alertmanager)'
  # nervous_on NODE: the nervous-system pods (any namespace) scheduled on NODE.
  nervous_on() {
    kubectl get pods -A -l "$nervous" --field-selector "spec.nodeName=$1" \
      -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}'
  }
  workers=($(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{.items[*].metadata.name}'))
  [ "${#workers[@]}" -ge 2 ] || die "node NotReady needs at least two workers (kind-config.yaml), found ${workers[*]:-none}"
  node=""
  for w in "${workers[@]}"; do
    if [ -z "$(nervous_on "$w")" ]; then node="$w"; break; fi
  done
  if [ -z "$node" ]; then
    # Every worker hosts part of the nervous system: move it off the last worker (cordon it,
    # delete those pods so their Deployments/StatefulSet recreate them elsewhere), then
    # uncordon with kubectl (no organism.dev/cordoned-by: not the healer's cordon).
    node="${workers[${#workers[@]}-1]}"
    echo "      moving the nervous system off $node: $(nervous_on "$node" | tr '\n' ' ')"
    kubectl cordon "$node" >/dev/null
    nervous_on "$node" | while IFS=/ read -r pns pname; do
      kubectl -n "$pns" delete pod "$pname" --wait=true --timeout=120s >/dev/null
    done
    moved() {
      [ -z "$(nervous_on "$node")" ] \
        && kubectl -n "$NS" wait pod -l 'app.kubernetes.io/name in (health-monitor,auto-healer)' --for=condition=Ready --timeout=5s >/dev/null 2>&1 \
        && kubectl -n "$MON" wait pod -l app.kubernetes.io/name=alertmanager --for=condition=Ready --timeout=5s >/dev/null 2>&1
    }
    retry 240 moved || { kubectl uncordon "$node" >/dev/null; die "the nervous system did not come up off $node within 240 s"; }
    kubectl uncordon "$node" >/dev/null
    # the port-forwards pointed at the old pods
    ns_forward "$NS" auto-healer 18085:8085
    ns_forward "$NS" health-monitor 18084:8084
  fi
  pass "node NotReady: stopping $node (hosts none of health-monitor, auto-healer, Alertmanager)"
  docker inspect "$node" >/dev/null 2>&1 || die "no kind node container $node"
  t0=$(date +%s.%N)
  docker stop "$node" >/dev/null
  node_not_ready() { [ "$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" != True ]; }
  retry $((NODE_GRACE + MARGIN)) node_not_ready || { docker start "$node" >/dev/null; die "$node never went NotReady"; }
  cordoned() { [ "$(kubectl get node "$node" -o jsonpath='{.spec.unschedulable}')" = true ]; }
  # node-not-ready after not_ready_after from the Ready transition, a sweep, Alertmanager, the healer.
  if retry "$FINDING_WAIT" cordoned; then
    pass "node NotReady: $node cordoned by the healer $(elapsed "$t0") s after it stopped"
  else
    docker start "$node" >/dev/null
    die "the healer did not cordon $node within ${FINDING_WAIT}s of NotReady"
  fi
  [ "$(kubectl get node "$node" -o go-template='{{index .metadata.annotations "organism.dev/cordoned-by"}}')" = auto-healer ] \
    || die "$node is cordoned but not marked organism.dev/cordoned-by=auto-healer"
  pdb_ok() { kubectl -n "$NS" get pdb -o json | jq -e 'all(.items[]; .status.currentHealthy >= (.status.desiredHealthy // 0))' >/dev/null; }
  pdb_ok && pass "node NotReady: every PodDisruptionBudget held during the drain"
  docker start "$node" >/dev/null
  node_ready() { [ "$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  retry 240 node_ready || die "$node did not come back"
  pass "node NotReady: $node Ready again after $(elapsed "$t0") s"
  # node-recovered after Ready for not_ready_after, a sweep, Alertmanager; the healer may still be
  # in its cooldown for this node (it cordoned/drained it moments ago).
  UNCORDON_WAIT=$((FINDING_WAIT + COOLDOWN))
  uncordoned() { [ "$(kubectl get node "$node" -o jsonpath='{.spec.unschedulable}')" != true ]; }
  retry "$UNCORDON_WAIT" uncordoned \
    || die "the healer did not uncordon $node within ${UNCORDON_WAIT}s of it being Ready (kubectl uncordon $node to clean up)"
  pass "node recovered: $node uncordoned by the healer $(elapsed "$t0") s after it stopped"
else
  echo "skip  node NotReady: docker not on PATH"
fi
echo "kind-e2e: all checks passed"
