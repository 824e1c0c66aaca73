"""The JVM scorer (``ntm-scorer.jar``) against the Python scorer, which is the definition.

Models: a small NTM per preset, trained for a few steps on 20 Newsgroups (so that weights and
batch-norm running statistics are not their initial values), registered the way the registry
stages them (``stage_model_folder``: ``lemmas.json`` and the ``jvm/`` export). Each is paired
with a text rule set: ``sagemaker`` with ``v1`` (the legacy rules), ``default`` with ``v2`` (the
current rules), and ``sagemaker`` with ``notebook``; all clean 20 Newsgroups headers, quotes and
signatures, as the stream does for such a model.

The JVM side runs as the stream would run it: Java UDFs registered in the real Spark session.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

#: (preset, text rules) of the models checked; the first two also on every document (slow).
MODELS = [("sagemaker", "v1"), ("default", "v2"), ("sagemaker", "notebook")]
PARITY_TOLERANCE = 1e-5


def _javac_missing() -> bool:
    return shutil.which("javac") is None


@pytest.fixture(scope="module")
def jvm_spark(spark):
    """The shared session with the JVM scorer's functions registered (the jar comes from `make jars`)."""
    from ntm_spark.spark.jvm_scoring import register_jvm_scorer
    from ntm_spark.spark.session import scorer_jar

    if scorer_jar() is None:
        if _javac_missing():
            pytest.skip("no JDK: ntm-scorer.jar cannot be built (make jars skips it)")
        pytest.fail("ntm-scorer.jar is missing: run `make jars` (a JDK is installed, so it must build)")
    register_jvm_scorer(spark)
    return spark


@pytest.fixture(scope="module")
def all_newsgroups_docs(newsgroups_archive) -> list:
    """Every 20 Newsgroups document (train and test, 18,846), decoded as the stream decodes bytes."""
    from ntm_spark.core.text import decode_document_bytes

    docs = []
    with tarfile.open(newsgroups_archive) as tar:
        for member in tar:
            if member.isfile() and member.name.count("/") == 2:
                docs.append(decode_document_bytes(tar.extractfile(member).read())[0])
    return docs


def _train_model_folder(root: Path, docs: list, preset: str, rules: str, vocab_size: int = 2000, num_topics: int = 12) -> Path:
    """Train a small NTM of ``preset`` for a few steps on ``docs`` under ``rules``; return the staged (registered) folder."""
    import json
    from collections import Counter

    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from ntm_spark.core.hparams import Hyperparameters, resolve_hparams
    from ntm_spark.core.text import get_normalizer
    from ntm_spark.core.vocab import Vocabulary
    from ntm_spark.serving.pyfunc_model import stage_model_folder

    normalizer = get_normalizer(clean=True, stop_words="english", rules=rules)
    token_lists = [normalizer.normalize(t) for t in docs]
    df = Counter(w for tokens in token_lists for w in set(tokens))
    words = sorted(w for w, _ in df.most_common(vocab_size))
    vocab = Vocabulary(words)
    x = torch.from_numpy(np.stack([vocab.to_dense(tokens) for tokens in token_lists]))  # (N, V)
    x = x[x.sum(dim=1) > 0]
    h = resolve_hparams(Hyperparameters(num_topics=num_topics), preset)
    torch.manual_seed(0)
    model = NTMModel.from_hparams(h, len(words))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):  # enough to move the weights and the batch-norm statistics off their start
        batch = x[torch.randint(0, len(x), (64,), generator=gen)]
        optimizer.zero_grad()
        model.loss(batch).loss.backward()
        optimizer.step()
    model.eval()
    src = root / f"{preset}-{rules}"
    src.mkdir(parents=True)
    manifest = src / "source_manifest.json"
    manifest.write_text(json.dumps({
        "source": {"format": "20newsgroups"},
        "text_rules": {"rules": rules, "clean": True, "stop_words": "english", "module": "ntm_spark.core.text"},
        "vocabulary": {"size": len(words), "sha256": vocab.sha256},
    }))  # fmt: skip
    save_model_folder(src, model, words, manifest_path=manifest)
    return stage_model_folder(src, root / f"{preset}-{rules}-registered")


@pytest.fixture(scope="module")
def jvm_models(tmp_path_factory, all_newsgroups_docs) -> dict:
    """(preset, rules) -> a registered model folder with its JVM export."""
    docs = all_newsgroups_docs[::19][:1000]  # a spread over every group
    root = tmp_path_factory.mktemp("jvm_models")
    return {key: _train_model_folder(root, docs, *key) for key in MODELS}


