# Dataflow GPU worker image for grepq (custom container).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/grepq:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/grepq:0.1.0
#
# The Beam version must equal the launcher's (requirements.txt), and PY_VERSION
# must be the launcher's Python minor version; constraints.txt is resolved for
# Python 3.11 (docs/dataflow.md).
ARG BEAM_VERSION=2.77.0
ARG PY_VERSION=3.11
FROM apache/beam_python${PY_VERSION}_sdk:${BEAM_VERSION} AS beam

# torch 2.14.1 from PyPI is a CUDA 13.0 build: it brings its own CUDA 13.0
# libraries as wheels (cuda-toolkit 13.0.3, cuDNN and NCCL for CUDA 13, pinned
# in constraints.txt) and torchvision bundles nvJPEG, so the base image only
# has to be of the same CUDA line (it also sets the library paths where the
# driver is mounted). CUDA 13.0 needs an NVIDIA driver >= 580 on the workers.
FROM nvidia/cuda:13.0.3-base-ubuntu24.04
ARG PY_VERSION=3.11
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python${PY_VERSION} python${PY_VERSION}-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python${PY_VERSION} -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/grepq
COPY requirements.txt constraints.txt setup.py README.md ./
COPY scripts scripts
COPY grepq_core grepq_core
COPY transforms transforms
COPY pipelines pipelines
# The install recipe of .venv and CI (make runs the same script): the pins of
# requirements.txt and constraints.txt, grepq[gcp] with every dependency, then
# pip check. g++ only builds libsvm-official (brisque's dependency, published
# as source only) and is removed again.
RUN apt-get update && apt-get install -y --no-install-recommends g++ python${PY_VERSION}-dev \
    && bash scripts/install.sh /opt/venv/bin/python gcp \
    && apt-get purge -y --auto-remove g++ python${PY_VERSION}-dev \
    && rm -rf /var/lib/apt/lists/*

# The Beam SDK harness entrypoint, from the matching SDK image.
COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

# Last, what a worker loads must import and run: pip check, then every module
# of grepq_core, transforms and pipelines imported and two bundled samples
# extracted with the installed `grepq` (LL pathway, CPU: a build has no GPU).
COPY samples samples
RUN pip check \
    && python scripts/smoke_check.py --output /tmp/smoke \
    && rm -rf /tmp/smoke
