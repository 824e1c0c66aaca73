"""Cluster storage on the Python side, against a real S3-API server (s3proxy) on 127.0.0.1.

s3proxy (org.gaul:s3proxy, resolved by ``make jars`` from conf/jvm/s3proxy-pom.xml into
``.ntm/jars/s3proxy``) is a Java S3 server backed by a local folder: the client is pyarrow's
own S3 client (the AWS C++ SDK), so the requests, signatures and multipart uploads are the
ones a real bucket sees. The trainer reads Parquet from there, writes the model folder
there, the scorer and the contract readers load it from there, and MLflow registers it from
there (the registry stages a local copy: MLflow logs artifacts from local files).

The Spark side (``s3a://`` through Hadoop) needs hadoop-aws and the AWS SDK v2 bundle
(~640 MB for Hadoop 3.5.0), too big for CI: that test is opt-in (``NTM_TEST_S3A=1``), with
``spark.jars.packages=org.apache.hadoop:hadoop-aws:3.5.0``.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ntm_spark.core import paths, storage

pytestmark = [pytest.mark.integration, pytest.mark.s3]

BUCKET = "ntm-test"
ACCESS_KEY, SECRET_KEY = "ntm-test-identity", "ntm-test-credential"


def _s3proxy_jar() -> str:
    if os.environ.get("NTM_S3PROXY_JAR"):
        return os.environ["NTM_S3PROXY_JAR"]
    found = sorted(glob.glob(str(paths.jars_dir() / "s3proxy" / "s3proxy-*.jar")))
    if not found:
        pytest.skip(f"s3proxy jar not found under {paths.jars_dir() / 's3proxy'}: run `make jars` (or set NTM_S3PROXY_JAR).")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A fresh s3proxy on 127.0.0.1 with one bucket; the AWS_* environment points pyarrow at it."""
    import pyarrow.fs as pafs

    jar = _s3proxy_jar()
    root = tmp_path_factory.mktemp("s3proxy")
    (root / "blobs").mkdir()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    props = root / "s3proxy.properties"
    props.write_text(
        "\n".join(
            [
                f"s3proxy.endpoint={endpoint}",
                "s3proxy.authorization=aws-v2-or-v4",
                f"s3proxy.identity={ACCESS_KEY}",
                f"s3proxy.credential={SECRET_KEY}",
                "jclouds.provider=filesystem",
                f"jclouds.filesystem.basedir={root / 'blobs'}",
            ]
        )
        + "\n"
    )
    log = open(root / "s3proxy.log", "wb")
    proc = subprocess.Popen(["java", "-jar", jar, "--properties", str(props)], stdout=log, stderr=subprocess.STDOUT)
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    old = {k: os.environ.get(k) for k in env}
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"s3proxy exited with {proc.returncode}: {(root / 's3proxy.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("s3proxy did not listen within 60 s")
                time.sleep(0.2)
        os.environ.update(env)
        admin = pafs.S3FileSystem(
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint_override=endpoint, region="us-east-1",
            allow_bucket_creation=True,
        )  # fmt: skip
        admin.create_dir(BUCKET)
        yield endpoint
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _upload(local: Path, uri: str) -> None:
    import pyarrow.fs as pafs

    fs, inner = storage.resolve(uri)
    pafs.copy_files(str(local), inner, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def _train_cfg(data_dir: str, output_dir: str):
    from ntm_spark.core.config import TrainConfig, from_dict

    return from_dict(
        TrainConfig,
        {
            "data_dir": data_dir, "output_dir": output_dir, "num_topics": 6, "epochs": 2, "mini_batch_size": 64,
            "num_workers": 0, "accelerator": "cpu", "devices": 1, "progress_bar": False, "threads_per_process": 1,
            "checkpoint": False, "seed": 3,
        },
    )  # fmt: skip


def test_storage_helpers_round_trip_on_s3(s3_endpoint):
    base = f"s3a://{BUCKET}/helpers"
    storage.write_text(storage.join(base, "a", "x.txt"), "héllo")
    assert storage.read_text(f"s3://{BUCKET}/helpers/a/x.txt") == "héllo"
    assert storage.is_file(storage.join(base, "a", "x.txt")) and storage.is_dir(storage.join(base, "a"))
    assert not storage.exists(storage.join(base, "missing"))
    assert storage.list_files(base, ".txt") == [f"{base}/a/x.txt"]  # the caller's scheme comes back


@pytest.fixture(scope="module")
def s3_trained(s3_endpoint, bow_corpus, tmp_path_factory):
    """The bow corpus uploaded to S3, one model trained from there into S3, and the same training kept local."""
    from lightning_module.train import train_model

    data_uri = f"s3a://{BUCKET}/corpus"  # Hadoop's spelling, as a Spark job would write it
    _upload(bow_corpus, data_uri)
    model_uri = f"s3://{BUCKET}/models/run1"
    result = train_model(_train_cfg(data_uri, model_uri))
    assert result.model_dir == model_uri
    local = train_model(_train_cfg(str(bow_corpus), str(tmp_path_factory.mktemp("local") / "model")))
    return data_uri, model_uri, local.model_dir


def test_loader_reads_parquet_on_s3(s3_trained, bow_corpus):
    from lightning_module.data import BowDataModule
    from ntm_spark.core.contract import read_vocabulary, split_files

    data_uri = s3_trained[0]
    assert len(split_files(data_uri, "train")) == len(split_files(bow_corpus, "train")) == 2
    assert read_vocabulary(data_uri).words == read_vocabulary(bow_corpus).words
    remote = BowDataModule(data_uri, batch_size=64).dataset("train")
    local = BowDataModule(str(bow_corpus), batch_size=64).dataset("train")
    assert remote.num_rows == local.num_rows == 403
    for a, b in zip(remote, local):
        torch.testing.assert_close(a, b)


def test_model_trained_from_s3_into_s3_equals_the_local_one(s3_trained, bow_corpus):
    from lightning_module.model_folder import load_model_folder
    from ntm_spark.core.contract import MODEL_FOLDER_FILES, TOPIC_STABILITY_FILE, read_manifest, read_topic_word
    from ntm_spark.serving.scoring import TopicScorer

    data_uri, model_uri, local_dir = s3_trained
    for name in MODEL_FOLDER_FILES:
        if name != TOPIC_STABILITY_FILE:  # only warm starts write it
            assert storage.is_file(storage.join(model_uri, name)), name
    assert not storage.is_file(storage.join(model_uri, TOPIC_STABILITY_FILE))
    remote_model, hparams, words = load_model_folder(model_uri)
    local_model, _, local_words = load_model_folder(local_dir)
    assert words == local_words and hparams["training"]["data_dir"] == data_uri
    for (key, a), b in zip(remote_model.state_dict().items(), local_model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=key)
    assert read_manifest(model_uri) == read_manifest(bow_corpus)  # copied from the data folder on S3
    assert read_topic_word(model_uri, len(words)).shape == (6, len(words))

    scorer = TopicScorer.from_model_folder(model_uri)
    local_scorer = TopicScorer.from_model_folder(local_dir)
    counts = np.ones((2, scorer.feature_dim), dtype=np.float32)
    np.testing.assert_allclose(scorer.score_dense(counts).weights, local_scorer.score_dense(counts).weights, rtol=1e-5)


def test_model_folder_on_s3_is_logged_registered_and_served(s3_trained, mlflow_tracking):
    import mlflow
    import pandas as pd

    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.core.contract import read_vocabulary
    from ntm_spark.mlops.registry import register_run_model
    from ntm_spark.mlops.tracking import configure_tracking, ensure_experiment, log_training_run

    model_uri = s3_trained[1]
    cfg = MlflowConfig(tracking_uri=mlflow_tracking, experiment="ntm-s3", registered_model_name="ntm-s3-model")
    configure_tracking(cfg)
    with mlflow.start_run(experiment_id=ensure_experiment(cfg.experiment, mlflow_tracking)) as run:
        log_training_run(model_uri)  # staged to a local copy: MLflow logs artifacts from local files
    assert mlflow.get_run(run.info.run_id).data.tags["ntm.model_dir"] == model_uri
    reg = register_run_model(run.info.run_id, cfg, gate=False)
    loaded = mlflow.pyfunc.load_model(f"models:/{reg.name}/{reg.version}")
    words = read_vocabulary(model_uri).words
    out = loaded.predict(pd.DataFrame({"text": [" ".join(words[:20])]}))
    assert len(out) == 1


def test_stream_and_backfill_loader_serves_a_model_folder_on_s3(s3_trained):
    from ntm_spark.serving.model_loader import ModelSpec, ScorerLoader, folder_version

    _, model_uri, local_dir = s3_trained
    loader = ScorerLoader(ModelSpec(model_uri, refresh_interval_s=0.0))
    assert loader.ref.kind == "folder"
    loaded = loader.get()
    assert loaded.version == folder_version(model_uri) == folder_version(local_dir)
    assert loader.get() is loaded  # unchanged model.pt on S3: no reload


def test_report_reads_and_writes_s3(s3_trained):
    from ntm_spark.report.explore import write_report
    from ntm_spark.report.model import load_model

    data_uri, model_uri, _ = s3_trained
    out_uri = f"s3://{BUCKET}/reports/run1"
    report = write_report(load_model(model_uri), data_uri, out_uri, split="test", max_docs=50, cloud_words=10)
    assert report.info["data_dir"] == data_uri and report.info["n_docs"] > 0
    for name in ("index.html", "report.json", "top_words.csv"):
        assert storage.is_file(storage.join(out_uri, name)), name


def test_missing_remote_data_names_the_folder_and_the_fix(s3_endpoint):
    from ntm_spark.core.contract import DataNotFoundError, split_files

    with pytest.raises(DataNotFoundError, match=rf"s3://{BUCKET}/nothing-here.*ntm preprocess"):
        split_files(f"s3://{BUCKET}/nothing-here", "train", required=True)


@pytest.mark.spark
@pytest.mark.skipif(
    os.environ.get("NTM_TEST_S3A") != "1",
    reason="opt-in: set NTM_TEST_S3A=1 (downloads hadoop-aws 3.5.0 + the ~640 MB AWS SDK v2 bundle through "
    "spark.jars.packages=org.apache.hadoop:hadoop-aws:3.5.0)",
)
def test_spark_reads_s3a_written_by_python(s3_endpoint, bow_corpus):
    from pyspark.sql import SparkSession

    data_uri = f"s3a://{BUCKET}/spark-corpus"
    _upload(bow_corpus, data_uri)
    builder = SparkSession.builder.master("local[1]")
    for key, value in _s3a_conf(s3_endpoint).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        assert spark.read.parquet(f"{data_uri}/train").count() == 403
    finally:
        spark.stop()


S3A_PACKAGES = "org.apache.hadoop:hadoop-aws:3.5.0"  # pyspark 4.2.0's Hadoop; pulls software.amazon.awssdk:bundle


def _s3a_conf(endpoint: str) -> dict:
    return {
        "spark.jars.packages": S3A_PACKAGES,
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.access.key": ACCESS_KEY,
        "spark.hadoop.fs.s3a.secret.key": SECRET_KEY,
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    }


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NTM_TEST_S3A") != "1", reason="opt-in: set NTM_TEST_S3A=1 (as above)")
def test_preprocess_job_writes_s3a_and_the_trainer_reads_it(s3_endpoint, newsgroups_sample):
    from jobs import preprocess
    from lightning_module.data import BowDataModule
    from ntm_spark.core.contract import read_manifest, read_vocabulary, split_files

    out = f"s3a://{BUCKET}/preprocessed"
    conf = [arg for key, value in _s3a_conf(s3_endpoint).items() for arg in ("--spark-conf", f"{key}={value}")]
    small = ["--set", "vocab_size=300", "--set", "threshold=5", "--set", "num_train_shards=2"]
    assert preprocess.main(["--input", str(newsgroups_sample), "--output", out, "--master", "local[1]", *conf, *small]) == 0
    assert len(read_vocabulary(out)) > 0 and read_manifest(out)
    assert split_files(out, "train") and BowDataModule(out, batch_size=32).dataset("train").num_rows > 0
