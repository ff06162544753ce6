#!/usr/bin/env bash
# Creates the Python virtualenv the tests that check the API against outside tools
# use, and installs their pinned packages into it: the official GTFS-realtime
# bindings and the GTFS and GTFS-realtime validators (tests/gtfs_feeds.rs), schemathesis
# (the OpenAPI contract test), and what checks deploy/ (tests/deploy_manifests.rs):
# PyYAML, kubernetes-validate (Kubernetes' OpenAPI schemas), check-jsonschema (for the
# Compose specification's schema it ships) and promql-parser (PromQL of the dashboard
# and the alert rules).
#
# Idempotent and cheap to rerun: the venv is kept at $EGRET_VENV (default
# $HOME/.cache/egret/venv) and the install is skipped while a stamp file there holds
# the same requirement list. Prints the interpreter's path last, for EGRET_PYTHON.
set -euo pipefail

venv="${EGRET_VENV:-$HOME/.cache/egret/venv}"
# gtfs-validator (the static GTFS rules) comes with gtfs-rt-validator; pinned too,
# so a new release cannot change what the tests judge.
requirements="gtfs-realtime-bindings==3.0.0
gtfs-rt-validator==0.3.0
gtfs-validator==0.1.2
schemathesis==4.32.5
PyYAML==6.0.3
kubernetes-validate==1.37.0
check-jsonschema==0.39.0
promql-parser==0.11.0"
stamp="$venv/.egret-requirements"

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "python-venv.sh: no $python on PATH (Python 3.11+ is needed)" >&2
    exit 1
fi

# A venv whose interpreter went away (the base Python was removed) is rebuilt.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "creating $venv" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$requirements" ]; then
    echo "$venv is up to date" >&2
else
    echo "installing into $venv:" $requirements >&2
    # Written only after a successful install, so a broken one is retried next time.
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $requirements
    printf '%s' "$requirements" >"$stamp"
fi

echo "$venv/bin/python"
