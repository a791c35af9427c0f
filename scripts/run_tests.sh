#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite (CPU only). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
exec .venv/bin/python -m pytest "$@"
