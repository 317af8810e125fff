#!/usr/bin/env bash
# Render every release of helmfile.yaml into OUTDIR, exactly as `helmfile sync` would install it,
# from the upstream charts in ../shared/charts (no cluster, no chart repository needed).
#
#   ci/stack/render.sh OUTDIR
#
# OUTDIR/<namespace>/<release>.yaml per release, OUTDIR/index.json describing them (see
# ci/stack/render.py). Fails, naming the release and helm's error, when any release does not
# render, and names the missing file when helmfile.yaml pins a version ../shared/charts lacks.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=ci/lib/tools.sh
. "$ROOT/ci/lib/tools.sh"

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
ensure_helm
ensure_venv 'PyYAML>=6'
exec "$ORGANISM_TOOLS/venv/bin/python" "$HERE/render.py" --root "$ROOT" --shared "$SHARED_DIR" \
  --out "$1" --helm "$ORGANISM_TOOLS/bin/helm"
