#!/usr/bin/env bash
# The product as users install it: build the wheel, install it into a clean venv WITHOUT dev
# extras (the lock file only constrains versions, it adds no package), then run the smoke test:
# --version, --help, a usage error exits 2 with one line, and the whole demo.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/bika-smoke-XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$work/dist" .
"$work/venv/bin/pip" install --quiet --constraint requirements.lock "$work"/dist/bika-*.whl
bika="$work/venv/bin/bika"
fail() { echo "smoke: $*" >&2; exit 1; }

"$bika" --version | grep -q '^bika [0-9]' || fail "--version"
"$bika" --help | grep -q 'Exit codes:' || fail "--help"
set +e
err="$("$bika" list --jsn 2>&1 >/dev/null)"; rc=$?
set -e
[ "$rc" = 2 ] || fail "a usage error exited $rc, not 2: $err"
[ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "a usage error printed more than one line: $err"
case "$err" in *"Did you mean '--json'"*) ;; *) fail "no 'did you mean': $err";; esac
(cd "$work" && "$bika" demo --dir "$work/demo") >"$work/demo.log" 2>&1 \
  || { cat "$work/demo.log"; fail "bika demo failed"; }
grep -q 'demo passed' "$work/demo.log" || { cat "$work/demo.log"; fail "bika demo did not pass"; }
echo "smoke: the wheel installs without dev extras and bika works ($("$bika" --version))"
