# Dataflow GPU worker image for grepq (custom container).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/grepq:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/grepq:0.1.0
#
# The Beam version here must equal the launcher's (requirements.txt).
ARG BEAM_VERSION=2.77.0
ARG PY_VERSION=3.11
FROM apache/beam_python${PY_VERSION}_sdk:${BEAM_VERSION} AS beam

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG PY_VERSION=3.11
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python${PY_VERSION} python${PY_VERSION}-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python${PY_VERSION} -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/grepq
COPY requirements.txt setup.py README.md ./
COPY grepq_core grepq_core
COPY transforms transforms
COPY pipelines pipelines
# CUDA build of torch for the GPU (the pins in requirements.txt, CUDA 12.8 wheels).
RUN pip install --upgrade pip \
    && pip install -r requirements.txt --extra-index-url https://download.pytorch.org/whl/cu128 \
    && pip install --no-deps '.[gcp]' \
    && python -c "import grepq_core, transforms, pipelines, torch, open_clip"

# The Beam SDK harness entrypoint, from the matching SDK image.
COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
