#!/usr/bin/env bash
# The organism on a local kind cluster, with its observability stack (docs/cluster.md).
#
#   scripts/kind-up.sh        (cargo xtask kind-up runs this)
#
# 1. create the kind cluster from kind-config.yaml (reused when it exists)
# 2. docker build -f docker/Dockerfile -t organism:<content tag> . ; kind load docker-image
#    The tag is derived from the content of everything the image is built from (Cargo files,
#    services/, libs/, docker/, xtask/; committed or not): changed code gets a new tag, so
#    the Deployments roll to it; unchanged code keeps its tag and nothing restarts.
# 3. helmfile sync: every release but organism, then organism alone with
#    --set image.tag=<content tag> (on top of k8s/values/organism-kind.yaml)
# 4. wait for every workload, bounded; print the URLs and Grafana's admin credentials
#
# Environment: KIND_CLUSTER_NAME (default: the name in kind-config.yaml), WAIT_TIMEOUT (s, 600),
# SKIP_MEMORY_CHECK=1 (create the cluster even when Docker has less memory than the budget).
set -euo pipefail

# Memory the Docker engine needs (docs/cluster.md "Resource budget"): the stack's memory requests
# with every HPA at its maxReplicas plus kind's control plane, kubelets and CoreDNS, rounded up to
# 512 MiB. ci/stack/validate.sh recomputes it from the values and fails when this line is stale.
DOCKER_MEMORY_MIN_MIB=4096

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# content_tag: dev-<12 hex> of the sources the image is built from (tracked and untracked, not
# ignored); a tree without git falls back to hashing the same directories with find.
content_tag() {
  local paths=(Cargo.toml Cargo.lock rust-toolchain.toml services libs docker xtask)
  {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
      git ls-files -z --cached --others --exclude-standard -- "${paths[@]}" 2>/dev/null \
        | sort -z | xargs -0 sha256sum 2>/dev/null || true
    else
      find "${paths[@]}" -type f -not -path '*/target/*' -print0 2>/dev/null \
        | sort -z | xargs -0 sha256sum 2>/dev/null || true
    fi
  } | sha256sum | cut -c1-12
}
TAG="${ORGANISM_IMAGE_TAG:-dev-$(content_tag)}"
IMAGE="organism:$TAG" # repository: k8s/values/organism-kind.yaml (image.repository organism)
CLUSTER="${KIND_CLUSTER_NAME:-$(sed -n 's/^name: *//p' kind-config.yaml | head -1)}"
CLUSTER="${CLUSTER:-organism}"
WAIT_TIMEOUT="${WAIT_TIMEOUT:-600}"

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'kind-up: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
missing=()
for tool in docker kind kubectl helm helmfile; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing: ${missing[*]}. Needed: Docker (engine running), kind >= 0.27, kubectl, helm >= 3.14 (or 4), helmfile >= 1.0. See docs/cluster.md."
fi
docker info >/dev/null 2>&1 || die "the Docker engine is not running (docker info failed)"
# The Docker engine's memory (Docker Desktop / colima: the VM's): every kind node is a container
# sharing it, and pods that do not fit stay Pending or get OOM-killed.
docker_mem_bytes="$(docker info --format '{{.MemTotal}}' 2>/dev/null || echo 0)"
case "$docker_mem_bytes" in ''|*[!0-9]*) docker_mem_bytes=0 ;; esac
docker_mem_mib=$((docker_mem_bytes / 1024 / 1024))
if [ "$docker_mem_mib" -lt "$DOCKER_MEMORY_MIN_MIB" ]; then
  msg="the Docker engine has ${docker_mem_mib} MiB of memory; the stack needs ${DOCKER_MEMORY_MIN_MIB} MiB"
  msg="$msg (memory requests with every HPA at its maximum, plus kind itself: docs/cluster.md, Resource budget)."
  msg="$msg Give Docker more memory (Docker Desktop: Settings > Resources > Memory; colima: colima start --memory N)"
  if [ "${SKIP_MEMORY_CHECK:-0}" = 1 ]; then
    printf 'kind-up: warning: %s; going on (SKIP_MEMORY_CHECK=1)\n' "$msg" >&2
  else
    die "$msg, or set SKIP_MEMORY_CHECK=1 to try anyway."
  fi
