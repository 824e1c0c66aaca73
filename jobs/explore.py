"""Write the topic exploration report of a trained model and log it to the model's MLflow run.

Usage:
    ntm explore --model models:/<name>@champion | RUN_ID | MODEL_FOLDER
                [--data DATA_DIR] [--split test] [--out REPORT_DIR] [--sample N] [--max-docs N]
                [--log-to-run RUN_ID | --no-log] [--tracking-uri URI] [--set KEY=VALUE ...] [--config YAML]
                [--drift DRIFT_FOLDER | --drift-topic [TOPIC] [--bootstrap-servers HOST:PORT]]
                [--stream-config YAML] [--stream-set KEY=VALUE ...]

    ntm explore --model models:/ntm-20newsgroups@champion
    ntm explore --model .ntm/models/ntm --data .ntm/data/20newsgroups --out report
    xdg-open .ntm/reports/ntm-20newsgroups-v3/index.html
    ntm explore --model models:/ntm-20newsgroups@champion --drift /data/scored-drift   # stream.parquet_path: /data/scored
    ntm explore --model models:/ntm-20newsgroups@champion --drift-topic --bootstrap-servers 127.0.0.1:9092

The report folder holds top words (CSV, markdown), word clouds, the topic
assignments of sample documents, topic prevalence over the split, an intertopic
distance map, a topic x label heatmap for labelled corpora, and ``index.html``,
one self-contained page with all of it. A model loaded from MLflow gets the
report logged to its run under ``report/``; ``--log-to-run`` names a run for a
model folder. Flags override ``conf/base/explore.yaml`` (then
``conf/local/explore.yaml``, ``--config``, ``--set``).

``--drift`` (the stream's ``<parquet_path>-drift`` folder) or ``--drift-topic`` (default the
stream's ``<output_topic>-drift``) adds a drift section: each topic's prevalence per stream
window against the training prevalence the model carries, the JS distance, OOV and empty
rates with the alert thresholds, and the alert windows with their reasons. The topic is read
once, from its first offset to its end, with the connection settings ``ntm tail`` uses (the
stream config: ``--bootstrap-servers``, ``--stream-config``, ``--stream-set``), which also give
the thresholds drawn. Exit codes: 0 done, 2 a bad model, data, drift input or flag, 3 the
broker cannot be reached.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Optional

from ntm_spark.tools.kafka_client import add_connection_args

if TYPE_CHECKING:  # pragma: no cover
    from ntm_spark.report.drift import DriftHistory

log = logging.getLogger("jobs.explore")
#: ``--stream-config`` / ``--stream-set``: this command's own ``--config`` / ``--set`` are the report's.
STREAM_PREFIX = "stream-"
#: Exit code when the broker cannot be reached (as ``ntm tail``).
NO_BROKER = 3


def build_parser() -> argparse.ArgumentParser:
    """Build the job's argument parser."""
    parser = argparse.ArgumentParser(prog="ntm explore", description="Write the topic exploration report.")
    parser.add_argument("--model", default=None, help="model folder, models:/<name>@<alias>, models:/<name>/<version> or run id")
    parser.add_argument("--data", default=None, help="preprocessing output folder (explore.data_dir)")
    parser.add_argument("--split", default=None, choices=["train", "validation", "test"], help="split to score (default test)")
    parser.add_argument("--out", default=None, help="report folder (default .ntm/reports/<model name>)")
    parser.add_argument("--sample", type=int, default=None, help="sample documents in the assignment plot")
    parser.add_argument("--max-docs", type=int, default=None, help="cap on documents scored; 0 = the whole split")
    parser.add_argument("--log-to-run", default=None, metavar="RUN_ID", help="log the report to this MLflow run")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: mlflow config, $MLFLOW_TRACKING_URI, .ntm/mlflow.db)")
    parser.add_argument("--config", default=None, metavar="YAML", help="a YAML file laid over conf/base and conf/local")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    drift = parser.add_argument_group("drift (the stream's drift records; docs/streaming.md \"Drift monitoring\")")
    source = drift.add_mutually_exclusive_group()
    source.add_argument("--drift", default=None, metavar="FOLDER", help="the stream's drift Parquet folder, <parquet_path>-drift")
    source.add_argument(
        "--drift-topic", nargs="?", const="", default=None, metavar="TOPIC",
        help="read the drift topic (default: the stream's <output_topic>-drift)",
    )  # fmt: skip
    add_connection_args(drift, "override a stream config value (kafka_options, drift_js_distance...)", prefix=STREAM_PREFIX)
    return parser


