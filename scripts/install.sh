#!/usr/bin/env bash
# The one install recipe for grepq. `make` runs it to build .venv (so CI's
# `make test` runs it too) and the Dockerfile runs it to build the Dataflow
# worker image: the same pins, the same resolver run, the same `pip check`.
#
#   scripts/install.sh [--editable] PYTHON EXTRAS [PIP_ARGS...]
#
#   PYTHON    interpreter of the environment to install into (its own pip is used)
#   EXTRAS    grepq's extras, comma-separated: gcp (worker image), gcp,test (.venv)
#   PIP_ARGS  passed on to both `pip install`s (tests/test_install.py passes
#             --dry-run --report FILE to see what the recipe would change)
#
# Versions: requirements.txt pins the four top-level packages; constraints.txt
# pins every distribution that resolves from them and setup.py (`make
# constraints` rewrites it from .venv). Constraints only bound versions, they
# install nothing, so it can also pin test-only tools.
set -euo pipefail

editable=()
if [[ ${1:-} == --editable ]]; then
  editable=(-e)
  shift
fi
if (( $# < 2 )); then
  echo "usage: $0 [--editable] PYTHON EXTRAS [PIP_ARGS...]" >&2
  exit 2
fi
python=$1 extras=$2
shift 2
cd "$(dirname "$0")/.."

pip=("$python" -m pip)
# pip itself at the pinned version first: the resolver below is then the same
# everywhere.
"${pip[@]}" install -q -c constraints.txt --upgrade pip "$@"
# No --no-deps: every runtime dependency of grepq is installed and checked.
"${pip[@]}" install -q -c constraints.txt -r requirements.txt "${editable[@]}" ".[$extras]" "$@"
"${pip[@]}" check
