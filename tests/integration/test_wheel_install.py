"""The wheel stands alone: built, installed into a new venv outside the checkout, it runs `ntm --help` and `ntm preprocess`.

The new venv is made with ``--system-site-packages`` plus one ``.pth`` line naming this
interpreter's site-packages, so it reuses the installed dependencies (torch, pyspark...)
without downloading them; the editable install of the checkout is *not* active there (a
``.pth`` line adds a folder, it does not run that folder's ``.pth`` hooks), so the code under
test is the wheel's. The jars and WordNet are the checkout's ``make jars``/``make nltk-data``
copies, passed as ``NTM_JARS_DIR`` and ``NLTK_DATA``, as a user of the wheel would; the
default config is the copy of ``conf/base`` the wheel carries, and the state folder is
``$NTM_HOME``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from ntm_spark.core import paths

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

SOURCES = ("setup.py", "README.md", "MANIFEST.in", "conf/base", "ntm_spark", "lightning_module", "jobs")


def _build_wheel(out: Path) -> Path:
    """Build the wheel from a copy of the sources, so setuptools' build/ and egg-info stay out of the checkout."""
    src = out / "src"
    for name in SOURCES:
        origin = paths.CHECKOUT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif origin.is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(origin, src / name)
    dist = out / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("ntm_spark-*.whl")
    return wheel


def _venv(root: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True, timeout=300)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "_ntm_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.skipif(paths.CHECKOUT is None, reason="builds the wheel from a source checkout")
def test_wheel_installed_outside_the_checkout_runs_preprocess(tmp_path, newsgroups_sample):
    wheel = _build_wheel(tmp_path / "build")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("ntm_spark/conf/base/"))
    assert shipped == sorted(p.name for p in (paths.CHECKOUT / "conf" / "base").glob("*.yaml"))

    python = _venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    ntm = python.parent / "ntm"
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NTM_CONF_DIR", "NTM_HOME", "VIRTUAL_ENV")}
    env.update(
        NTM_HOME=str(home),
        NTM_JARS_DIR=str(paths.jars_dir()),
        NLTK_DATA=os.pathsep.join(str(d) for d in paths.nltk_data_search_dirs()),
        SPARK_LOCAL_IP="127.0.0.1",
    )

    where = subprocess.run(
        [str(python), "-c", "from ntm_spark.core import paths; print(paths.__file__, paths.CHECKOUT, paths.conf_dir())"],
        cwd=cwd, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(tmp_path / "venv")) and where[1] == "None"
    assert where[2].startswith(str(tmp_path / "venv")) and where[2].endswith("ntm_spark/conf")

    helped = subprocess.run([str(ntm), "--help"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "preprocess" in helped.stdout

    small = ["--set", "vocab_size=300", "--set", "threshold=5", "--set", "num_train_shards=2"]
    run = subprocess.run(
        [str(ntm), "preprocess", "--input", str(newsgroups_sample), "--master", "local[1]", *small],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    data = home / "data" / "20newsgroups"  # the packaged default output_path, under NTM_HOME
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest and (data / "vocab.txt").read_text().count("\n") > 0
    assert list((data / "train").rglob("*.parquet"))
    assert not any(cwd.iterdir()), sorted(cwd.iterdir())
