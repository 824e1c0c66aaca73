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
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, Optional

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


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


def check_reachable(uri: str, timeout: float = 5.0) -> Optional[str]:
    """Return why an HTTP tracking server cannot be reached, or ``None`` (always ``None`` for local stores)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:  # noqa: S310 - user's URI
            return None if resp.status == 200 else f"/health answered HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        return f"/health answered HTTP {err.code}"
    except (OSError, ValueError) as err:
        return str(getattr(err, "reason", err))


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}"
        if isinstance(v, list):
            return ",".join(v) or "-"
        return "-" if v in (None, "") else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _run(args: argparse.Namespace) -> int:
    from ntm_spark.core.config import load_config
    from ntm_spark.mlops import registry

    cfg = load_config("mlflow", overrides=list(args.overrides))
    if args.tracking_uri:
        cfg.tracking_uri = args.tracking_uri
    if args.name:
        cfg.registered_model_name = args.name
    from ntm_spark.core.uris import resolve_tracking_uri

    uri = resolve_tracking_uri(cfg)
    why = check_reachable(uri)
    if why is not None:
        print(
            f"ntm registry: cannot reach the MLflow tracking server {uri!r} ({why}). Start it with "
            "`ntm services up --mlflow`, or pass --tracking-uri / set MLFLOW_TRACKING_URI.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    cfg.tracking_uri = uri
    name = cfg.registered_model_name
    client = registry._client(cfg)

    if args.action == "list":
        rows = registry.list_versions(name, cfg, client=client)
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows:
            print(f"model {name!r} has no versions yet.")
        else:
            print(f"{name} ({uri})")
            _print_table(rows, ["version", "aliases", "npmi", "tu", "val_loss", "num_topics", "feature_dim", "vocab_sha256", "created", "run_id"])
        return 0
    if args.action == "show":
        info = registry.show_version(name, args.version, cfg, client=client)
        if args.json:
            print(json.dumps(info, indent=2))
            return 0
        tags = info["tags"]
        print(f"{name} version {info['version']}  aliases: {', '.join(info['aliases']) or '-'}")
        print(f"npmi {tags.get('npmi', '-')}  tu {tags.get('tu', '-')}  val_loss {tags.get('val_loss', '-')}  "
              f"num_topics {tags.get('num_topics', '-')}  feature_dim {tags.get('feature_dim', '-')}")
        print(f"vocab sha256 {tags.get('vocab_sha256', '-')}  git commit {tags.get('git_commit', '-')}")
        for key in ("promotion", "promotion_reason", "forced_promotion_reason", "gate_decision", "rolled_back"):
            if key in tags:
                print(f"{key}: {tags[key]}")
        print("\nlineage:")
        for key, value in info["lineage"].items():
            print(f"  {key}: {value if value not in (None, '') else '-'}")
        print(f"  corpus: {tags.get('corpus', '-')}")
        print(f"  champion history: {info['champion_history'] or '-'}")
        print("\ntopics:\n" + (info["description"] or "(no description)"))
        return 0
    if args.action == "register":
        result = registry.register_run_model(args.run_id, cfg, gate=not args.no_gate, client=client)
        d = result.decision
        state = "champion" if d.promoted else "challenger"
        print(f"registered {name} version {result.version} from run {result.run_id}: {state} ({d.reason})")
        return 0
    if args.action == "promote":
        if args.reason and not args.force:
            print("ntm registry promote: --reason is only used with --force (the gate records its own reason).", file=sys.stderr)
        d = registry.promote_version(name, args.version, cfg, force=args.force, reason=args.reason, client=client)
        if d.promoted:
            print(f"{name} version {d.version} is now champion (was {d.previous_champion or 'none'}): {d.reason}")
        else:
            print(f"{name} version {d.version} stays challenger: {d.reason}")
        return 0
    d = registry.rollback_champion(name, cfg, reason=args.reason, client=client)
    print(f"{name}: champion is version {d.version} again (was {d.previous_champion}); {d.reason}")
    return 0


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
        return _run(args)
    except (RegistryError, ConfigError) as err:
        print(f"ntm registry {args.action}: {err}", file=sys.stderr)
        return EXIT_ERROR if isinstance(err, RegistryError) else EXIT_USAGE
    except MlflowException as err:
        print(f"ntm registry {args.action}: MLflow error: {err.message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
