"""`ntm explore --drift-topic`: the drift page read from a real broker's drift topic.

The records are the stream monitor's own (``make_drift_env``), sent by kcat (a client we did not
write) with a message that is not JSON beside them; the report reads the topic once with the
connection settings ``ntm tail`` uses.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest

from jobs.explore import main
from ntm_spark.tools.services import create_topics
from tests.ntm_spark.report.test_drift_page import THRESHOLDS, make_drift_env

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

KCAT = "/usr/bin/kcat"


@pytest.fixture(scope="module")
def drift_env(tmp_path_factory):
    return make_drift_env(tmp_path_factory.mktemp("drift_topic"))


def kcat_produce(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    lines = "".join(f"{k}\t{v}\n" for k, v in messages)
    subprocess.run([KCAT, "-b", bootstrap, "-P", "-t", topic, "-K", "\t"], input=lines.encode(), check=True, timeout=60)


def test_drift_page_from_the_topic(kafka_bootstrap, drift_env, tmp_path, capsys):
    data, model_dir, _, records = drift_env
    out_topic = f"mix-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, out_topic + "-drift", f"{out_topic}-empty", partitions=1)
    messages = [(r["window_start"], json.dumps(r)) for r in records]
    messages.insert(2, ("junk", "{not json"))
    kcat_produce(kafka_bootstrap, out_topic + "-drift", messages)
    base = ["--model", str(model_dir), "--data", str(data), "--sample", "3", "--no-log", "--bootstrap-servers", kafka_bootstrap]

    # --drift-topic with no value: the stream's <output_topic>-drift.
    out = tmp_path / "r"
    args = [*base, "--out", str(out), "--drift-topic", "--stream-set", f"output_topic={out_topic}", *THRESHOLDS]
    assert main(args) == 0, capsys.readouterr().err
    info = json.loads((out / "report.json").read_text())
    assert info["drift"]["windows"] == len(records) and info["drift"]["alerts"] == 2
    assert info["drift"]["skipped"] == 1 and info["drift"]["source"] == f"topic {out_topic}-drift at {kafka_bootstrap}"
    page = (out / "index.html").read_text()
    listed = re.findall(r'<tr class="alert" data-window="([^"]+)"', page)
    assert len(listed) == 2 and "1 record(s) of topic" in page and "not a JSON object" in page

    # An empty topic: a page that says there are no windows yet.
    out = tmp_path / "empty"
    assert main([*base, "--out", str(out), "--drift-topic", f"{out_topic}-empty"]) == 0
    assert f"No drift windows yet in topic {out_topic}-empty" in (out / "index.html").read_text()

    # A topic that does not exist: the error names it and the fix; nothing is scored.
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "none"), "--drift-topic", "no-such-drift"]) == 2
    err = capsys.readouterr().err
    assert "'no-such-drift'" in err and "do not exist" in err and "--drift <parquet_path>-drift" in err
    assert not (tmp_path / "none").exists()


def test_no_broker_is_exit_3_naming_the_servers(drift_env, tmp_path, capsys):
    from ntm_spark.tools.services import free_port

    data, model_dir, _, _ = drift_env
    servers = f"127.0.0.1:{free_port()}"
    args = ["--model", str(model_dir), "--data", str(data), "--no-log", "--out", str(tmp_path / "r"),
            "--drift-topic", "x-drift", "--bootstrap-servers", servers, "--stream-set", "broker_probe_timeout_s=2"]  # fmt: skip
    assert main(args) == 3
    err = capsys.readouterr().err
    assert servers in err and "ntm services up" in err
