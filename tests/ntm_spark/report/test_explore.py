"""`ntm explore`: the report folder, its images, the HTML page in headless Chromium, and MLflow logging."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jobs.explore import main
from ntm_spark.core.contract import ContractError
from ntm_spark.report.explore import (
    classical_mds,
    iter_split_batches,
    js_distances,
    load_model,
    split_files,
)

K, V, N_TEST, TOP_N = 6, 120, 120, 10
PNGS = ["wordclouds.png", "sample_assignments.png", "topic_prevalence.png", "topic_map.png", "topic_label_heatmap.png"]
FILES = PNGS + [
    "index.html",
    "report.json",
    "top_words.csv",
    "top_words.md",
    "sample_documents.csv",
    "topic_prevalence.csv",
    "topic_map.csv",
    "topic_label.csv",
]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _words(n: int) -> list[str]:
    """Readable fake words (the synthetic corpus's own are w0000, w0001, ...)."""
    cons, vows = "bdfgklmnprstvz", "aeiou"
    rng = np.random.default_rng(7)
    out: list[str] = []
    while len(out) < n:
        w = "".join(cons[rng.integers(len(cons))] + vows[rng.integers(len(vows))] for _ in range(rng.integers(2, 4)))
        if w not in out:
            out.append(w)
    return out


@pytest.fixture(scope="module")
def explore_env(tmp_path_factory):
    """A small labelled synthetic corpus and a briefly trained model folder on its vocabulary."""
    import torch

    from lightning_module.model import NTMModel
    from lightning_module.model_folder import save_model_folder
    from lightning_module.synthetic import write_synthetic_corpus

    root = tmp_path_factory.mktemp("explore")
    data = write_synthetic_corpus(root / "data", n_docs=(300, 0, N_TEST), vocab_size=V, num_topics=K, doc_len=60, row_group_size=32)
    words = _words(V)
    (data / "vocab.txt").write_text("".join(f"{w}\n" for w in words))
    import pyarrow.parquet as pq

    table = pq.read_table(data / "train")
    x = np.zeros((table.num_rows, V), dtype=np.float32)
    for i, (idx, val) in enumerate(zip(table.column("indices").to_pylist(), table.column("values").to_pylist())):
        x[i, idx] = val
    torch.manual_seed(0)
    model = NTMModel(V, K)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xt = torch.from_numpy(x)
    for _ in range(150):
        opt.zero_grad()
        model.loss(xt).loss.backward()
        opt.step()
    model_dir = save_model_folder(root / "model", model, words, manifest_path=data / "manifest.json")
    return data, model_dir


@pytest.fixture(scope="module")
def report(explore_env, tmp_path_factory):
    data, model_dir = explore_env
    out = tmp_path_factory.mktemp("report") / "report"
    rc = main(["--model", str(model_dir), "--data", str(data), "--out", str(out), "--sample", "5", "--no-log"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """One real SQLite tracking store (and local artifact folder) shared by the MLflow tests."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("explore-test", artifact_location=(root / "artifacts").as_uri())
    return uri, client, exp


def test_explore_writes_every_file(report):
    missing = [f for f in FILES if not (report / f).is_file() or (report / f).stat().st_size == 0]
    assert not missing
    info = json.loads((report / "report.json").read_text())
    assert info["n_docs"] == N_TEST and info["num_topics"] == K and info["split"] == "test"
    assert -1 <= info["npmi"] <= 1 and 0 < info["tu"] <= 1


def test_pngs_are_valid_and_not_blank(report):
    import matplotlib.image as mpimg

    for name in PNGS:
        raw = (report / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n", name
        img = mpimg.imread(report / name)  # (H, W, C) floats in [0, 1]
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, (name, img.shape)
        gray = img[..., :3].mean(axis=2)
        assert gray.std() > 0.05, f"{name} looks blank (pixel std {gray.std():.4f})"
        assert (gray < 0.5).mean() > 0.002, f"{name} has almost no dark pixels"


def test_tables_hold_top_words_with_weights(report, explore_env):
    import csv

    words = set((explore_env[0] / "vocab.txt").read_text().split())
    rows = list(csv.DictReader(open(report / "top_words.csv")))
    assert len(rows) == K * TOP_N
    for k in range(K):
        ws = [float(r["weight"]) for r in rows if int(r["topic"]) == k]
        assert ws == sorted(ws, reverse=True) and all(0 < w <= 1 for w in ws)
    assert {r["word"] for r in rows} <= words
    md = (report / "top_words.md").read_text()
    assert md.count("\n| ") == K + 1  # header + one row per topic
    prevalence = [float(r["prevalence"]) for r in csv.DictReader(open(report / "topic_prevalence.csv"))]
    assert len(prevalence) == K and abs(sum(prevalence) - 1) < 1e-3
    labels = list(csv.DictReader(open(report / "topic_label.csv")))
    assert sum(int(r["n_docs"]) for r in labels) == N_TEST
    samples = list(csv.DictReader(open(report / "sample_documents.csv")))
    assert len(samples) == 5 and len({r["label"] for r in samples}) == 5  # one per label first


def test_html_is_self_contained(report):
    page = (report / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]{0,40})', page)
    assert len(srcs) == len(PNGS) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', page), "the page must not fetch anything"
    assert "<link rel=\"stylesheet\"" not in page and "@import" not in page and "url(" not in page


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_html_renders_in_headless_chromium(report, tmp_path):
    import matplotlib.image as mpimg

    url = (report / "index.html").resolve().as_uri()
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", url, tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:500]
    assert 'data-images-ok="true"' in body.group(0), body.group(0)
    assert f'data-images-count="{len(PNGS)}"' in body.group(0)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console

    shot = tmp_path / "report.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1400,3000", url, tmp_path=tmp_path)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    assert not [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    img = mpimg.imread(shot)
    assert img.shape[:2] == (3000, 1400)
    assert img[..., :3].mean(axis=2).std() > 0.05
    shutil.copy(shot, report / "screenshot.png")  # kept with the report for a look by hand


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_check_catches_a_broken_image(tmp_path):
    from ntm_spark.report.page import read_template

    script = read_template("report.js")
    page = tmp_path / "broken.html"
    page.write_text(f'<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><img src="data:image/png;base64,AAAA"><script>{script}</script></body></html>')
    dom = _chromium("--virtual-time-budget=3000", "--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert 'data-images-ok="false"' in dom.stdout


def test_missing_data_dir_names_the_path(explore_env, tmp_path, capsys):
    _, model_dir = explore_env
    missing = tmp_path / "no-such-data"
    assert main(["--model", str(model_dir), "--data", str(missing), "--out", str(tmp_path / "r"), "--no-log"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "ntm preprocess" in err


def test_missing_split_lists_the_present_ones(explore_env, tmp_path, capsys):
    data, model_dir = explore_env
    assert main(["--model", str(model_dir), "--data", str(data), "--split", "validation", "--out", str(tmp_path / "r")]) == 2
    assert "'test'" in capsys.readouterr().err


def test_missing_model_is_a_clear_error(explore_env, tmp_path, capsys):
    data, _ = explore_env
    assert main(["--model", str(tmp_path / "nope"), "--data", str(data), "--no-log"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--model", "not-a-model", "--data", str(data), "--no-log"]) == 2
    assert "models:/<name>@champion" in capsys.readouterr().err
    assert main(["--data", str(data)]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_vocabulary_mismatch_is_refused(explore_env, tmp_path):
    data, model_dir = explore_env
    other = tmp_path / "data"
    shutil.copytree(data, other)
    (other / "vocab.txt").write_text("".join(f"x{i}\n" for i in range(V)))
    from ntm_spark.report.explore import write_report

    with pytest.raises(ContractError, match="is not the model's"):
        write_report(load_model(str(model_dir)), other, tmp_path / "r")


def test_iter_split_batches_caps_and_streams(explore_env):
    files = split_files(explore_env[0], "test")
    full = sum(b.num_rows for b in iter_split_batches(files, batch_size=16))
    assert full == N_TEST
    batches = list(iter_split_batches(files, max_docs=50, batch_size=16, seed=3))
    assert sum(b.num_rows for b in batches) == 50 and max(b.num_rows for b in batches) <= 16


def test_js_distances_and_mds():
    tw = np.array([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25]])
    d = js_distances(tw)
    assert d.shape == (4, 4) and np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    assert d[0, 1] == pytest.approx(0) and d[0, 2] == pytest.approx(1)
    pts = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 1.0]])
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    xy = classical_mds(dist)
    assert np.allclose(np.linalg.norm(xy[:, None] - xy[None], axis=2), dist, atol=1e-8)


@pytest.mark.mlflow
def test_log_to_run_puts_the_report_in_the_run(explore_env, mlflow_store, tmp_path):
    data, model_dir = explore_env
    uri, client, exp = mlflow_store
    run_id = client.create_run(exp).info.run_id
    client.set_terminated(run_id)
    args = ["--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "r"), "--sample", "3", "--max-docs", "64"]
    assert main(args + ["--log-to-run", run_id, "--tracking-uri", uri]) == 0
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "report")}
    assert set(FILES) <= logged
    info = json.loads((tmp_path / "r" / "report.json").read_text())
    assert info["n_docs"] == 64  # a sample of whole row groups, cut at the cap
    assert main(args + ["--log-to-run", "0" * 32, "--tracking-uri", uri]) == 2


@pytest.mark.mlflow
def test_registered_model_and_run_id_get_the_report_in_their_run(explore_env, mlflow_store, tmp_path):
    import mlflow

    from ntm_spark.serving.pyfunc_model import log_pyfunc_model

    data, model_dir = explore_env
    uri, client, exp = mlflow_store
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=exp) as run:
            log_pyfunc_model(model_dir, registered_model_name="ntm-explore-test")
    finally:
        mlflow.set_tracking_uri(previous)
    client.set_registered_model_alias("ntm-explore-test", "champion", "1")
    common = ["--data", str(data), "--sample", "3", "--max-docs", "64", "--tracking-uri", uri]

    assert main(["--model", "models:/ntm-explore-test@champion", "--out", str(tmp_path / "r1"), *common]) == 0
    info = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert info["run_id"] == run.info.run_id and info["model_name"] == "ntm-explore-test-v1"
    assert set(FILES) <= {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "report")}

    assert main(["--model", run.info.run_id, "--out", str(tmp_path / "r2"), "--no-log", *common]) == 0
    assert (tmp_path / "r2" / "index.html").is_file()
    assert main(["--model", "models:/ntm-explore-test@no-such-alias", "--out", str(tmp_path / "r3"), *common]) == 2