# --------------------------------------------------------------------------- the export


def test_export_files_match_the_model(jvm_models):
    """jvm/ holds float32 tensors equal to the weights, the rules of the manifest and the vocabulary's identity."""
    import torch

    from lightning_module.model_folder import load_model_folder
    from ntm_spark.core.contract import JVM_EXPORT_DIR, read_jvm_export
    from ntm_spark.core.vocab import Vocabulary

    folder = jvm_models[("default", "v2")]
    export = read_jvm_export(folder)
    model, _, words = load_model_folder(folder)
    assert export["text_rules"]["rules"] == "v2" and export["text_rules"]["clean"] is True
    assert export["vocab_sha256"] == Vocabulary(words).sha256
    assert export["encoder_input"] == "log1p" and export["num_topics"] == model.num_topics
    kinds = [layer["kind"] for layer in export["layers"]]
    assert kinds == ["linear", "batch_norm", "activation", "linear", "batch_norm", "activation", "linear", "batch_norm"]
    state = model.state_dict()
    first = export["layers"][0]
    saved = np.load(folder / JVM_EXPORT_DIR / first["weight"])
    assert saved.dtype == np.dtype("<f4") and np.array_equal(saved, state["encoder.0.weight"].numpy())
    mu_bn = export["layers"][-1]
    assert np.array_equal(np.load(folder / JVM_EXPORT_DIR / mu_bn["running_var"]), state["mu_bn.running_var"].numpy())
    # Trained: the statistics moved, so batch norm is really exercised by the parity tests.
    assert not torch.allclose(state["mu_bn.running_var"], torch.ones_like(state["mu_bn.running_var"]))


def test_a_jar_of_another_version_is_refused_with_the_fix(jvm_spark, monkeypatch):
    """A jar whose ntm_score struct is not the one this code reads (built before an upgrade) says `make jars`."""
    from ntm_spark.spark import jvm_scoring

    monkeypatch.setattr(jvm_scoring, "SCORER_API_VERSION", jvm_scoring.SCORER_API_VERSION + 1)
    with pytest.raises(jvm_scoring.JvmScorerError, match=r"API version 2, this code needs 3\): rebuild it with `make jars`"):
        jvm_scoring.register_jvm_scorer(jvm_spark)


def test_model_without_export_is_refused_with_the_fix(jvm_spark, jvm_models, tmp_path):
    from ntm_spark.spark.jvm_scoring import JvmScorerError, check_jvm_model

    folder = tmp_path / "old"
    shutil.copytree(jvm_models[("sagemaker", "v1")], folder)
    shutil.rmtree(folder / "jvm")
    with pytest.raises(JvmScorerError, match="no jvm/scorer.json.*Register it again"):
        check_jvm_model(jvm_spark, folder)


def test_unknown_rule_set_is_refused_naming_it(jvm_spark, jvm_models, tmp_path):
    import json

    from ntm_spark.spark.jvm_scoring import JvmScorerError, check_jvm_model

    folder = tmp_path / "future"
    shutil.copytree(jvm_models[("sagemaker", "v1")], folder)
    scorer = json.loads((folder / "jvm" / "scorer.json").read_text())
    scorer["text_rules"]["rules"] = "v3"
    (folder / "jvm" / "scorer.json").write_text(json.dumps(scorer))
    with pytest.raises(JvmScorerError, match="text rule set 'v3' has no JVM implementation"):
        check_jvm_model(jvm_spark, folder)


def test_damaged_tensor_is_refused(jvm_spark, jvm_models, tmp_path):
    from ntm_spark.spark.jvm_scoring import JvmScorerError, check_jvm_model

    folder = tmp_path / "damaged"
    shutil.copytree(jvm_models[("sagemaker", "v1")], folder)
    path = folder / "jvm" / "mu.weight.npy"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(JvmScorerError, match="truncated"):
        check_jvm_model(jvm_spark, folder)


# --------------------------------------------------------------------------- parity


