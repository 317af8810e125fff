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
#         cordons and drains it (PDBs respected) -> docker start -> Ready again
#
# Every wait is bounded. Environment: GATEWAY (http://localhost:8080), PROMETHEUS
# (http://localhost:9090), HPA_TIMEOUT (s, 240), RECOVERY_TIMEOUT (s, 180).
set -euo pipefail

GATEWAY="${GATEWAY:-http://localhost:8080}"
PROMETHEUS="${PROMETHEUS:-http://localhost:9090}"
HPA_TIMEOUT="${HPA_TIMEOUT:-240}"
RECOVERY_TIMEOUT="${RECOVERY_TIMEOUT:-180}"
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
retry 120 not_ready || die "user-service stayed ready with its database down"
named() { curl -fsS "http://127.0.0.1:18084/api/v1/findings" | jq -e '[.findings[] | select(.dependency == "database")] | length > 0' >/dev/null; }
retry 120 named || die "no finding names the database"
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

# 5c. node NotReady -> cordon + drain
if command -v docker >/dev/null 2>&1; then
  node="${CLUSTER}-worker2"
  docker inspect "$node" >/dev/null 2>&1 || die "no kind node container $node"
  t0=$(date +%s.%N)
  docker stop "$node" >/dev/null
  node_not_ready() { [ "$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" != True ]; }
  retry 180 node_not_ready || { docker start "$node" >/dev/null; die "$node never went NotReady"; }
  cordoned() { [ "$(kubectl get node "$node" -o jsonpath='{.spec.unschedulable}')" = true ]; }
  if retry 240 cordoned; then
    pass "node NotReady: $node cordoned by the healer $(elapsed "$t0") s after it stopped"
  else
    docker start "$node" >/dev/null
    die "the healer did not cordon $node within 240 s"
  fi
  pdb_ok() { kubectl -n "$NS" get pdb -o json | jq -e 'all(.items[]; .status.currentHealthy >= (.status.desiredHealthy // 0))' >/dev/null; }
  pdb_ok && pass "node NotReady: every PodDisruptionBudget held during the drain"
  docker start "$node" >/dev/null
  node_ready() { [ "$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
  retry 240 node_ready || die "$node did not come back"
  uncordoned() { [ "$(kubectl get node "$node" -o jsonpath='{.spec.unschedulable}')" != true ]; }
  retry 240 uncordoned || echo "note: $node is still cordoned (uncordon it with kubectl uncordon $node)"
  pass "node NotReady: $node back after $(elapsed "$t0") s"
else
  echo "skip  node NotReady: docker not on PATH"
fi
echo "kind-e2e: all checks passed"
