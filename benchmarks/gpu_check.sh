#!/usr/bin/env bash
# What only a GPU can show (tests/test_cuda.py, bench.py on cifar-10/stl-10/imagenet, the digits
# pipeline in bf16 on the device), in at most about 8 minutes, written as one JSON.
#
#   PYTHON=python3 bash benchmarks/gpu_check.sh [--deps DIR] [--out FILE] [--budget SECONDS]
#
# Uses the machine's own torch (the interpreter named by PYTHON, default python3 on the PATH);
# --deps DIR is a folder of the small dependencies installed beforehand with
# `pip install --target DIR` (e.g. easydict, termcolor, faiss-cpu), put first on PYTHONPATH.
# Without CUDA (or without faiss) it says what it skips and still writes the JSON.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --deps) export PYTHONPATH="$2${PYTHONPATH:+:$PYTHONPATH}"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "${args[@]}"
