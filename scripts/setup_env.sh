#!/usr/bin/env bash
# Create .venv once and install requirements.txt into it (again only when the file changes).
# Sourced by the other scripts; PYTHON picks the interpreter (default python3, 3.10 or newer);
# REQUIREMENTS=requirements-gpu.txt installs faiss-gpu instead of faiss-cpu (CUDA machines).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.requirements.sha256
requirements=${REQUIREMENTS:-requirements.txt}
wanted=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "installing $requirements into .venv (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" > "$stamp"
fi
