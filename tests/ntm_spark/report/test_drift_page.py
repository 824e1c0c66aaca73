"""`ntm explore --drift`: the drift page from the stream's own drift records (its monitor and Parquet sink, no Spark)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.explore import main
from ntm_spark.core.drift import DriftBaseline, DriftThresholds, TopicSums
from ntm_spark.report.drift import drift_history, read_drift_folder
from ntm_spark.spark.drift_monitor import DriftMonitor, drift_parquet_folder, parquet_sink
from tests.ntm_spark.spark.test_drift_monitor import metrics

K, V = 4, 60
WINDOW_S = 60.0
T0 = 1_796_644_800.0  # 2026-12-07 12:00:00 UTC, a window boundary
THRESHOLDS = ["--stream-set", "drift_js_distance=0.2", "--stream-set", "drift_min_documents=5"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _metrics(weights, tokens=100, oov=10, empty=0, version="3"):
    """A micro-batch's observed metrics with drift sums, as the stream's query reports them."""
    return metrics(weights, tokens=tokens, oov=oov, empty=empty, version=version)


def _even(n, rng):
    """Documents spread over the topics like the training split (Dirichlet around uniform)."""
    return rng.dirichlet([8.0] * K, size=n)


def _skewed(n, rng):
    """Documents almost all about topic 2: drift."""
    return rng.dirichlet([1.0, 1.0, 30.0, 1.0], size=n)


def make_drift_env(root: Path) -> tuple[Path, Path, str, list[dict]]:
    """A model folder with its drift baseline, a corpus on its vocabulary, and the stream monitor's Parquet records.

    Returns:
        ``(data folder, model folder, drift Parquet folder, the records the monitor wrote, oldest first)``.
    """
    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from lightning_module.synthetic import write_synthetic_corpus

    data = write_synthetic_corpus(root / "data", n_docs=(40, 0, 30), vocab_size=V, num_topics=K, doc_len=30, row_group_size=16)
    words = (data / "vocab.txt").read_text().split()
    rng = np.random.default_rng(0)
    baseline = DriftBaseline.from_sums(TopicSums.from_weights(_even(400, rng)), tokens=10_000, in_vocab_tokens=9_000)
    torch.manual_seed(0)
    model_dir = save_model_folder(
        root / "model", NTMModel(V, K), words, manifest_path=data / "manifest.json", drift_baseline=baseline
    )

    # The stream's monitor and Parquet sink: three windows like training, then two drifted ones
    # (topic 2 takes over and the OOV rate jumps), then a partial one when the stream stops.
    folder = drift_parquet_folder(str(root / "scored"))
    now = [T0]
    monitor = DriftMonitor(
        WINDOW_S, DriftThresholds(js_distance=0.2, min_documents=5), lambda: (baseline, "ntm", "3"),
        sinks=(parquet_sink(folder),), clock=lambda: now[0],
    )  # fmt: skip
    for i in range(3):
        monitor.add_batch(T0 + i * WINDOW_S + 1, _metrics(_even(30, rng), tokens=300, oov=31))
    for i in range(3, 5):
        monitor.add_batch(T0 + i * WINDOW_S + 1, _metrics(_skewed(30, rng), tokens=300, oov=150))
    monitor.add_batch(T0 + 5 * WINDOW_S + 1, _metrics(_even(3, rng), tokens=30, oov=3))
    now[0] = T0 + 5 * WINDOW_S + 10
    monitor.flush()
    return data, model_dir, folder, monitor.records


@pytest.fixture(scope="module")
def drift_env(tmp_path_factory):
    return make_drift_env(tmp_path_factory.mktemp("drift_page"))


@pytest.fixture(scope="module")
def drift_report(drift_env, tmp_path_factory):
    data, model_dir, folder, _ = drift_env
    out = tmp_path_factory.mktemp("drift_report") / "report"
    rc = main(["--model", str(model_dir), "--data", str(data), "--out", str(out), "--sample", "3", "--no-log", "--drift", folder, *THRESHOLDS])
    assert rc == 0
    return out


def test_the_monitor_wrote_alerts_to_draw(drift_env):
    records = drift_env[3]
    assert [r["alert"] for r in records] == [False, False, False, True, True, False]
    assert records[-1]["partial"]


def test_drift_page_has_the_topic_series_and_the_alert_windows(drift_report, drift_env):
    records = drift_env[3]
    page = (drift_report / "index.html").read_text()
    assert '<a href="#drift">' in page and '<section id="drift">' in page
    section = page[page.index('<section id="drift">') :]
    section = section[: section.index("</section>")]
    assert "alt=\"topic prevalence per drift window\"" in section and "alt=\"JS distance, OOV rate" in section
    # The alert table: exactly the alert windows, each with its reasons.
    listed = re.findall(r'<tr class="alert" data-window="([^"]+)"', section)
    alerts = [r for r in records if r["alert"]]
    assert sorted(listed) == sorted(r["window_start"].replace("Z", "+00:00").replace(".000", "") for r in alerts)
    for rec in alerts:
        for reason in rec["alert_reasons"]:
            assert reason.replace(">", "&gt;") in section
    assert "oov_rate" in section and "js_distance" in section  # both signals fired on the drifted windows
    assert "the model&#x27;s drift_baseline.json" in section
    assert "1 window(s) are partial" in section
    assert "JS distance &gt; 0.2" in section and "at least 5 scored documents" in section

    info = json.loads((drift_report / "report.json").read_text())
    assert info["drift"]["windows"] == len(records) and info["drift"]["alerts"] == 2 and info["drift"]["skipped"] == 0
    assert {"drift_prevalence.png", "drift_rates.png", "drift_windows.csv"} <= set(info["files"].values())


def test_drift_csv_holds_every_window_and_its_prevalence(drift_report, drift_env):
    records = drift_env[3]
    rows = list(csv.DictReader(open(drift_report / "drift_windows.csv")))
    assert len(rows) == len(records)
    for row, rec in zip(rows, records):
        assert int(row["alert"]) == rec["alert"] and int(row["scored"]) == rec["scored"]
        prev = [float(row[f"prevalence_{t}"]) for t in range(K)]
        assert prev == pytest.approx(rec["prevalence"], abs=1e-6)
        assert float(row["js_distance"]) == pytest.approx(rec["js_distance"], abs=1e-6)
    assert float(rows[3]["prevalence_2"]) > 0.6  # the drifted windows: topic 2 took over


def test_drift_pngs_are_valid_and_not_blank(drift_report):
    import matplotlib.image as mpimg

    for name in ("drift_prevalence.png", "drift_rates.png"):
        img = mpimg.imread(drift_report / name)  # (H, W, C) floats in [0, 1]
        assert img.shape[0] > 250 and img.shape[1] > 600, (name, img.shape)
        gray = img[..., :3].mean(axis=2)
        assert gray.std() > 0.05 and (gray < 0.5).mean() > 0.002, name
        red = (img[..., 0] > 0.8) & (img[..., 1] < 0.9) & (img[..., 2] < 0.9) & (img[..., 0] - img[..., 2] > 0.05)
        assert red.mean() > 0.001, f"{name}: no alert shading"


def test_topic_and_parquet_records_read_the_same(drift_env):
    """One reader: the topic's JSON objects and the Parquet rows give the same windows."""
    _, _, folder, records = drift_env
    from_topic = drift_history([json.loads(json.dumps(r)) for r in records], "topic t", DriftThresholds())
    rows, unreadable = read_drift_folder(folder)
    from_parquet = drift_history(rows, "folder f", DriftThresholds(), unreadable)
    assert not unreadable and from_parquet.skipped == 0
    assert [w.start for w in from_topic.windows] == [w.start for w in from_parquet.windows]
    for a, b in zip(from_topic.windows, from_parquet.windows):
        assert (a.alert, a.alert_reasons, a.scored, a.model_version) == (b.alert, b.alert_reasons, b.scored, b.model_version)
        assert a.prevalence == pytest.approx(b.prevalence) and a.oov_rate == pytest.approx(b.oov_rate)


