"""Shared fixtures: one local[2] Spark session and one real Kafka broker per test session."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", os.sys.executable)
# Tests never download: NLTK data and the corpus must come from the project's files.
os.environ.setdefault("NTM_OFFLINE", "1")

from ntm_spark.spark.corpus import locate_20newsgroups  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _isolated_mlflow_store(tmp_path_factory):
    """Point MLflow at a throw-away SQLite store unless a test session names one: never the user's."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        yield os.environ["MLFLOW_TRACKING_URI"]
        return
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow-default') / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def live_processes_mentioning(marker: str) -> list:
    """Live (non-zombie) processes whose command line mentions ``marker``: what a test left running."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z":
            found.append(f"{proc.name} {cmd[:200]}")
    return found


@pytest.fixture()
def live_processes():
    """The :func:`live_processes_mentioning` check, for tests that must leave nothing running."""
    return live_processes_mentioning


@pytest.fixture(autouse=True)
def _reset_mlflow_uris():
    """Jobs call ``mlflow.set_tracking_uri`` (global state): after each test, follow the environment again."""
    yield
    mlflow = os.sys.modules.get("mlflow")
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if mlflow is not None and uri:
        mlflow.set_tracking_uri(uri)
        # set_registry_uri() also exports MLFLOW_REGISTRY_URI: clear both so the registry follows tracking.
        mlflow.set_registry_uri(None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture(scope="session")
def spark():
    """A real local[2] Spark session with the Kafka connector jars, shared by all tests."""
    from ntm_spark.core.config import SparkConfig
    from ntm_spark.spark.session import build_spark_session

    cfg = SparkConfig(
        master="local[2]",
        app_name="ntm-spark-tests",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4"},
    )
    session = build_spark_session(cfg)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def newsgroups_archive() -> Path:
    """The 20 Newsgroups by-date archive (the shared copy, or $NTM_20NG)."""
    return locate_20newsgroups(download=False)


@pytest.fixture(scope="session")
def newsgroups_sample(tmp_path_factory, newsgroups_archive) -> Path:
    """A folder laid out like the corpus with a few files per group of both splits (~200 documents)."""
    root = tmp_path_factory.mktemp("20ng_sample")
    per_group = {"20news-bydate-train": 6, "20news-bydate-test": 4}
    seen: dict = {}
    with tarfile.open(newsgroups_archive) as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = member.name.split("/")
            if len(parts) != 3:
                continue
            split, group, _ = parts
            key = (split, group)
            if seen.get(key, 0) >= per_group.get(split, 0):
                continue
            seen[key] = seen.get(key, 0) + 1
            tar.extract(member, root, filter="data")
    return root


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory):
    """A real Apache Kafka broker (KRaft) on 127.0.0.1: reused if one is up, else started and stopped here.

    Reuse order: ``$NTM_KAFKA_BOOTSTRAP``, then a broker `ntm services up` started, else a fresh one
    on free ports in a temporary folder.
    """
    from ntm_spark.core.config import load_config
    from ntm_spark.tools.services import KafkaBroker, free_port

    if os.environ.get("NTM_KAFKA_BOOTSTRAP"):
        yield os.environ["NTM_KAFKA_BOOTSTRAP"]
        return
    running = KafkaBroker(load_config("services"))
    if running.proc.pid() is not None and running.healthy():
        yield running.bootstrap_servers
        return
    cfg = load_config("services", overrides=[f"kafka_port={free_port()}", f"kafka_controller_port={free_port()}"])
    broker = KafkaBroker(cfg, workdir=tmp_path_factory.mktemp("kafka"))
    broker.up()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.down()


# --------------------------------------------------------------------------- training (issue 4)


@pytest.fixture(scope="session")
def bow_corpus(tmp_path_factory) -> Path:
    """A small synthetic bag-of-words corpus in the preprocessing output format (uneven files and row groups)."""
    from lightning_module.synthetic import write_synthetic_corpus

    return write_synthetic_corpus(
        tmp_path_factory.mktemp("bow") / "corpus",
        n_docs=(403, 61, 59),
        vocab_size=120,
        num_topics=6,
        doc_len=50,
        row_group_size=37,
        files_per_split=2,
        seed=7,
    )


@pytest.fixture()
def loopback_ddp(monkeypatch):
    """Confine DDP rendezvous to loopback on a free port, and keep each rank to one thread."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return port



# --------------------------------------------------------------------------- MLflow (issue 5)

#: A tiny English vocabulary, so lemma tables and raw-text scoring work on real words.
TINY_VOCAB = [
    "car", "engine", "wheel", "game", "team", "player", "god", "church", "bible", "space",
    "orbit", "launch", "computer", "disk", "drive", "window", "file", "program", "gun", "law",
    "government", "key", "encryption", "chip", "medicine", "doctor", "patient", "sale", "price", "offer",
]  # fmt: skip


