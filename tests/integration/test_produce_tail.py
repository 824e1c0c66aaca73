"""``ntm produce`` | ``ntm stream`` | ``ntm tail`` on the real broker and real Spark: every document accounted for.

The inputs are the three formats ``ntm produce`` reads (JSON lines, CSV, a folder of text files),
plus lines it must skip, plus malformed messages sent with kcat (a client we did not write), which
the stream dead-letters. kcat also reads back what ``ntm produce`` sent.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from jobs import produce, stream_score, tail
from ntm_spark.tools.services import create_topics

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KCAT = "/usr/bin/kcat"
N_JSONL, N_CSV, N_TEXT = 300, 100, 100
#: (key, raw value, the dead letter's error code): malformed messages only kcat can send.
MALFORMED = [
    *[(f"bad-nj-{i}", f"{{not json {i}", "not_json") for i in range(4)],
    *[(f"bad-mt-{i}", json.dumps({"id": f"bad-mt-{i}", "body": "no text"}), "missing_text") for i in range(3)],
    *[(f"bad-tns-{i}", json.dumps({"id": f"bad-tns-{i}", "text": [i]}), "text_not_string") for i in range(3)],
]


def kcat_produce(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    lines = "".join(f"{k}\t{v}\n" for k, v in messages)
    subprocess.run([KCAT, "-b", bootstrap, "-P", "-t", topic, "-K", "\t"], input=lines.encode(), check=True, timeout=60)


def kcat_consume(bootstrap: str, topic: str) -> list[dict]:
    out = subprocess.run([KCAT, "-b", bootstrap, "-C", "-t", topic, "-J", "-e", "-q"], capture_output=True, check=True, timeout=60)
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]


def write_inputs(root: Path, docs: list[tuple[str, str]]) -> dict[str, Path]:
    """The documents split over the three formats; the JSON lines also hold 3 lines ``ntm produce`` must skip."""
    jsonl, table, folder = docs[:N_JSONL], docs[N_JSONL : N_JSONL + N_CSV], docs[N_JSONL + N_CSV :]
    lines = [json.dumps({"id": d, "text": t, "group": d.split("/")[1]}) for d, t in jsonl]
    lines[10:10] = ["{this line is not json", "[1, 2, 3]", json.dumps({"id": "no-text", "body": "x"})]
    (root / "docs.jsonl").write_text("\n".join(lines) + "\n")
    with open(root / "docs.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        writer.writerows(table)
    for doc_id, text in folder:
        path = root / "texts" / doc_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"jsonl": root / "docs.jsonl", "csv": root / "docs.csv", "text": root / "texts"}


def run_tail(capsys, *args: str) -> tuple[int, list[str], str]:
    capsys.readouterr()
    rc = tail.main(list(args))
    out = capsys.readouterr()
    return rc, [line for line in out.out.splitlines() if line], out.err


def test_produce_stream_tail_round_trip(spark, kafka_bootstrap, stream_model_folder, newsgroups_test_docs, tmp_path, capsys):
    from ntm_spark.core.contract import read_topic_word, read_vocabulary, top_words

    run = uuid.uuid4().hex[:8]
    in_topic, out_topic = f"pt-in-{run}", f"pt-out-{run}"
    dlq = out_topic + "-dlq"
    create_topics(kafka_bootstrap, in_topic, partitions=1)  # one scoring task: less start-up on 2 cores
    create_topics(kafka_bootstrap, out_topic, dlq)
    docs = newsgroups_test_docs[300 : 300 + N_JSONL + N_CSV + N_TEXT]
    texts = dict(docs)
    assert len(texts) == 500
    paths = write_inputs(tmp_path, docs)
    conn = ["--bootstrap-servers", kafka_bootstrap, "--set", f"model_uri={json.dumps(str(stream_model_folder))}"]

    # 1. ntm produce: three formats; the 3 bad JSON lines are reported with file and line, skipped (exit 1).
    start = time.monotonic()
    capsys.readouterr()
    assert produce.main([str(paths["jsonl"]), "--topic", in_topic, *conn]) == 1
    err = capsys.readouterr().err
    assert f"{paths['jsonl']}:11: not valid JSON" in err and f"{paths['jsonl']}:12: JSON but not an object" in err
    assert f"{paths['jsonl']}:13: no 'text' field" in err and f"sent {N_JSONL} documents" in err and "skipped 3" in err
    assert produce.main([str(paths["csv"]), "--topic", in_topic, "--no-progress", *conn]) == 0
    assert produce.main([str(paths["text"]), "--topic", in_topic, *conn]) == 0
    assert f"sent {N_TEXT} documents" in capsys.readouterr().err
    produced_s = time.monotonic() - start

    # 2. What a client we did not write reads back: key = id, value = the stream's input shape, the text intact.
    seen = kcat_consume(kafka_bootstrap, in_topic)
    assert len(seen) == 500
    for msg in seen:
        value = json.loads(msg["payload"])
        assert msg["key"] == value["id"] and value["text"] == texts[value["id"]], msg["key"]
        assert set(value) == ({"id", "text", "group"} if msg["key"] in dict(docs[:N_JSONL]) else {"id", "text"})
    assert {m["key"] for m in seen} == set(texts)

    # 3. Malformed messages from kcat, then the real stream drains the topic.
    kcat_produce(kafka_bootstrap, in_topic, [(k, v) for k, v, _ in MALFORMED])
    sets = {"input_topics": in_topic, "output_topic": out_topic, "dead_letter_topic": dlq, "starting_offsets": "earliest",
            "checkpoint_location": str(tmp_path / "ckpt"), "model_uri": str(stream_model_folder),
            "status_file": str(tmp_path / "status.json")}  # fmt: skip
    start = time.monotonic()
    assert stream_score.main(["--trigger", "available_now", "--bootstrap-servers", kafka_bootstrap,
                              *[a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]]) == 0  # fmt: skip
    stream_s = time.monotonic() - start

    # 4. ntm tail: every scored id once per record, with the model folder's words and version.
    rc, scored, err = run_tail(capsys, "--topic", out_topic, *conn)
    assert rc == 0 and f"printed {len(scored)} records" in err, err
    assert "no topic words" not in err
    by_id = {}
    for line in scored:
        doc_id, model, topics_part = line.split("  ", 2)
        by_id.setdefault(doc_id, line)
        assert model.startswith("ntm@")
    words = top_words(read_topic_word(stream_model_folder), read_vocabulary(stream_model_folder).words, 5)
    first = next(iter(by_id.values())).split("  ", 2)[2].split(" | ")[0]  # "#3 0.41 w1 w2 w3 w4 w5"
    topic, _, *shown = first.split(" ")
    assert shown == words[int(topic[1:])]

    rc, dead, err = run_tail(capsys, "--topic", out_topic, "--dead-letters", "--dead-letter-topic", dlq, *conn)
    assert rc == 0
    dead_ids, codes = {}, {}
    for line in dead:
        doc_id, rest = line.split("  ", 1)
        code = rest.split(":", 1)[0]
        dead_ids[doc_id] = code
        codes[code] = codes.get(code, 0) + 1
    for key, _, code in MALFORMED:
        if code == "not_json":  # no id in the value: the dead letter is found by its key
            assert sum(f"key: {key!r}" in line and "not_json: " in line for line in dead) == 1, key
        else:
            assert dead_ids[key] == code
    doc_dead = {d: c for d, c in dead_ids.items() if d in texts}
    assert set(doc_dead.values()) <= {"empty_after_normalization", "empty_text", "binary"}
    # Every one of the 500 documents is scored or dead-lettered, none both, and nothing else came out.
    assert set(by_id) | set(doc_dead) == set(texts) and not set(by_id) & set(doc_dead)
    assert codes.get("not_json") == 4 and codes.get("missing_text") == 3 and codes.get("text_not_string") == 3
    assert len(dead) == len(doc_dead) + len(MALFORMED)
    with capsys.disabled():
        print(f"\nproduced 500 documents in {produced_s:.1f}s; the stream drained 510 messages in {stream_s:.1f}s; tail: "
              f"{len(by_id)} scored, {len(doc_dead)} documents and {len(MALFORMED)} malformed messages dead-lettered")  # fmt: skip

    # --max and --json
    rc, lines, _ = run_tail(capsys, "--topic", out_topic, "--max", "3", "--json", *conn)
    assert rc == 0 and len(lines) == 3 and all(json.loads(line)["id"] in by_id for line in lines)


def test_tail_drift_topic_missing_then_follow(kafka_bootstrap, tmp_path, capsys):
    out_topic = f"pt-drift-{uuid.uuid4().hex[:8]}"
    conn = ["--bootstrap-servers", kafka_bootstrap]
    rc, lines, err = run_tail(capsys, "--topic", out_topic, "--drift", *conn)
    assert rc == 1 and not lines and f"['{out_topic}-drift'] do not exist" in err and "drift monitoring" in err

    create_topics(kafka_bootstrap, out_topic + "-drift", partitions=1)
    windows = [{"window_start": f"2026-01-01T00:0{i}:00Z", "js_distance": 0.1 * i, "alert": False} for i in range(2)]
    kcat_produce(kafka_bootstrap, out_topic + "-drift", [("w", json.dumps(w)) for w in windows])
    rc, lines, _ = run_tail(capsys, "--topic", out_topic, "--drift", *conn)
    assert rc == 0 and [json.loads(line) for line in lines] == windows

    # --follow waits for more: two records are there, two more come while it runs; then Ctrl-C.
    cmd = [sys.executable, "-m", "jobs.cli", "tail", "--topic", out_topic, "--drift", "--follow", "--from-beginning", *conn]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # SIGINT at its default in the child, even when the test runner was started with it ignored (a background job).
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        got = [proc.stdout.readline() for _ in range(2)]
        more = [{"window_start": f"2026-01-01T00:0{i}:00Z", "js_distance": 0.5, "alert": True} for i in (2, 3)]
        kcat_produce(kafka_bootstrap, out_topic + "-drift", [("w", json.dumps(w)) for w in more])
        got += [proc.stdout.readline() for _ in range(2)]
        assert [json.loads(line) for line in got] == windows + more
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "printed 4 records" in err and "Traceback" not in err, err


def test_produce_reports_a_document_the_broker_refuses_and_sends_the_rest(kafka_bootstrap, tmp_path, capsys, monkeypatch):
    import io

    topic = f"pt-big-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, topic, partitions=1)
    lines = [json.dumps({"id": "small", "text": "car engine"}), json.dumps({"id": "huge", "text": "x" * 1_100_000})]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(("\n".join(lines) + "\n").encode())))
    assert produce.main(["-", "--topic", topic, "--bootstrap-servers", kafka_bootstrap]) == 1
    err = capsys.readouterr().err
    assert "stdin:2: id 'huge' (1100023 bytes) was not sent: MessageSizeTooLargeError: The message is" in err, err
    assert "max_request_size" in err and "sent 1 documents" in err and "skipped 1" in err
    assert [m["key"] for m in kcat_consume(kafka_bootstrap, topic)] == ["small"]