def test_bad_records_are_skipped_and_counted_not_raised(drift_env, tmp_path):
    data, model_dir, folder, records = drift_env
    bad = tmp_path / "scored-drift"
    shutil.copytree(folder, bad)
    (bad / "window-1.parquet").write_bytes(b"not parquet at all")  # a torn file
    rows = [dict(r) for r in records[:2]]
    for r in rows:
        r.pop("prevalence")  # a writer that left a field out
    pq.write_table(pa.Table.from_pylist(rows), bad / "window-2.parquet")
    out = tmp_path / "r"
    assert main(["--model", str(model_dir), "--data", str(data), "--out", str(out), "--no-log", "--drift", str(bad)]) == 0
    info = json.loads((out / "report.json").read_text())
    assert info["drift"]["windows"] == len(records) and info["drift"]["skipped"] == 3
    page = (out / "index.html").read_text()
    assert "3 record(s) of folder" in page and "missing field(s) [&#x27;prevalence&#x27;]" in page

    history = drift_history([*records, {"window_start": "x"}, "junk", {**records[0], "scored": "many"}], "t", DriftThresholds())
    assert history.skipped == 3 and len(history.windows) == len(records) and history.replaced == 0
    again = drift_history([*records, records[1]], "t", DriftThresholds())
    assert again.replaced == 1 and len(again.windows) == len(records)


