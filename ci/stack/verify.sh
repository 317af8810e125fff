#!/usr/bin/env bash
# Render the whole stack from the upstream charts (ci/stack/render.sh) and check the render
# (ci/stack/verify.py): schemas, monitors, Prometheus selectors, URLs, Grafana UIDs, the HPA's
# metric, the NetworkPolicy flow matrix, least-privilege RBAC, tokens.
#
#   ci/stack/verify.sh              render + every check (exit 1 on a render failure or any FAIL);
#                                   also renders our two charts with helm 3 (helmfile's own) and
#                                   requires the same objects as with helm 4
#   ci/stack/verify.sh --self-test  inject each breakage into a copy of the render; each must be
#                                   caught by its check, and the clean render must pass
#
# The render is kept in target/stack-render and reused while its inputs (helmfile.yaml, k8s/,
# ci/stack/render.py, the chart tgz files) are unchanged, so the self-test step after the check
# step does not render again. RENDER_DIR overrides the place.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=ci/lib/tools.sh
. "$ROOT/ci/lib/tools.sh"

mode=check
case "${1:-}" in
  "") ;;
  --self-test) mode=self-test ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac

start=$SECONDS
ensure_helm
ensure_venv 'PyYAML>=6' 'jsonschema>=4.18' 'kubernetes-validate==1.37.0'
PY="$ORGANISM_TOOLS/venv/bin/python"
RENDER_DIR="${RENDER_DIR:-$ROOT/target/stack-render}"

if [ ! -d "$SHARED_DIR/charts" ]; then
  echo "verify: $SHARED_DIR/charts is missing: the upstream charts at the pinned versions are needed to render the stack" >&2
  exit 1
fi

# inputs_hash: what the render depends on.
inputs_hash() {
  (cd "$ROOT" && { cat helmfile.yaml ci/stack/render.py; find k8s -type f | LC_ALL=C sort | xargs cat; } | sha256sum)
  ls -l --time-style=+%s "$SHARED_DIR"/charts/*.tgz | sha256sum
  helm version --short
}
want="$(inputs_hash | sha256sum | cut -d' ' -f1)"
if [ -f "$RENDER_DIR/.inputs" ] && [ "$(cat "$RENDER_DIR/.inputs")" = "$want" ] && [ -f "$RENDER_DIR/index.json" ]; then
  echo "render: inputs unchanged, reusing $RENDER_DIR"
else
  rm -f "$RENDER_DIR/.inputs"
  t=$SECONDS
  if ! "$PY" "$HERE/render.py" --root "$ROOT" --shared "$SHARED_DIR" --out "$RENDER_DIR" \
       --helm "$ORGANISM_TOOLS/bin/helm"; then
    echo "FAIL  render: see the lines above; helmfile sync would stop at the same release" >&2
    exit 1
  fi
  echo "$want" > "$RENDER_DIR/.inputs"
  echo "render: every release of helmfile.yaml rendered ($((SECONDS - t)) s)"
fi

rc=0
if [ "$mode" = check ]; then
  # Our own charts with helm 3 too (users' helmfile may drive either): same objects as helm 4.
  ensure_helmfile
  h3="$(mktemp -d "${TMPDIR:-/tmp}/render-helm3.XXXXXX")"
  if "$PY" "$HERE/render.py" --root "$ROOT" --shared "$SHARED_DIR" --out "$h3" --helm "$ORGANISM_TOOLS/bin/helm3" \
       --release organism/organism --release monitoring/organism-dashboards >/dev/null \
     && "$PY" - "$RENDER_DIR" "$h3" "$HERE" <<'PYEOF'
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from render import load_docs
a, b = Path(sys.argv[1]), Path(sys.argv[2])
bad = 0
for rel in json.loads((b / "index.json").read_text()):
    ids = lambda d: sorted((x["kind"], (x.get("metadata") or {}).get("namespace", ""), x["metadata"]["name"])
                           for x in load_docs((d / rel["file"]).read_text()))
    if ids(a) != ids(b):
        bad = 1
        print(f"FAIL  helm3: {rel['namespace']}/{rel['name']} renders other objects with helm 3 than with helm 4")
if not bad:
    print("PASS  helm3: our charts render the same objects with helm 3 (helmfile's) as with helm 4")
sys.exit(bad)
PYEOF
  then :; else rc=1; echo "FAIL  helm3: our charts do not render with helm 3 (see above)"; fi
  rm -rf "$h3"
fi
if [ "$mode" = self-test ]; then
  # The render itself: a copy of helmfile.yaml + k8s/ with one fault each; render.py must fail
  # and say why.
  work="$(mktemp -d "${TMPDIR:-/tmp}/render-selftest.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  render_fault() { # render_fault NAME EXPECTED_TEXT RELEASE SED_FILE SED_EXPR
    local name="$1" want="$2" rel="$3" file="$4" expr="$5" dir="$work/$RANDOM" out
    mkdir -p "$dir" && cp -a "$ROOT/helmfile.yaml" "$ROOT/k8s" "$dir/"
    sed -i -e "$expr" "$dir/$file"
    if out="$("$PY" "$HERE/render.py" --root "$dir" --shared "$SHARED_DIR" --out "$dir/out"                 --helm "$ORGANISM_TOOLS/bin/helm" --release "$rel" 2>&1)"; then
      echo "  MISSED  $name: the render succeeded"; rc=1
    elif grep -qF -- "$want" <<<"$out"; then
      echo "  caught  $name"; grep -F -- "$want" <<<"$out" | head -1 | cut -c1-200 | sed 's/^/          by render: /'
    else
      echo "  MISSED  $name: failed without saying '$want':"; sed 's/^/          | /' <<<"$out" | head -5; rc=1
    fi
  }
  echo "self-test: the render"
  render_fault "version bump without its chart in ../shared/charts" "tempo-2.2.5.tgz does not exist" \
    monitoring/tempo helmfile.yaml 's/version: 2.2.4/version: 2.2.5/'
  render_fault "tempo values that do not render (receivers.jaeger: null)" "release monitoring/tempo" \
    monitoring/tempo k8s/values/tempo.yaml '/^    jaeger:$/,/thrift_http/c\    jaeger: null'
  echo "self-test: the checks on the render"
  "$PY" "$HERE/verify.py" --render "$RENDER_DIR" --shared "$SHARED_DIR" --self-test || rc=1
else
  "$PY" "$HERE/verify.py" --render "$RENDER_DIR" --shared "$SHARED_DIR" || rc=1
fi
[ "$rc" -eq 0 ] || echo "verify: FAILED" >&2
echo "verify.sh: $((SECONDS - start)) s"
exit "$rc"
