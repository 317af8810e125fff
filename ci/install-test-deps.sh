#!/usr/bin/env bash
# Installs the real servers and tools the test suite uses, when missing. Idempotent and quiet.
# Called by `cargo xtask test`; safe to run by hand.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/tools.sh"

ensure_promtool                                   # prometheus + promtool
ensure_amtool                                     # prometheus-alertmanager + amtool
ensure_apt hey hey                                # load generator (users' scenarios, smoke)
ensure_apt wrk wrk                                # load generator of `cargo xtask bench` (not the bottleneck)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  ensure_apt /usr/lib/postgresql/15/bin/initdb postgresql
fi
ensure_venv 'aiosmtpd>=1.4'                        # the SMTP sink
