#!/usr/bin/env bash
# A web app and two microservices behind Ostiary: everything, one command.
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/run.py" "$@"
