#!/usr/bin/env bash
# Deploy from CI without stored secrets: the whole flow, one command.
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/run.py" "$@"
