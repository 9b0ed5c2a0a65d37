#!/usr/bin/env bash
# Wheels the GPU check (benchmarks/gpu_check.py) installs on the device machine, into .whl/ (ignored).
#
# That machine's image (/work/.library/device/KINDS.md) has Python 3.12, torch 2.11 and
# torchvision 0.26 (kept: never carried), pyarrow, pandas, numpy, scipy, scikit-image,
# Pillow, grpcio, protobuf, PyYAML, requests, cloudpickle, regex, tqdm, timm,
# huggingface_hub, safetensors, pytest and pytest-timeout; it reaches no registry. What
# grepq's extract path imports beyond that, found by running the smoke check here with
# every other package made unimportable, is below: apache-beam, what Beam imports at
# run time that the image lacks, open_clip and ftfy, and piq (grepq_core.training.fsim, CUDA
# tests). Versions are constraints.txt's. Beam's numpy<2.5 pin is not met there (numpy
# 2.5): installed with --no-deps, the check shows whether that matters.
#
#   bash benchmarks/fetch_gpu_wheels.sh     # here, before the device call; prints the size
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEST=.whl
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p "$DEST"
WHEELS=(
  apache-beam==2.77.0
  beartype==0.22.9 cffi==2.1.1 pycparser==3.12 cryptography==50.0.2 fastavro==1.13.1 fasteners==0.20
  httplib2==0.32.1 jsonpickle==4.1.4 objsize==0.7.1 proto-plus==1.29.0 pytz==2026.6 zstandard==0.25.0
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
  piq==0.8.0
)
# One version of each: drop wheels of these names that are not the pinned version.
for spec in "${WHEELS[@]}"; do
  name=${spec%%==*}; version=${spec##*==}; norm=$(echo "$name" | tr 'A-Z-' 'a-z_')
  for f in "$DEST"/*.whl; do
    [ -e "$f" ] || continue
    base=$(basename "$f" | tr 'A-Z' 'a-z')
    case "$base" in "$norm"-*) case "$base" in "$norm-$version"-*) ;; *) rm -f "$f" ;; esac ;; esac
  done
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 \
  -d "$DEST" "${WHEELS[@]}"
ls -1 "$DEST"
echo "wheels: $(du -sh "$DEST" | cut -f1) in $DEST/ ($(ls "$DEST"/*.whl | wc -l) files)"
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
total=$(( tracked + ${untracked:-0} + wheels ))
echo "travels: tracked $(( tracked / 1048576 )) MiB + untracked $(( ${untracked:-0} / 1048576 )) MiB + wheels $(( wheels / 1048576 )) MiB = $(( total / 1048576 )) MiB of 64 MiB"
[ "$total" -lt $(( 64 * 1048576 )) ] || { echo "over 64 MiB: the device call would be refused"; exit 1; }