def _parity(spark, folder: Path, docs: list, min_scored: float = 0.9) -> dict:
    """Score ``docs`` with both scorers; assert identical bags of words, codes, token and OOV counts and top topics, weights within tolerance."""
    from pyspark.sql import functions as F

    from ntm_spark.serving.scoring import TopicScorer
    from ntm_spark.spark.jvm_scoring import BOW_FUNCTION, score_batch_jvm

    py = TopicScorer.from_model_folder(folder)
    frame = spark.createDataFrame(
        [(i, t, None, None) for i, t in enumerate(docs)], "id int, text string, error_code string, error_message string"
    )
    started = time.perf_counter()
    bows = dict(frame.select("id", F.call_function(BOW_FUNCTION, "text", F.lit(str(folder))).alias("bow")).collect())
    scored = {r.id: r for r in score_batch_jvm(frame, folder, model_name="m", model_version="1").collect()}
    jvm_s = time.perf_counter() - started
    started = time.perf_counter()
    want_bows = [py.vocab.indices_of(py.normalizer.normalize(t)) for t in docs]
    result = py.score_texts(docs)
    py_s = time.perf_counter() - started
    bow_diff = [i for i in range(len(docs)) if list(bows[i]) != want_bows[i]]
    assert not bow_diff, f"{len(bow_diff)} documents tokenize differently, first {bow_diff[:5]}"
    max_err, scored_rows = 0.0, 0
    for i in range(len(docs)):
        row, err = scored[i], result.errors[i]
        assert (row.error_code, row.error_message) == ((err.code, err.message) if err else (None, None)), i
        # The drift monitor's counts: null where Python never normalized (-1), else Python's exactly.
        want_counts = (None, None) if result.tokens[i] < 0 else (int(result.tokens[i]), int(result.oov_tokens[i]))
        assert (row.n_tokens, row.n_oov_tokens) == want_counts, i
        if err is not None:
            assert row.topic_weights is None
            continue
        scored_rows += 1
        weights = np.asarray(row.topic_weights, dtype=np.float64)
        max_err = max(max_err, float(np.abs(weights - result.weights[i]).max()))
        want_top = py.top_topics(result.weights[i], k=3, words=5)
        gaps = np.diff(np.sort(result.weights[i])[::-1][:4])
        if (np.abs(gaps) > 2 * PARITY_TOLERANCE).all():  # no near-tie: the order is the same
            assert [(t.topic, t.words) for t in row.top_topics] == [(t["topic"], t["words"]) for t in want_top], i
    assert max_err <= PARITY_TOLERANCE
    assert scored_rows >= min_scored * len(docs)
    codes = sorted({r.error_code for r in scored.values() if r.error_code})
    oov = sum(r.n_oov_tokens or 0 for r in scored.values())
    return {
        "docs": len(docs), "scored": scored_rows, "codes": codes, "max_abs_error": max_err, "jvm_s": jvm_s, "python_s": py_s,
        "tokens": sum(r.n_tokens or 0 for r in scored.values()), "oov_tokens": oov,
    }  # fmt: skip


@pytest.mark.parametrize("key", MODELS, ids=[f"{p}-{r}" for p, r in MODELS])
def test_parity_on_500_documents(jvm_spark, jvm_models, all_newsgroups_docs, key):
    """500 documents spread over both splits and every group: identical bags of words, token and OOV counts, weights within 1e-5."""
    docs = all_newsgroups_docs[7::37][:500]
    report = _parity(jvm_spark, jvm_models[key], docs)
    print(f"parity {key}: {report}")
    assert 0 < report["oov_tokens"] < report["tokens"]  # the counts were compared on documents that have both


@pytest.mark.slow
@pytest.mark.parametrize("key", MODELS[:2], ids=[f"{p}-{r}" for p, r in MODELS[:2]])
def test_parity_on_every_document(jvm_spark, jvm_models, all_newsgroups_docs, key):
    """Every 20 Newsgroups document (18,846): identical token counts, weights within 1e-5."""
    assert len(all_newsgroups_docs) == 18846
    report = _parity(jvm_spark, jvm_models[key], all_newsgroups_docs)
    print(f"parity {key}: {report}")


def test_bad_documents_get_the_python_codes(jvm_spark, jvm_models):
    """The document checks run in the JVM with the Python codes and messages (dead letters)."""
    docs = ["", "  \t\n", "\x00binary", "\x01\x02\x03 abc", "x" * 1_000_001, "the of and", "Σ space orbit"]
    report = _parity(jvm_spark, jvm_models[("sagemaker", "v1")], docs * 20, min_scored=0.0)
    assert report["codes"] == ["binary", "empty_after_normalization", "empty_text", "too_large"]
    assert report["scored"] == 20  # "Σ space orbit" (space is in the vocabulary)


