"""``ntm serve``: the registered model over REST, as ``mlflow models serve`` but never a 5xx for a client's mistake.

Usage:
    ntm serve [-m MODEL_URI] [--name NAME] [--alias champion] [-H 127.0.0.1] [-p 5001]
              [--workers 1] [--timeout SECONDS] [--max-body-bytes N] [--max-json-depth N]
              [--max-rows N] [--refresh-interval SECONDS] [--tracking-uri URI] [--set KEY=VALUE]

The default model is ``models:/<mlflow.registered_model_name>@champion``, followed when the
alias moves. One port serves SageMaker's NTM endpoint (``GET /ping``, ``POST /invocations``,
``POST /endpoints/<name>/invocations``: CSV, JSON, JSON Lines and RecordIO-protobuf, see
docs/serving.md) and ``mlflow models serve``'s layouts and error bodies (MLflow's own scoring app,
see :mod:`ntm_spark.serving.endpoint`), guarded so that a client's mistake is a 4xx, never a 5xx.
Exit codes: 0 stopped, 1 the model cannot be loaded, 2 bad usage, 3 the tracking server cannot
be reached.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def build_parser() -> argparse.ArgumentParser:
    """Build the command's flags."""
    from ntm_spark.serving.endpoint import MAX_BODY_BYTES, MAX_JSON_DEPTH
    from ntm_spark.serving.sagemaker import MAX_ROWS

    parser = argparse.ArgumentParser(prog="ntm serve", description="Serve a registered topic model over REST.")
    parser.add_argument("-m", "--model-uri", default=None, help="any MLflow model URI (default models:/NAME@ALIAS)")
    parser.add_argument("--name", default=None, help="registered model name (mlflow.registered_model_name)")
    parser.add_argument("--alias", default="champion", help="alias served when --model-uri is not given")
    parser.add_argument("-H", "--host", default="127.0.0.1", help="interface to bind (default loopback)")
    parser.add_argument("-p", "--port", type=int, default=5001)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per request before a 504 (MLflow's default 60)")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="413 above this (default 32 MiB)")
    parser.add_argument("--max-json-depth", type=int, default=MAX_JSON_DEPTH, help="400 above this nesting (default 32)")
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS, help="413 above this many documents per SageMaker request (default 10000)")
    parser.add_argument("--refresh-interval", type=float, default=30.0, help="seconds between looks for a moved alias (default 30)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking/registry URI")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm serve ...`` until interrupted; return the exit code (errors are printed, never raised)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    import mlflow
    from mlflow.exceptions import MlflowException

    from ntm_spark.core.config import ConfigError, load_config
    from ntm_spark.core.uris import check_reachable, resolve_tracking_uri
    from ntm_spark.serving.endpoint import serve_model
    from ntm_spark.serving.model_loader import ModelLoadError

    try:
        cfg = load_config("mlflow", overrides=list(args.overrides))
    except ConfigError as err:
        print(f"ntm serve: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.tracking_uri:
        cfg.tracking_uri = args.tracking_uri
    uri = resolve_tracking_uri(cfg)
    why = check_reachable(uri)
    if why is not None:
        print(f"ntm serve: cannot reach the MLflow tracking server {uri!r} ({why}). Start it with "
              "`ntm services up --mlflow`, or pass --tracking-uri / set MLFLOW_TRACKING_URI.", file=sys.stderr)  # fmt: skip
        return EXIT_UNREACHABLE
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model_uri = args.model_uri or f"models:/{args.name or cfg.registered_model_name}@{args.alias}"
    try:
        serve_model(
            model_uri,
            host=args.host,
            port=args.port,
            workers=args.workers,
            timeout=args.timeout,
            max_body_bytes=args.max_body_bytes,
            max_json_depth=args.max_json_depth,
            max_rows=args.max_rows,
            refresh_interval_s=args.refresh_interval,
            tracking_uri=uri,
        )
    except (MlflowException, OSError, ModelLoadError) as err:
        message = err.message if isinstance(err, MlflowException) else str(err)
        print(f"ntm serve: cannot serve {model_uri!r}: {' '.join(message.split())}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as err:
        print(f"ntm serve: {err}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
