"""What ``ntm registry`` does with its parsed flags: list, show, register, promote, roll back, and print the result."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ntm_spark.core.uris import check_reachable

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


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


def run_registry_command(args: argparse.Namespace) -> int:
    """Run one ``ntm registry`` action (``args`` from ``jobs/registry.py``'s parser); print the result, return the exit code."""
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
