# ntm-spark: the README's two commands are `make demo` and `make test`.
# Every target installs what is missing first, from the project's own files.

SHELL        := /bin/bash
PYTHON       ?= python3
VENV         ?= .venv
PY           := $(VENV)/bin/python
PIP          := $(PY) -m pip
NTM          := $(VENV)/bin/ntm
STATE        := .ntm
JARS_STAMP   := $(STATE)/jars/.resolved
S3PROXY_STAMP := $(STATE)/jars/s3proxy/.resolved
HADOOP_FS_SRC := conf/jvm/src/io/github/ntmspark/hadoop/NioLocalFileSystem.java
HADOOP_FS_JAR := $(STATE)/jars/hadoop/ntm-hadoop-fs.jar
SCORER_SRC   := $(wildcard conf/jvm/src/io/github/ntmspark/scorer/*.java)
SCORER_JAR   := $(STATE)/jars/scorer/ntm-scorer.jar
WORDNET      := $(STATE)/nltk_data/corpora/wordnet/lexnames
PETASTORM_PY := .venv-petastorm/bin/python
PYTEST_ARGS  ?=
export SPARK_LOCAL_IP := 127.0.0.1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup install system-deps test-system-deps jars nltk-data petastorm-env test test-fast demo demo-full lint bench bench-list clean distclean

help:
	@echo "make demo   - install what is missing, then run every stage end to end (quick mode)"
	@echo "make test   - install what is missing, then run the test suite"
	@echo "make setup  - only install: Python deps, JVM jars, WordNet data, Petastorm env"
	@echo "make lint   - ruff + hadolint"
	@echo "make bench  - every benchmark in bench/ in turn (hours; GPU ones skipped without CUDA);"
	@echo "              ARGS=\"--only bench_serving ...\" runs some, ARGS=--dry-run lists them"
	@echo "make bench-list - each benchmark, what it measures and its command (runs and installs nothing)"

setup: install jars nltk-data petastorm-env

# --- system packages: Java 17+, Maven, WordNet (Debian). Installed only when missing.
system-deps:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn  >/dev/null || missing="$$missing maven"; \
	[ -f /usr/share/wordnet/index.noun ]  || missing="$$missing wordnet-base"; \
	[ -f /usr/share/wordnet/index.sense ] || missing="$$missing wordnet-sense-index"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# --- tests also screenshot the HTML report in headless Chromium, and drive Kafka with kcat,
# a client this project did not write (both Debian packages)
test-system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	if [ -n "$$missing" ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# --- Python: a venv with the pinned lock (torch, pyspark, lightning, mlflow, nltk, kafka-python ...)
$(VENV)/.installed: conf/requirements.lock setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" wheel
	$(PIP) install -q -r conf/requirements.lock
	$(PIP) install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# --- JVM jars through Maven: Kafka broker + Spark's Kafka connector into .ntm/jars
$(JARS_STAMP): conf/jvm/pom.xml
	@$(MAKE) --no-print-directory system-deps
	mvn -q -B -f conf/jvm/pom.xml package -Djars.dir=$(CURDIR)/$(STATE)/jars
	touch $@

# --- ntm-spark's one JVM class: local writes set permissions in-process (no chmod per file).
# Compiled against the Hadoop that pyspark ships; without a JDK, sessions use Hadoop's own class.
$(HADOOP_FS_JAR): $(HADOOP_FS_SRC) $(VENV)/.installed
	@$(MAKE) --no-print-directory system-deps
	@if ! command -v javac >/dev/null; then \
	  echo "javac not found: skipping $@ (local writes use Hadoop's chmod processes; install a JDK)"; exit 0; fi; \
	hadoop=$$($(PY) -c 'import glob, os, pyspark; print(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "hadoop-client-api-*.jar"))[0])') && \
	classes=$$(mktemp -d) && \
	javac -nowarn --release 17 -d "$$classes" -cp "$$hadoop" $(HADOOP_FS_SRC) && \
	mkdir -p $(@D) && jar cf $@ -C "$$classes" . && rm -rf "$$classes"

# --- the JVM scorer (--trigger real_time): the Python scorer's text rules and encoder as Spark Java UDFs.
# Compiled against the Spark (and its Jackson) that pyspark ships; without a JDK, real_time is refused.
$(SCORER_JAR): $(SCORER_SRC) $(VENV)/.installed
	@$(MAKE) --no-print-directory system-deps
	@if ! command -v javac >/dev/null; then \
	  echo "javac not found: skipping $@ (the JVM scorer of --trigger real_time; install a JDK)"; exit 0; fi; \
	spark_jars=$$($(PY) -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))') && \
	classes=$$(mktemp -d) && \
	javac -nowarn --release 17 -d "$$classes" -cp "$$spark_jars/*" $(SCORER_SRC) && \
	mkdir -p $(@D) && jar cf $@ -C "$$classes" . && rm -rf "$$classes"

# --- s3proxy (test-only S3-API server for tests/integration/test_cluster_storage.py) into .ntm/jars/s3proxy
$(S3PROXY_STAMP): conf/jvm/s3proxy-pom.xml
	@$(MAKE) --no-print-directory system-deps
	mvn -q -B -f conf/jvm/s3proxy-pom.xml package -Djars.dir=$(CURDIR)/$(STATE)/jars
	touch $@

jars: $(JARS_STAMP) $(HADOOP_FS_JAR) $(SCORER_JAR) $(S3PROXY_STAMP)

# --- NLTK WordNet offline: Debian's files copied into .ntm/nltk_data (whatever NTM_HOME is: every
# NTM_HOME without its own copy searches this one, as it uses .ntm/jars)
$(WORDNET): | $(VENV)/.installed
	@$(MAKE) --no-print-directory system-deps
	$(NTM) data wordnet --dest $(CURDIR)/$(STATE)/nltk_data

nltk-data: $(WORDNET)

# --- Petastorm's own environment, where `reader: petastorm` and `ntm train --from-spark-df` train:
# Petastorm 0.13.1 (pyarrow 14, numpy 1.26) with torch, Lightning and pyspark 4.0: see conf/petastorm-requirements.txt
.venv-petastorm/.installed: conf/petastorm-requirements.txt scripts/petastorm_env.sh setup.py
	bash scripts/petastorm_env.sh .venv-petastorm
	touch $@

petastorm-env: .venv-petastorm/.installed

# --- test-only Python packages (conf/test-requirements.txt): boto3, and the SageMaker SDK apart in
# $(VENV)/sagemaker-sdk without its dependencies (the file says why)
$(VENV)/.test-installed: conf/test-requirements.txt $(VENV)/.installed
	$(PIP) install -q -c conf/requirements.lock -r conf/test-requirements.txt
	rm -rf $(VENV)/sagemaker-sdk
	$(PIP) install -q --no-deps --target $(VENV)/sagemaker-sdk $$(sed -n 's/^#sdk: //p' conf/test-requirements.txt)
	touch $@

# --- the two commands
test: setup test-system-deps $(VENV)/.test-installed
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup test-system-deps $(VENV)/.test-installed
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install jars nltk-data
	$(NTM) demo --quick

demo-full: install jars nltk-data
	$(NTM) demo

lint: install
	$(VENV)/bin/ruff check ntm_spark lightning_module jobs tests bench
	$(VENV)/bin/hadolint docker/*.Dockerfile

BENCH_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
ARGS ?=

bench: setup
	$(PY) bench/run_all.py $(ARGS)

# the list needs only the standard library: no install first
bench-list:
	$(BENCH_PY) bench/run_all.py --dry-run

clean:
	rm -rf .pytest_cache build dist *.egg-info spark-warehouse metastore_db derby.log

distclean: clean
	-$(NTM) services down
	rm -rf $(VENV) .venv-petastorm $(STATE)
