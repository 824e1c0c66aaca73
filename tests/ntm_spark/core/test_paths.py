"""NTM_HOME owns every default path: the one rule for `.ntm/` values, and the fallback to `make`'s jars."""

import dataclasses

import pytest

from ntm_spark.core import paths
from ntm_spark.core.config import STAGES, load_config
from ntm_spark.core.paths import jars_dir, resolve_state_path, state_dir


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """NTM_HOME in a temporary folder, and the working directory another one."""
    monkeypatch.setenv("NTM_HOME", str(tmp_path / "home"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path / "home"


def test_state_prefix_is_rewritten_to_ntm_home(home):
    assert resolve_state_path(".ntm/data/x") == str(home / "data" / "x")
    assert resolve_state_path(".ntm") == str(home)
    assert resolve_state_path("sqlite:///.ntm/mlflow.db") == f"sqlite:///{home / 'mlflow.db'}"
    # Idempotent, and nothing else is touched.
    once = resolve_state_path(".ntm/data/x")
    assert resolve_state_path(once) == once
    for other in ("data/x", "./.ntm/x", "/abs/.ntm/x", ".ntmx/y", "hdfs://nn/.ntm/x", "models:/m@champion", "", None):
        assert resolve_state_path(other) == other


def test_without_ntm_home_the_state_folder_is_the_repo_one(monkeypatch):
    monkeypatch.delenv("NTM_HOME", raising=False)
    assert state_dir() == paths.PROJECT_ROOT / ".ntm"
    assert resolve_state_path(".ntm/backfill") == str(paths.PROJECT_ROOT / ".ntm" / "backfill")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_no_stage_default_is_relative_to_the_working_directory(home, stage):
    cfg = load_config(stage)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, str):
            assert ".ntm" not in value or value.startswith((str(home), f"sqlite:///{home}")), (f.name, value)


def test_every_layer_follows_the_rule(home, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("output_path: .ntm/from-file\ncache_path: .ntm/cache2\n")
    cfg = load_config("preprocess", config_file=str(extra), overrides=["input_path=.ntm/in"])
    assert cfg.output_path == str(home / "from-file") and cfg.cache_path == str(home / "cache2")
    assert cfg.input_path == str(home / "in")
    assert load_config("train", overrides=["output_dir=models/relative"]).output_dir == "models/relative"
    assert load_config("mlflow", overrides=["tracking_uri=sqlite:///.ntm/other.db"]).tracking_uri == (
        f"sqlite:///{home / 'other.db'}"
    )


def test_stream_paths_resolve_under_ntm_home(home):
    """The stream's checkpoint and status file (the stream job itself is tested in tests/integration)."""
    cfg = load_config("stream")
    assert cfg.checkpoint_location == str(home / "checkpoints" / "stream")
    assert cfg.status_file == str(home / "stream" / "status.json")
    cfg = load_config("stream", overrides=["checkpoint_location=.ntm/checkpoints/other", "status_file=/abs/s.json"])
    assert (cfg.checkpoint_location, cfg.status_file) == (str(home / "checkpoints" / "other"), "/abs/s.json")


def test_job_flags_follow_the_rule(home):
    from jobs.preprocess import build_parser, resolve_config

    cfg = resolve_config(build_parser().parse_args(["--output", ".ntm/data/mine", "--input", "corpus/"]))
    assert cfg.output_path == str(home / "data" / "mine") and cfg.input_path == "corpus/"


def _fake_jars(folder):
    (folder / "spark").mkdir(parents=True)
    (folder / "kafka").mkdir()
    return folder


def test_fresh_ntm_home_uses_the_make_installed_jars(home, tmp_path, monkeypatch):
    monkeypatch.delenv("NTM_JARS_DIR", raising=False)
    installed = tmp_path / "repo" / ".ntm"
    monkeypatch.setattr(paths, "INSTALL_DIR", installed)
    assert jars_dir() == home / "jars"  # none anywhere: error messages name the state folder's
    _fake_jars(installed / "jars")
    assert jars_dir() == installed / "jars"
    _fake_jars(home / "jars")
    assert jars_dir() == home / "jars"  # its own jars win
    monkeypatch.setenv("NTM_JARS_DIR", str(tmp_path / "elsewhere"))
    assert jars_dir() == tmp_path / "elsewhere"


def test_missing_jars_name_the_one_command_that_installs_them(home, tmp_path, monkeypatch):
    from ntm_spark.tools.services import KafkaBroker, ServiceError

    monkeypatch.delenv("NTM_JARS_DIR", raising=False)
    monkeypatch.setattr(paths, "INSTALL_DIR", tmp_path / "repo" / ".ntm")
    with pytest.raises(ServiceError, match=rf"missing from {home / 'jars' / 'kafka'}: .*`make -C {paths.PROJECT_ROOT} jars`"):
        KafkaBroker(load_config("services"), workdir=tmp_path / "k").classpath()



def test_checkout_is_a_folder_with_setup_py_and_conf_base(tmp_path):
    assert paths._find_checkout(tmp_path) is None
    (tmp_path / "setup.py").write_text("")
    (tmp_path / "conf" / "base").mkdir(parents=True)
    assert paths._find_checkout(tmp_path) == tmp_path
    assert paths.CHECKOUT == paths.PROJECT_ROOT and (paths.CHECKOUT / "setup.py").is_file()


def test_outside_a_checkout_the_packaged_defaults_and_hints_are_used(monkeypatch):
    monkeypatch.setattr(paths, "CHECKOUT", None)
    monkeypatch.delenv("NTM_CONF_DIR", raising=False)
    assert paths.conf_dir() == (paths.PACKAGE_DIR / "conf").resolve()
    assert paths.install_hint("nltk-data") == "ntm data wordnet"
    assert "NTM_JARS_DIR" in paths.install_hint("jars")
    assert paths.git_commit() == "unknown"
