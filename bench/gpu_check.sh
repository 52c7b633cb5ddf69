#!/usr/bin/env bash
# The GPU check in one command (see bench/README.md): CUDA tests, end-to-end runs and the speed targets.
#   bash bench/gpu_check.sh [--cpu-smoke] [--out DIR] [--budget-s S]
# Writes $OUT/gpu_check.json (default ./gpu_check_out) and logs; exit status 0 only if every check passed.
# PYTHON picks the interpreter (default: python3, else python); nothing is installed into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$PYTHON" bench/gpu_check.py "$@"
