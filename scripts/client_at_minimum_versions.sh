#!/usr/bin/env bash
# The Python client alone, at the lowest versions its pyproject.toml declares, in a fresh
# venv: its own tests (clients/python/tests) run against a real server started from the
# project's .venv (make install), through the sync and the asyncio client (issue 19).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
server="$root/.venv/bin/chatpro-privacy"
test -x "$server" || { echo "no $server: run make install first" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-python3}" -m venv "$scratch/venv"
"${PYTHON:-python3}" scripts/minimum_versions.py clients/python/pyproject.toml > "$scratch/minimum.txt"
echo "client minimum versions:"; sed 's/^/  /' "$scratch/minimum.txt"
"$scratch/venv/bin/pip" install -q --disable-pip-version-check \
  -c "$scratch/minimum.txt" "$root/clients/python[test]" 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; }
# What was installed must be the minimums themselves, not something pip preferred.
"$scratch/venv/bin/pip" freeze --disable-pip-version-check > "$scratch/installed.txt"
while read -r pin; do
  grep -qix "$pin" "$scratch/installed.txt" || { echo "installed other than $pin" >&2; exit 1; }
done < "$scratch/minimum.txt"

cd clients/python
CHATPRO_PRIVACY_SERVER="$server" CHATPRO_CLIENT_TESTS_REQUIRE_SERVER=1 \
  "$scratch/venv/bin/python" -m pytest -q -p no:cacheprovider