# --------------------------------------------------------------------------- the tokenizer on any text


def _fragments():
    from hypothesis import strategies as st

    pieces = st.sampled_from([
        "\n", "\r\n", "\r", " ", "\t", "\x1c", "\u2028", "\u00a0", "'", "\u2019", "n't", "'s", "'ll", "Σ", "ΣΑΣ", "ς", "İ",
        "ß", "ﬁ", "e\u0301", "_", "__", "a1", "3d", "From: x\n", "Subject: y\n\n", "> quoted\n", "| bar\n", "John writes:\n",
        "In article <x@y>", "--\n", "-- \n", "-----\n", "begin 644 f.txt\n", "M" + "A" * 60 + "\n", "`\nend\n",
        "-----BEGIN PGP SIGNATURE-----\n", "-----END PGP SIGNATURE-----\n", "Hash: MD5\n", "aGVsbG8gd29ybGQ" * 4 + "\n",
        "00 1a 2b 3c 4d 5e 6f 70 81\n", "does", "dos", "uses", "ms", "pass", "was", "space", "orbits", "gods",
    ])  # fmt: skip
    return st.lists(st.one_of(pieces, st.text(min_size=1, max_size=12)), max_size=40).map("".join)


@pytest.mark.parametrize("key", MODELS, ids=[f"{p}-{r}" for p, r in MODELS])
def test_normalizer_matches_python_on_any_text(jvm_spark, jvm_models, key):
    """Hypothesis: on arbitrary Unicode text, the JVM's lemmas are Python's, token for token."""
    from hypothesis import HealthCheck, given, settings

    from ntm_spark.serving.scoring import TopicScorer
    from ntm_spark.spark.jvm_scoring import SCORER_CLASS  # noqa: F401 - the class the gateway calls

    folder = str(jvm_models[key])
    py = TopicScorer.from_model_folder(folder)
    jvm = jvm_spark.sparkContext._jvm.io.github.ntmspark.scorer.NtmScorer.load(folder)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_fragments())
    def check(text):
        assert list(jvm.normalize(text)) == py.normalizer.normalize(text)

    check()


# --------------------------------------------------------------------------- the stream's columns and records


@pytest.fixture(scope="module")
def registered_stream_model(stream_model_folder, tmp_path_factory) -> Path:
    """The streaming tests' model folder, staged as the registry stages it (with ``jvm/``)."""
    from ntm_spark.serving.pyfunc_model import stage_model_folder

    return stage_model_folder(stream_model_folder, tmp_path_factory.mktemp("registered_stream") / "ntm")


def _stream_messages(good: str) -> list:
    import json

    return [
        ("g1", json.dumps({"id": "g1", "text": good, "lang": "en"})),
        ("g2", json.dumps({"id": "g2", "text": good + " Σ again\u2019s"})),
        ("nj", "this is {not json"),
        ("arr", "[1, 2, 3]"),
        ("mt", json.dumps({"id": "mt", "body": "no text field"})),
        ("ns", json.dumps({"id": "ns", "text": 42})),
        ("big", json.dumps({"id": "big", "text": "word " * 400})),
        ("emp", json.dumps({"id": "emp", "text": "   "})),
        ("ean", json.dumps({"id": "ean", "text": "Subject: hi\n\nthe of and zzzqqq"})),
        ("trail", json.dumps({"id": "trail", "text": good}) + " trailing"),
        ("brace", "{}}"),
        ("mttrail", json.dumps({"id": "mttrail"}) + " x"),
        ("ws", " \u00a0" + json.dumps({"id": "ws", "text": good}) + " \n"),
        ("esc", json.dumps({"id": "esc", "text": good + ' "}{ \\'})),
        ("nul", json.dumps({"id": "nul", "text": good + "\u0000"})),
        ("bin", bytes(range(256))),
        ("tomb", None),
        (None, json.dumps({"text": good})),
    ]


def _kafka_frame(spark, values):
    import datetime as dt

    rows = []
    for i, (key, value) in enumerate(values):
        raw = value if (value is None or isinstance(value, bytes)) else value.encode("utf-8")
        rows.append((key.encode() if key else None, raw, "documents", i % 2, i, dt.datetime(2026, 1, 1), 0))
    return spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp, timestampType int"
    )


