"""``ntm tail``'s lines: scored records with the model's words, dead letters, drift windows, junk never raised."""

import json

import pytest

from ntm_spark.tools.tail import DEAD_LETTERS, DRIFT, SCORED, TopicWords, format_record

SCORED_REC = {
    "id": "d1", "topic_weights": [0.1, 0.6, 0.3], "model_name": "ntm", "model_version": "7",
    "top_topics": [{"topic": 1, "weight": 0.6, "words": ["car", "engine"]}, {"topic": 2, "weight": 0.3, "words": []}],
}  # fmt: skip


def line(kind, rec, words=None, n_words=3, as_json=False):
    value = rec if isinstance(rec, (bytes, type(None))) else json.dumps(rec).encode()
    return format_record(kind, value, "t/0@5", words, n_words, as_json)


class FixedWords:
    def __init__(self, table):
        self.table = table

    def get(self, name, version):
        return self.table


def test_scored_line_has_id_version_topics_and_the_models_words():
    words = FixedWords([["a", "b", "c", "d"], ["car", "engine", "wheel", "drive"], ["god", "church", "bible", "faith"]])
    assert line(SCORED, SCORED_REC, words) == "d1  ntm v7  #1 0.60 car engine wheel | #2 0.30 god church bible"


def test_scored_line_falls_back_to_the_records_words_then_topic_ids():
    assert line(SCORED, SCORED_REC, FixedWords(None)) == "d1  ntm v7  #1 0.60 car engine | #2 0.30"
    folder_rec = {**SCORED_REC, "model_version": "3f2a9c0d1e2b"}
    assert line(SCORED, folder_rec).startswith("d1  ntm@3f2a9c0d1e2b  #1")


def test_dead_letter_line_has_the_code_reason_source_and_raw_value():
    rec = {"id": "b1", "error_code": "not_json", "error_message": "the message value is not valid JSON", "raw_value": "{x" * 100,
           "source_topic": "docs", "source_partition": 1, "source_offset": 17}  # fmt: skip
    out = line(DEAD_LETTERS, rec)
    assert out.startswith("b1  not_json: the message value is not valid JSON  [docs/1@17]  raw: '{x{x")
    assert out.endswith("...'") and len(out) < 200


def test_drift_and_json_print_the_record_and_junk_is_shown_not_raised():
    assert line(DRIFT, {"window": "w1", "js": 0.1}) == '{"window":"w1","js":0.1}'
    assert json.loads(line(SCORED, SCORED_REC, as_json=True)) == SCORED_REC
    assert line(SCORED, b"\xff\xfe not json") == "t/0@5  (not a JSON object) raw: '\xff\xfe not json'"
    assert line(DEAD_LETTERS, b"[1]").startswith("t/0@5  (not a JSON object)")
    assert line(SCORED, None) == "t/0@5  (no value: a tombstone)"
    assert line(SCORED, {"id": "x", "top_topics": "junk"}) == "x  None@None  (no top topics)"
    assert line(SCORED, {"id": "d1", "text": "an input message"}).startswith("d1  (not a scored record: no top_topics; fields ['id', 'text'])")
    assert "(not a dead letter" in line(DEAD_LETTERS, SCORED_REC)


def test_topic_words_from_the_streams_model_folder_else_one_reason(tmp_path):
    from conftest import TINY_VOCAB, make_model_folder

    from ntm_spark.core.contract import read_topic_word, top_words
    from ntm_spark.serving.model_loader import folder_version

    folder = make_model_folder(tmp_path / "ntm")
    reasons = []
    words = TopicWords(4, str(folder), None, reasons.append)
    expected = top_words(read_topic_word(folder), TINY_VOCAB, 4)
    assert words.get("ntm", folder_version(folder)) == expected
    assert words.get("ntm", "0123456789ab") is None and words.get("ntm", "0123456789ab") is None
    assert words.get("other", None) is None
    assert len(reasons) == 2 and "not that model folder" in reasons[0] and "--set model_uri" in reasons[0]


@pytest.mark.mlflow
def test_topic_words_of_a_registered_version(mlflow_tracking, logged_runs):
    from ntm_spark.core.config import MlflowConfig
    from ntm_spark.mlops.registry import register_run_model

    cfg = MlflowConfig(tracking_uri=mlflow_tracking, experiment="ntm-tests", registered_model_name="ntm-tail-words")
    reg = register_run_model(logged_runs["base"], cfg, gate=False)
    reasons = []
    words = TopicWords(3, "models:/ntm-tail-words@champion", mlflow_tracking, reasons.append)
    got = words.get("ntm-tail-words", reg.version)
    assert got is not None and len(got) == 4 and all(len(w) == 3 for w in got), reasons
    assert words.get("ntm-tail-words", "99") is None and "no version '99'" in reasons[0]