def test_bad_drift_folders_are_named_with_the_fix(drift_env, tmp_path, capsys):
    data, model_dir, folder, _ = drift_env
    base = ["--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "r"), "--no-log", "--drift"]

    missing = tmp_path / "nope-drift"
    assert main([*base, str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "<parquet_path>-drift" in err and "--drift-topic" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, str(empty)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "holds no drift records" in err and "<parquet_path>-drift" in err

    # The scored records' folder (parquet_path) instead of its -drift sibling: the error points at the sibling.
    scored = tmp_path / "scored"
    scored.mkdir()
    pq.write_table(pa.table({"id": ["a"], "top_topics": [[1, 2]]}), scored / "part-0.parquet")
    (tmp_path / "scored-drift").mkdir()
    shutil.copy(sorted(Path(folder).iterdir())[0], tmp_path / "scored-drift")
    assert main([*base, str(scored)]) == 2
    err = capsys.readouterr().err
    assert "holds no drift records" in err and "no window_start column" in err and f"did you mean {tmp_path / 'scored-drift'}" in err

    assert main([*base, folder, "--stream-set", "drift_js_distance=7"]) == 2
    assert "drift_js_distance" in capsys.readouterr().err


def test_no_windows_yet_gives_a_page_that_says_so(drift_env, tmp_path):
    from ntm_spark.report.explore import load_model, write_report

    data, model_dir, _, _ = drift_env
    history = drift_history([], "topic mix-drift at 127.0.0.1:9092", DriftThresholds())
    report = write_report(load_model(str(model_dir)), data, tmp_path / "r", sample_docs=3, drift=history)
    page = report.files["html"].read_text()
    assert "No drift windows yet in topic mix-drift at 127.0.0.1:9092" in page
    assert not (tmp_path / "r" / "drift_rates.png").exists()
    assert report.info["drift"]["windows"] == 0


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_drift_page_renders_in_headless_chromium(drift_report, tmp_path):
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'p'}",
        "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", (drift_report / "index.html").as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-images-ok="true"' in body, body
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line]


def test_any_record_from_the_topic_is_drawn_or_skipped_never_raised(drift_env, tmp_path):
    """Property: the topic carries bytes anyone can write; every record is kept or counted, and the kept ones draw."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ntm_spark.report.drift import DriftHistory, write_drift_files
    from ntm_spark.report.page import render_drift

    records = drift_env[3]
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )
    fields = sorted({key for rec in records for key in rec})
    edits = st.lists(st.tuples(st.sampled_from(fields), json_values | st.just(KeyError)), max_size=4)
    kept = []

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(records), edits, st.lists(json_values, max_size=3))
    def check(record, changes, junk):
        rec = dict(record)
        for key, value in changes:
            if value is KeyError:
                rec.pop(key, None)
            else:
                rec[key] = value
        history = drift_history([rec, *junk], "topic fuzz", DriftThresholds())
        assert history.skipped + len(history.windows) + history.replaced == 1 + len(junk)
        kept.extend(history.windows)

    check()
    assert kept, "some edited records must survive"
    # Everything kept draws: the figures, the CSV and the section (odd dates, K, missing figures and all).
    names = [f"T{t}: w" for t in range(K)]
    history = DriftHistory("topic fuzz", sorted(kept, key=lambda w: w.start), DriftThresholds())
    files = write_drift_files(history, None, names, tmp_path)
    assert all(p.stat().st_size > 0 for p in files.values())
    assert f"windows <b>{len(kept)}</b>" in render_drift(history, files, names)
