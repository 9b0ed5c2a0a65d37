#!/usr/bin/env bash
# Nightly grepq on Dataflow: extract the images added since the last run
# (`grepq extract --incremental` into one growing features folder), then score
# every feature row into tonight's folder. Run by cron on a launcher machine or
# by a Cloud Run job on a Cloud Scheduler trigger (docs/dataflow.md, "Nightly").
#
#   PROJECT=my-project BUCKET=my-bucket IMAGE=REGION-docker.pkg.dev/.../grepq:0.1.0 scripts/nightly.sh
#
# Optional: REGION (default us-central1), PHOTOS (default gs://$BUCKET/photos/**),
# OUT (default gs://$BUCKET/grepq), MODEL (a `grepq fit` model.json; zero-shot
# scores without it), KEEP (fraction kept, default 0.8).
# Exits non-zero, so cron mails and Cloud Run marks the execution failed, when
# a job fails.
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${BUCKET:?set BUCKET}" "${IMAGE:?set IMAGE (the worker image)}"
REGION=${REGION:-us-central1}
PHOTOS=${PHOTOS:-gs://$BUCKET/photos/**}
OUT=${OUT:-gs://$BUCKET/grepq}
KEEP=${KEEP:-0.8}
day=$(date -u +%Y-%m-%d)
dataflow=(--runner DataflowRunner --project "$PROJECT" --region "$REGION"
          --temp_location "gs://$BUCKET/tmp"
          --sdk_container_image "$IMAGE" --sdk_location container)

# GPU workers, one model per GPU (docs/dataflow.md, section 2); at most 5% of
# tonight's images may become dead letters.
grepq extract --incremental --input "$PHOTOS" --output "$OUT/features" \
  "${dataflow[@]}" --job_name "grepq-extract-$day" \
  --machine_type g2-standard-8 \
  --dataflow_service_options 'worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver' \
  --number_of_worker_harness_threads 4 \
  --large-model --device cuda --batch-size 256 \
  --max-dead-letter-fraction 0.05

# CPU workers: scoring is a Parquet map.
grepq score --features "$OUT/features" ${MODEL:+--model "$MODEL"} \
  --output "$OUT/scores/$day" --keep-top-fraction "$KEEP" \
  "${dataflow[@]}" --job_name "grepq-score-$day"
