# Spark job image: Java 17, pyspark, Spark's Kafka connector jars, NLTK WordNet data.
# Runs preprocessing, streaming scoring and backfill (spark-submit jobs/*.py).
# Not built in CI (no Docker engine there); linted with hadolint (`make lint`).
# The image has a JRE, not a JDK, so `make jars`' ntm-hadoop-fs.jar is not built here: a local
# session in the container uses Hadoop's own local file system (a chmod process per file written).
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NTM_HOME=/opt/ntm/state \
    NLTK_DATA=/opt/ntm/state/nltk_data

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven wordnet-base wordnet-sense-index procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/ntm
COPY setup.py pyproject.toml README.md ./
COPY conf ./conf
COPY ntm_spark ./ntm_spark
COPY lightning_module ./lightning_module
COPY jobs ./jobs

# CPU torch is enough for scoring; the pins come from setup.py's extras.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e ".[spark,serve,train]" \
 && mvn -q -B -f conf/jvm/pom.xml package -Djars.dir=/opt/ntm/state/jars \
 && rm -rf /root/.m2 \
 && ntm data wordnet

ENTRYPOINT ["spark-submit"]
CMD ["--help"]
