#!/usr/bin/env bash
# What the test suite needs beyond PyPI, from Debian's registry: PostgreSQL 15 (what Supabase
# runs; source and restore target in the tests), the age and zstd command-line tools (the
# restore-by-hand interop test), and Node.js/npm for the Azure emulator. Idempotent.
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v age >/dev/null || need+=(age)
command -v zstd >/dev/null || need+=(zstd)
command -v chattr >/dev/null || need+=(e2fsprogs)
command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing ${need[*]} from Debian's packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -x .ci/install-emulators.sh ]; then
  .ci/install-emulators.sh
fi