def test_score_batch_jvm_gives_the_python_paths_columns_and_records(jvm_spark, registered_stream_model):
    """Same schema as score_batch, and the same output and dead-letter records (weights within 1e-5)."""
    import json

    from ntm_spark.core.schema import N_OOV_TOKENS_COL, N_TOKENS_COL
    from ntm_spark.core.vocab import Vocabulary
    from ntm_spark.serving.model_loader import ModelSpec, folder_version, parse_model_ref
    from ntm_spark.spark.jvm_scoring import score_batch_jvm
    from ntm_spark.spark.streaming import parse_messages, score_batch, to_kafka_records

    words = Vocabulary.from_file(registered_stream_model / "vocab.txt").words
    good = "Subject: x\n\n" + " ".join(words[:40])
    parsed = parse_messages(_kafka_frame(jvm_spark, _stream_messages(good)), max_message_bytes=1000, passthrough_fields=["lang"])
    folder = str(registered_stream_model)
    python = score_batch(parsed, ModelSpec(folder, max_text_bytes=1000), top_k=2, top_words=3)
    jvm = score_batch_jvm(
        parsed, folder, top_k=2, top_words=3, max_text_bytes=1000,
        model_name=parse_model_ref(folder).name, model_version=folder_version(folder),
    )  # fmt: skip
    assert [(f.name, f.dataType) for f in jvm.schema] == [(f.name, f.dataType) for f in python.schema]
    # The drift monitor's token counts (not in the Kafka records): the same per message, null where
    # parsing or a document check stopped the row.
    counts = [N_TOKENS_COL, N_OOV_TOKENS_COL]
    want_counts = {r.source_offset: (r[counts[0]], r[counts[1]]) for r in python.select("source_offset", *counts).collect()}
    got_counts = {r.source_offset: (r[counts[0]], r[counts[1]]) for r in jvm.select("source_offset", *counts).collect()}
    assert got_counts == want_counts
    assert sum(1 for n, _ in want_counts.values() if n is not None) >= 4 and any(o for _, o in want_counts.values())

    def records(df):
        out = {}
        for r in to_kafka_records(df, "out", "dlq").collect():
            value = json.loads(r["value"])
            value.pop("scored_at", None)
            value.pop("failed_at", None)
            out[value["source_offset"]] = (r["topic"], r["key"], value)
        return out

    want, got = records(python), records(jvm)
    assert sorted(got) == sorted(want) == list(range(18))
    for offset, (topic, key, value) in want.items():
        g_topic, g_key, g_value = got[offset]
        assert (g_topic, g_key) == (topic, key), offset
        if topic == "out":
            assert np.allclose(g_value.pop("topic_weights"), value.pop("topic_weights"), atol=PARITY_TOLERANCE, rtol=0)
            for a, b in zip(g_value["top_topics"], value["top_topics"]):
                assert a.pop("weight") == pytest.approx(b.pop("weight"), abs=PARITY_TOLERANCE)
        assert g_value == value, offset
    codes = {v[2]["key"]: v[2]["error_code"] for v in want.values() if v[0] == "dlq"}
    assert codes["trail"] == codes["brace"] == codes["mttrail"] == "not_json" and codes["ean"] == "empty_after_normalization"
    assert "esc" not in codes and codes["nul"] == "binary"  # braces and quotes inside the text are text


def test_single_json_check_matches_python(jvm_spark):
    """The JVM's trailing-data check gives check_single_json's message on values that are JSON objects."""
    from ntm_spark.core.text import unicode_tables
    from ntm_spark.spark.streaming import check_single_json

    single = jvm_spark.sparkContext._jvm.io.github.ntmspark.scorer.SingleJson
    assert list(single.pythonSpaceRanges()) == unicode_tables()["space"]
    values = [
        '{"a": 1}', ' {"a": 1}\n', '{"a": 1} x', "{}}", '{"a": "}"} {"b": 2}', '{"a": "\\"}"}', '{"a": [1, {"b": "]"}]}  ',
        '\u3000{"a": "Σ"}\u2028', '{"a": 1}\u00a0\u00a0yz\u00a0', '{"a": {"b": {}}}}{', '{"t": "\U0001f600"} \U0001f600',
    ]  # fmt: skip
    for raw in values:
        assert single.check(raw) == check_single_json(raw), raw


