#!/usr/bin/env bash
# grepq's GPU check, one command (benchmarks/gpu_check.py says what it does):
#   bash benchmarks/gpu_check.sh            on the device machine: install .whl/, check, write $OUT
#   bash benchmarks/gpu_check.sh --smoke    here, on the CPU, tiny (tests/test_gpu_check.py)
# Python: $PYTHON, else .venv/bin/python where there is one (here), else python3 (the device image's).
cd "$(dirname "$0")/.." || exit 2
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
