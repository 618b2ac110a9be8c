#!/usr/bin/env bash
# What the test suite needs beyond PyPI, from Debian's registry: PostgreSQL 15 (what Supabase
# runs; source and restore target in the tests), the age and zstd command-line tools (the
# restore-by-hand interop test), Node.js/npm for the Azure emulator, chromium for the status
# page, systemd-analyze for the timer export and promtool for the alert rules. Idempotent.
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v age >/dev/null || need+=(age)
command -v zstd >/dev/null || need+=(zstd)
command -v chattr >/dev/null || need+=(e2fsprogs)
# Edge Functions are archived with git archive; the test makes a git repository
command -v git >/dev/null || need+=(git)
command -v npm >/dev/null || need+=(nodejs npm)
# the status page's test loads it in a real headless browser
command -v chromium >/dev/null || need+=(chromium)
# the example alert rules in deploy/ are checked (and their alerts tested) with promtool
command -v promtool >/dev/null || need+=(prometheus)
# the schedule's systemd export is checked with systemd-analyze
command -v systemd-analyze >/dev/null || need+=(systemd)
# bench/pitr.py compares WAL archiving and physical backups with pgBackRest (not the tests)
command -v pgbackrest >/dev/null || need+=(pgbackrest)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing ${need[*]} from Debian's packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ -x .ci/install-emulators.sh ]; then
  .ci/install-emulators.sh
fi
