"""``ntm registry``: list, show, register, promote and roll back registered topic models.

Usage:
    ntm registry list [--name NAME] [--json]
    ntm registry show [VERSION | @ALIAS] [--name NAME] [--json]      (default @champion)
    ntm registry register RUN_ID [--no-gate]
    ntm registry promote VERSION [--force --reason TEXT]
    ntm registry rollback [--reason TEXT]

Every command takes ``--tracking-uri URI`` (default: ``mlflow.tracking_uri``, then
``$MLFLOW_TRACKING_URI``, then ``.ntm/mlflow.db``) and ``--set KEY=VALUE`` overrides of
``conf/base/mlflow.yaml`` (e.g. ``--set gate_metric=tu``). Exit codes: 0 done,
1 a registry error (unknown model/version/alias, gate refusal is *not* an error),
2 bad usage, 3 the tracking server cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from ntm_spark.mlops.registry_cli import EXIT_ERROR, EXIT_USAGE, run_registry_command


def build_parser() -> argparse.ArgumentParser:
    """Build the command's flags."""
    parser = argparse.ArgumentParser(prog="ntm registry", description="MLflow model registry for ntm-spark topic models.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=None, help="registered model name (mlflow.registered_model_name)")
    common.add_argument("--tracking-uri", default=None, help="MLflow tracking/registry URI")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", parents=[common], help="versions with aliases and metrics")
    show = sub.add_parser("show", parents=[common], help="one version's topics and lineage")
    show.add_argument("version", nargs="?", default="@champion", help="version number or @alias (default @champion)")
    reg = sub.add_parser("register", parents=[common], help="register a training run's model (then the gate)")
    reg.add_argument("run_id")
    reg.add_argument("--no-gate", action="store_true", help="only register and alias challenger")
    promote = sub.add_parser("promote", parents=[common], help="promote a version to champion through the gate")
    promote.add_argument("version", help="version number or @alias")
    promote.add_argument("--force", action="store_true", help="skip the gate (needs --reason)")
    promote.add_argument("--reason", default=None, help="why (recorded in the version's tags)")
    rollback = sub.add_parser("rollback", parents=[common], help="move champion back to the previous champion")
    rollback.add_argument("--reason", default=None)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm registry ...``; return the exit code (errors are printed, never raised)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from mlflow.exceptions import MlflowException

    from ntm_spark.core.config import ConfigError
    from ntm_spark.mlops.registry import RegistryError

    try:
        return run_registry_command(args)
    except (RegistryError, ConfigError) as err:
        print(f"ntm registry {args.action}: {err}", file=sys.stderr)
        return EXIT_ERROR if isinstance(err, RegistryError) else EXIT_USAGE
    except MlflowException as err:
        print(f"ntm registry {args.action}: MLflow error: {err.message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
