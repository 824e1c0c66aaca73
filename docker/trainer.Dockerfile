# GPU trainer image: CUDA torch + Lightning + the Arrow loader. No Spark needed to train
# (TorchDistributor launches use the Spark job image instead). Not built in CI.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ntm
COPY setup.py pyproject.toml README.md ./
COPY conf ./conf
COPY ntm_spark ./ntm_spark
COPY lightning_module ./lightning_module
COPY jobs ./jobs
RUN pip3 install --no-cache-dir -e ".[train]"

ENTRYPOINT ["ntm", "train"]