def test_keep_input_keeps_the_text_as_the_python_path_does(jvm_spark, registered_stream_model):
    """With keep_input (the stream's Parquet sink), both scorers keep ``text`` in the same place, unchanged."""
    from ntm_spark.serving.model_loader import ModelSpec
    from ntm_spark.spark.jvm_scoring import score_batch_jvm
    from ntm_spark.spark.streaming import parse_messages, score_batch

    parsed = parse_messages(_kafka_frame(jvm_spark, _stream_messages("space orbit launch nasa")), max_message_bytes=1000)
    folder = str(registered_stream_model)
    python = score_batch(parsed, ModelSpec(folder, max_text_bytes=1000), keep_input=True)
    jvm = score_batch_jvm(parsed, folder, max_text_bytes=1000, keep_input=True)
    assert jvm.columns == python.columns and "text" in jvm.columns
    want = {r.source_offset: r.text for r in python.select("source_offset", "text").collect()}
    assert {r.source_offset: r.text for r in jvm.select("source_offset", "text").collect()} == want
    assert "text" not in score_batch_jvm(parsed, folder, max_text_bytes=1000).columns


def test_an_executor_without_the_folder_reads_the_shipped_archive(jvm_spark, registered_stream_model, tmp_path):
    """On another host the driver's folder path does not exist: the JVM scorer reads the copy ship_model_folder sent."""
    from ntm_spark.spark.jvm_scoring import score_batch_jvm, ship_model_folder
    from ntm_spark.spark.streaming import parse_messages

    folder = tmp_path / "ntm-shipped-7"
    shutil.copytree(registered_stream_model, folder)
    assert ship_model_folder(jvm_spark, folder) is None  # a local master shares the driver's disk: nothing to ship
    archive = ship_model_folder(jvm_spark, folder, force=True)
    assert archive == str(folder.with_name("ntm-shipped-7.zip"))
    parsed = parse_messages(_kafka_frame(jvm_spark, _stream_messages("space orbit launch nasa")), max_message_bytes=1000)
    want = {r.source_offset: r.topic_weights for r in score_batch_jvm(parsed, folder, max_text_bytes=1000).collect()}
    moved = tmp_path / "elsewhere"
    folder.rename(moved)  # the path the query names no longer exists on this "host"
    gone = tmp_path / "gone" / "ntm-shipped-7"
    got = {r.source_offset: r.topic_weights for r in score_batch_jvm(parsed, gone, max_text_bytes=1000).collect()}
    assert got == want and sum(w is not None for w in got.values()) >= 4
    missing = tmp_path / "gone" / "never-shipped"
    with pytest.raises(Exception, match="never-shipped"):
        score_batch_jvm(parsed, missing, max_text_bytes=1000).collect()


def test_stream_scorer_setting_picks_the_scorer_and_auto_falls_back(jvm_spark, stream_model_folder, tmp_path, monkeypatch, caplog):
    """``stream.scorer``: auto and jvm plan no Python operator; python does; auto falls back when the JVM scorer cannot run, jvm and real_time fail."""
    import json
    import logging

    from ntm_spark.core.config import load_config
    from ntm_spark.spark import jvm_scoring
    from ntm_spark.spark.stream_query import build_scored

    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))  # the staged jvm-models/ copy goes there
    frame = _kafka_frame(jvm_spark, _stream_messages("space orbit launch nasa"))

    def plan(**kw):
        overrides = {"model_uri": str(stream_model_folder), "drift": False, **kw}
        cfg = load_config("stream", overrides=[f"{k}={json.dumps(v)}" for k, v in overrides.items()])
        scored = build_scored(jvm_spark, frame, cfg)
        assert scored.count() == 18
        return scored._jdf.queryExecution().executedPlan().toString()

    for scorer in ("auto", "jvm"):
        text = plan(scorer=scorer)
        assert "MapInPandas" not in text and "PythonUDF" not in text and "ntm_score" in text
    assert "MapInPandas" in plan(scorer="python")

    def no_jar(_spark):
        raise jvm_scoring.JvmScorerError("cannot register the JVM scorer: build ntm-scorer.jar with `make jars`")

    monkeypatch.setattr(jvm_scoring, "register_jvm_scorer", no_jar)
    with caplog.at_level(logging.WARNING, logger="ntm_spark.spark.stream_query"):
        assert "MapInPandas" in plan(scorer="auto")
    assert "stream.scorer=auto: the JVM scorer cannot run" in caplog.text and "make jars" in caplog.text
    with pytest.raises(jvm_scoring.JvmScorerError, match="make jars"):
        plan(scorer="jvm")
    with pytest.raises(jvm_scoring.JvmScorerError, match="make jars"):
        plan(scorer="auto", trigger="real_time")