else
  printf 'kind-up: Docker engine memory %s MiB (needs %s MiB)\n' "$docker_mem_mib" "$DOCKER_MEMORY_MIN_MIB"
fi
grep -q "image:" k8s/values/organism-kind.yaml || die "k8s/values/organism-kind.yaml missing"
[ -f docker/Dockerfile ] || die "docker/Dockerfile missing"

# ---------------------------------------------------------------- 1. cluster
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  say "kind cluster $CLUSTER exists, reusing it"
else
  say "creating kind cluster $CLUSTER (kind-config.yaml)"
  kind create cluster --config kind-config.yaml --name "$CLUSTER" --wait 180s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

# ---------------------------------------------------------------- 2. image
say "building $IMAGE"
docker build -f docker/Dockerfile -t "$IMAGE" .
say "loading $IMAGE into the kind nodes"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# ---------------------------------------------------------------- 3. deploy
say "helmfile sync (first run pulls the charts and images: allow several minutes)"
# helmfile's --set reaches every selected release: the stack first, then organism alone with
# its image tag (--skip-needs: its needs were synced just before).
helmfile --file helmfile.yaml --selector 'name!=organism' sync
say "helmfile sync of organism with image organism:$TAG"
helmfile --file helmfile.yaml --selector name=organism sync --skip-needs --set "image.tag=$TAG"

# ---------------------------------------------------------------- 4. wait
# wait_pods NAMESPACE: every non-Job pod Ready, or fail after WAIT_TIMEOUT seconds.
wait_pods() {
  local ns="$1" deadline=$((SECONDS + WAIT_TIMEOUT))
  until kubectl -n "$ns" get pods --field-selector=status.phase!=Succeeded -o name 2>/dev/null | grep -q .; do
    [ "$SECONDS" -lt "$deadline" ] || die "no pods in namespace $ns after ${WAIT_TIMEOUT}s"
    sleep 3
  done
  kubectl -n "$ns" wait pod --all --field-selector=status.phase!=Succeeded \
    --for=condition=Ready --timeout="$((deadline - SECONDS > 10 ? deadline - SECONDS : 10))s" \
    || { kubectl -n "$ns" get pods -o wide; die "pods in $ns not Ready in ${WAIT_TIMEOUT}s"; }
}
say "waiting for the monitoring stack"
wait_pods monitoring
# Prometheus and Alertmanager are created by the operator after the chart: wait for them by name.
for sts in prometheus-kube-prometheus-stack-prometheus alertmanager-kube-prometheus-stack-alertmanager; do
  deadline=$((SECONDS + WAIT_TIMEOUT))
  until kubectl -n monitoring get "statefulset/$sts" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "statefulset $sts not created in ${WAIT_TIMEOUT}s (prometheus-operator logs?)"
    sleep 3
  done
  kubectl -n monitoring rollout status "statefulset/$sts" --timeout="${WAIT_TIMEOUT}s"
done
say "waiting for the organism"
kubectl -n organism wait deployment --all --for=condition=Available --timeout="${WAIT_TIMEOUT}s"
wait_pods organism

# ---------------------------------------------------------------- done
grafana_user="$(kubectl -n monitoring get secret kube-prometheus-stack-grafana -o go-template='{{index .data "admin-user" | base64decode}}')"
grafana_pass="$(kubectl -n monitoring get secret kube-prometheus-stack-grafana -o go-template='{{index .data "admin-password" | base64decode}}')"
cat <<EOF

organism is up on kind cluster "$CLUSTER".

  api-gateway    http://localhost:8080        curl localhost:8080/healthz
  Grafana        http://localhost:3000        user: $grafana_user   password: $grafana_pass
                 dashboards: Organism folder (Organism overview, health-monitor, auto-healer, alert-service)
  Prometheus     http://localhost:9090
  Alertmanager   http://localhost:9093
  Mailpit        kubectl -n monitoring port-forward svc/mailpit-http 8025:80   -> http://localhost:8025
  Tempo / Loki   through Grafana Explore (or port-forward svc/tempo 3200, svc/loki 3100 in monitoring)

  chaos token    kubectl -n organism get secret organism-tokens -o go-template='{{index .data "chaos-token" | base64decode}}'
  end-to-end     scripts/kind-e2e.sh   (cargo xtask kind-e2e)
  tear down      kind delete cluster --name $CLUSTER
EOF
