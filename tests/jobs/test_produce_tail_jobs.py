"""``ntm produce`` / ``ntm tail`` user errors: one line naming the problem and the fix, exit 2 (3: no broker), no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from jobs import produce, tail
from ntm_spark.tools.services import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("args", "content", "expected"),
    [
        (["in.parquet"], b"x", "cannot tell the format of"),
        (["in.csv"], b"id,body\n1,x\n", "no 'text' column"),
        (["missing.jsonl"], None, "does not exist"),
        (["in.jsonl", "--set", "no_such_key=1"], b"{}", "unknown config key 'stream.no_such_key'"),
        (["in.jsonl", "--set", 'kafka_options={"ssl.truststore.type": "JKS"}'], b"{}", "reads PEM files only"),
        (["in.jsonl", "--set", "input_topics=a,b"], b'{"text": "x"}', "pass --topic T"),
        (["in.jsonl", "--format", "xml"], b"{}", "invalid choice"),
    ],
)
def test_produce_usage_errors_exit_2_before_sending(tmp_path, capsys, monkeypatch, args, content, expected):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / args[0]).write_bytes(content)
    assert produce.main(["--bootstrap-servers", "127.0.0.1:1", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_tail_usage_errors_exit_2(capsys):
    assert tail.main(["--max", "0"]) == 2
    assert "--max 0 must be >= 1" in capsys.readouterr().err
    assert tail.main(["--set", "top_k=0"]) == 2
    assert "stream.top_k" in capsys.readouterr().err


def test_no_broker_exits_3_quickly_naming_the_address(tmp_path, capsys):
    port = free_port()
    (tmp_path / "in.jsonl").write_bytes(b'{"id": "a", "text": "x"}\n')
    sets = ["--bootstrap-servers", f"127.0.0.1:{port}", "--set", "broker_probe_timeout_s=1"]
    assert produce.main([str(tmp_path / "in.jsonl"), "--topic", "t", *sets]) == 3
    assert tail.main(sets) == 3
    err = capsys.readouterr().err
    assert err.count(f"cannot reach Kafka at 127.0.0.1:{port}") == 2 and "ntm services up" in err


def test_ntm_cli_lists_both_and_reports_without_a_traceback(tmp_path):
    cmd = [sys.executable, "-m", "jobs.cli"]
    usage = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "produce" in usage.stdout and "tail" in usage.stdout
    (tmp_path / "bad.csv").write_text("title,body\na,b\n")
    out = subprocess.run([*cmd, "produce", str(tmp_path / "bad.csv")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no 'text' column" in out.stderr and "--text-col" in out.stderr and "Traceback" not in out.stderr