def make_model_folder(path, npmi=0.1, val_loss=10.0, tu=0.9, words=None, num_topics=4, seed=0):
    """Write a small untrained model folder (real save_model_folder) with the given final metrics."""
    import json as _json

    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.core.vocab import Vocabulary

    words = list(words or TINY_VOCAB)
    torch.manual_seed(seed)
    model = NTMModel(vocab_size=len(words), num_topics=num_topics)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "source": {"path": "tests/tiny", "format": "text"},
        "text_rules": {"clean": False, "stop_words": "english", "module": "ntm_spark.core.text"},
        "vocabulary": {"size": len(words), "sha256": Vocabulary(words).sha256},
        "documents": {"kept": 20},
    }
    (path / "source_manifest.json").write_text(_json.dumps(manifest))
    metrics = {"val_loss": val_loss, "val_npmi": npmi, "npmi": npmi, "tu": tu, "val_tu": tu, "diversity": 0.8}
    save_model_folder(path, model, words, metrics=metrics, config={"num_topics": num_topics, "seed": seed},
                      manifest_path=path / "source_manifest.json")
    return path


@pytest.fixture(scope="session")
def mlflow_tracking(tmp_path_factory):
    """A real SQLite MLflow store in a temporary folder, set as the tracking and registry URI."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    old_env = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    if old_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old_env


@pytest.fixture(scope="session")
def logged_runs(mlflow_tracking, tmp_path_factory):
    """Training-style runs logged with ntm_spark.mlops.tracking: base, better, worse, other_vocab -> run id."""
    import mlflow

    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.mlops.tracking import configure_tracking, ensure_experiment, log_training_run

    cfg = MlflowConfig(tracking_uri=mlflow_tracking, experiment="ntm-tests")
    configure_tracking(cfg)
    exp = ensure_experiment(cfg.experiment, mlflow_tracking)
    specs = {
        "base": dict(npmi=0.10, val_loss=10.0, seed=0),
        "better": dict(npmi=0.20, val_loss=10.2, seed=1),
        "worse": dict(npmi=0.05, val_loss=9.0, seed=2),
        "other_vocab": dict(npmi=0.50, val_loss=5.0, seed=3, words=TINY_VOCAB[:-2] + ["apple", "banana"]),
        "bad_guard": dict(npmi=0.30, val_loss=20.0, seed=4),
    }
    root = tmp_path_factory.mktemp("model_folders")
    runs = {}
    for key, spec in specs.items():
        folder = make_model_folder(root / key, **spec)
        with mlflow.start_run(experiment_id=exp, run_name=key) as run:
            log_training_run(folder, config={"num_topics": 4, "spec": key})
        runs[key] = run.info.run_id
    return runs


# --------------------------------------------------------------------------- streaming (issue 6)


@pytest.fixture(scope="session")
def newsgroups_test_docs(newsgroups_archive) -> list:
    """The first 2,400 documents of the 20 Newsgroups test split as ``(id, text)``, read with tarfile."""
    docs = []
    with tarfile.open(newsgroups_archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] != "20news-bydate-test":
                continue
            text = tar.extractfile(member).read().decode("utf-8", errors="replace")
            docs.append(("test/" + "/".join(parts[1:]), text))
            if len(docs) == 2400:
                break
    return docs


def make_stream_model_folder(path, docs, vocab_size=1000, num_topics=10, seed=0):
    """A randomly initialised NTM over the most frequent normalized words of ``docs`` (real save_model_folder)."""
    from collections import Counter

    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.core.text import LEGACY_TEXT_RULES, get_normalizer

    # The folder has no manifest, so it is scored with the legacy rules: count with them too.
    normalizer = get_normalizer(clean=True, stop_words="english", rules=LEGACY_TEXT_RULES)
    counts = Counter()
    for _, text in docs:
        counts.update(set(normalizer.normalize(text)))
    words = sorted(w for w, _ in counts.most_common(vocab_size) if w.strip())
    torch.manual_seed(seed)
    model = NTMModel(vocab_size=len(words), num_topics=num_topics)
    return save_model_folder(Path(path), model, words)


@pytest.fixture(scope="session")
def stream_model_folder(tmp_path_factory, newsgroups_test_docs) -> Path:
    """A tiny NTM model folder (20NG rules, vocabulary from 300 test documents) for the streaming tests."""
    return make_stream_model_folder(tmp_path_factory.mktemp("stream_model") / "ntm", newsgroups_test_docs[:300])


def stop_process_group(proc) -> None:
    """SIGTERM a subprocess started with ``start_new_session=True`` and its whole group (a JVM, Python workers);
    SIGKILL after 30 s."""
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
