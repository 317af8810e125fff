#!/usr/bin/env bash
# Bearer tokens between Alertmanager and the two webhook receivers, created once and never
# committed. Idempotent; run by helmfile as the presync hook of kube-prometheus-stack, safe by hand.
#
#   organism/organism-auto-healer     key webhook-token  -> AUTO_HEALER_TOKEN   (organism chart)
#   organism/organism-alert-service   key webhook-token  -> ALERT_SERVICE_TOKEN (organism chart)
#   organism/organism-chaos           key chaos-token    -> CHAOS_TOKEN of the organs
#   monitoring/alertmanager-webhook-tokens  keys auto-healer, alert-service: the same two tokens,
#     mounted by Alertmanager (alertmanagerSpec.secrets) and read via credentials_file.
#
# Existing tokens are kept; a missing Secret or key gets a random one.
set -euo pipefail

APP_NS="${ORGANISM_NAMESPACE:-organism}"
MON_NS="${MONITORING_NAMESPACE:-monitoring}"

command -v kubectl >/dev/null 2>&1 || { echo "webhook-tokens: kubectl not found on PATH" >&2; exit 1; }

random_token() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

ensure_namespace() {
  kubectl get namespace "$1" >/dev/null 2>&1 || kubectl create namespace "$1" >/dev/null
}

# ensure_token SECRET KEY: print the token stored under KEY of SECRET in $APP_NS, creating it
# (or adding the key) with a random value when absent.
ensure_token() {
  local secret="$1" key="$2" value
  if kubectl -n "$APP_NS" get secret "$secret" >/dev/null 2>&1; then
    value="$(kubectl -n "$APP_NS" get secret "$secret" -o go-template="{{ index .data \"$key\" }}" 2>/dev/null || true)"
    if [ -n "$value" ] && [ "$value" != "<no value>" ]; then
      printf '%s' "$value" | base64 -d
      return 0
    fi
    value="$(random_token)"
    kubectl -n "$APP_NS" patch secret "$secret" --type merge \
      -p "{\"stringData\":{\"$key\":\"$value\"}}" >/dev/null
  else
    value="$(random_token)"
    kubectl -n "$APP_NS" create secret generic "$secret" --from-literal="$key=$value" >/dev/null
  fi
  echo "webhook-tokens: set $APP_NS/$secret key $key" >&2
  printf '%s' "$value"
}

ensure_namespace "$APP_NS"
ensure_namespace "$MON_NS"

healer="$(ensure_token organism-auto-healer webhook-token)"
alerts="$(ensure_token organism-alert-service webhook-token)"
ensure_token organism-chaos chaos-token >/dev/null

kubectl -n "$MON_NS" create secret generic alertmanager-webhook-tokens \
  --from-literal=auto-healer="$healer" --from-literal=alert-service="$alerts" \
  --dry-run=client -o yaml | kubectl apply -f - >/dev/null
echo "webhook-tokens: $MON_NS/alertmanager-webhook-tokens in sync with $APP_NS" >&2
