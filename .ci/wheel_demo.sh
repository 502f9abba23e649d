#!/usr/bin/env bash
# CI: the installed package stands on its own. Build a wheel, install it into a fresh
# virtual environment outside the checkout, and run `jatos-sync demo --once` from an empty
# folder: no configuration file, no sample-project/ beside it. The folder must stay empty.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/pip wheel -q --no-deps -w "$tmp/dist" .
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "$tmp"/dist/*.whl
mkdir "$tmp/empty"
cd "$tmp/empty"
"$tmp/venv/bin/jatos-sync" demo --once >"$tmp/demo.log" 2>&1 || { cat "$tmp/demo.log"; exit 1; }
grep -q "now serves 10 files" "$tmp/demo.log" || { cat "$tmp/demo.log"; exit 1; }
if [ -n "$(ls -A)" ]; then echo "the demo left files in the folder it ran in:"; ls -A; exit 1; fi
echo "::: wheel: jatos-sync demo --once ran from an empty folder"
