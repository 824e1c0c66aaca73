"""``ntm registry`` CLI: output, exit codes and clear errors (real SQLite store)."""

from __future__ import annotations

import pytest

from jobs.registry import main

pytestmark = [pytest.mark.mlflow]


def test_cli_register_list_show_promote_rollback(mlflow_tracking, logged_runs, capsys):
    args = ["--tracking-uri", mlflow_tracking, "--name", "ntm-cli"]
    assert main(["register", logged_runs["base"], *args]) == 0
    assert "champion" in capsys.readouterr().out
    assert main(["register", logged_runs["worse"], *args]) == 0
    out = capsys.readouterr().out
    assert "stays" not in out and "challenger (npmi" in out
    assert main(["list", *args]) == 0
    out = capsys.readouterr().out
    assert "champion" in out and "challenger" in out and "0.1000" in out
    assert main(["show", *args]) == 0
    out = capsys.readouterr().out
    assert "lineage:" in out and "| topic | top words |" in out
    assert main(["promote", "2", *args]) == 0
    assert "stays challenger" in capsys.readouterr().out
    assert main(["promote", "2", "--force", "--reason", "manual check", *args]) == 0
    assert "is now champion" in capsys.readouterr().out
    assert main(["rollback", *args]) == 0
    assert "champion is version 1 again" in capsys.readouterr().out


def test_cli_errors_are_clear(mlflow_tracking, logged_runs, capsys):
    assert main(["list", "--tracking-uri", mlflow_tracking, "--name", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no registered model named 'nope'" in err and "Traceback" not in err
    main(["register", logged_runs["base"], "--tracking-uri", mlflow_tracking, "--name", "ntm-cli-err"])
    capsys.readouterr()
    assert main(["show", "@nope", "--tracking-uri", mlflow_tracking, "--name", "ntm-cli-err"]) == 1
    assert "no alias 'nope'" in capsys.readouterr().err
    assert main(["promote", "1", "--force", "--tracking-uri", mlflow_tracking, "--name", "ntm-cli-err"]) == 1
    assert "--force needs --reason" in capsys.readouterr().err
    from ntm_spark.tools.services import free_port

    assert main(["list", "--tracking-uri", f"http://127.0.0.1:{free_port()}"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach the MLflow tracking server" in err and "ntm services up --mlflow" in err