def resolve_tracking_uri(flag: Optional[str]) -> str:
    """Return the flag, else ``mlflow.tracking_uri`` from config, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store."""
    from ntm_spark.core.config import load_config
    from ntm_spark.core.uris import default_tracking_uri

    if flag:
        return flag
    cfg = load_config("mlflow")
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def read_drift(args: argparse.Namespace) -> Optional["DriftHistory"]:
    """The drift windows ``--drift`` or ``--drift-topic`` names, read once (``None`` without either).

    Raises:
        ExploreError: for a missing folder or topic, or one with no drift records, naming it and the fix.
        ConfigError, KafkaClientConfigError: for a bad stream config.
        ConnectionError: when the broker cannot be reached.
    """
    from ntm_spark.core.paths import resolve_state_path
    from ntm_spark.report.explore import ExploreError, drift_history, read_drift_folder
    from ntm_spark.tools.kafka_client import stream_config_from_args

    if args.drift is None and args.drift_topic is None:
        return None
    stream_cfg = stream_config_from_args(args, prefix=STREAM_PREFIX)
    thresholds = stream_cfg.drift_thresholds()
    if args.drift is not None:
        folder = resolve_state_path(args.drift)
        records, unreadable = read_drift_folder(folder)
        return drift_history(records, f"folder {folder}", thresholds, unreadable)
    from kafka.errors import KafkaError

    from ntm_spark.tools.kafka_client import bootstrap_timeout, bytes_consumer, error_text, options_from_config
    from ntm_spark.tools.tail import TailError, read_topic_records

    topic = args.drift_topic or stream_cfg.drift_topic_name
    servers = stream_cfg.bootstrap_servers
    options = options_from_config(stream_cfg)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # one message says what failed, with the fix
    try:
        consumer = bytes_consumer(options, allow_auto_create_topics=False, **bootstrap_timeout(stream_cfg, options))
    except KafkaError as err:
        raise ConnectionError(
            f"cannot reach Kafka at {servers} ({error_text(err)}) to read --drift-topic {topic!r}: "
            "start it (`ntm services up`) or fix --bootstrap-servers."
        ) from err
    try:
        records, not_json = read_topic_records(consumer, topic)
    except TailError as err:
        raise ExploreError(
            f"--drift-topic {topic!r}: {err}. Name the stream's drift topic (stream.drift_topic, else <output_topic>-drift) "
            "or read the Parquet copy with --drift <parquet_path>-drift."
        ) from err
    except KafkaError as err:
        raise ConnectionError(f"reading --drift-topic {topic!r} from {servers} failed ({error_text(err)}): check the broker.") from err
    finally:
        consumer.close()
    # A tombstone or other bytes on the topic is left out and counted, like a malformed record.
    return drift_history(records, f"topic {topic} at {servers}", thresholds, ["a message that is not a JSON object"] * not_json)


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm explore``; return 0 on success, 2 for a bad model, data, drift input or flag, 3 for no broker."""
    from ntm_spark.core.config import ConfigError, load_config
    from ntm_spark.core.paths import resolve_state_path

    args = build_parser().parse_args(argv)
    try:
        overrides = list(args.overrides)
        for flag, key in (("sample", "sample_docs"), ("max_docs", "max_docs"), ("split", "split")):
            if getattr(args, flag) is not None:
                overrides.append(f"{key}={getattr(args, flag)}")
        cfg = load_config("explore", overrides=overrides, config_file=args.config)
        # Paths and URIs are set as given, not parsed as YAML; a leading .ntm/ is the state folder.
        cfg.model = resolve_state_path(args.model) or cfg.model
        cfg.data_dir = resolve_state_path(args.data) or cfg.data_dir
        cfg.output_dir = resolve_state_path(args.out) or cfg.output_dir
    except ConfigError as err:
        print(f"ntm explore: {err}", file=sys.stderr)
        return 2
    if not cfg.model:
        print("ntm explore: --model is required: a model folder, models:/<name>@champion or a run id.", file=sys.stderr)
        return 2
    from ntm_spark.report.explore import default_output_dir, load_model, log_report, write_report

    try:  # the drift input first: a wrong folder or topic fails before the split is scored
        drift = read_drift(args)
    except (ValueError, FileNotFoundError) as err:  # ExploreError, ConfigError, KafkaClientConfigError
        print(f"ntm explore: {err}", file=sys.stderr)
        return 2
    except ConnectionError as err:
        print(f"ntm explore: {err}", file=sys.stderr)
        return NO_BROKER
    tracking_uri = None
    needs_mlflow = cfg.model.startswith(("models:/", "runs:/")) or not os.path.isdir(cfg.model) or args.log_to_run
    if needs_mlflow:
        tracking_uri = resolve_tracking_uri(args.tracking_uri)
    try:
        model = load_model(cfg.model, tracking_uri=tracking_uri)
        out_dir = cfg.output_dir or default_output_dir(model)
        report = write_report(
            model,
            cfg.data_dir,
            out_dir,
            split=cfg.split,
            sample_docs=cfg.sample_docs,
            max_docs=cfg.max_docs,
            top_n=cfg.top_n,
            cloud_words=cfg.cloud_words,
            cloud_columns=cfg.cloud_columns,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            drift=drift,
        )
        run_id = args.log_to_run or (model.run_id if cfg.log_to_mlflow else None)
        if run_id and not args.no_log:
            log_report(report.out_dir, run_id, tracking_uri=tracking_uri or resolve_tracking_uri(args.tracking_uri))
    except (ValueError, FileNotFoundError) as err:  # ExploreError, ModelFolderError, ConfigError
        print(f"ntm explore: {err}", file=sys.stderr)
        return 2
    print(f"report: {report.files['html'].resolve()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
