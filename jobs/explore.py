"""Write the topic exploration report of a trained model and log it to the model's MLflow run.

Usage:
    ntm explore --model models:/<name>@champion | RUN_ID | MODEL_FOLDER
                [--data DATA_DIR] [--split test] [--out REPORT_DIR] [--sample N] [--max-docs N]
                [--log-to-run RUN_ID | --no-log] [--tracking-uri URI] [--set KEY=VALUE ...] [--config YAML]

    ntm explore --model models:/ntm-20newsgroups@champion
    ntm explore --model .ntm/models/ntm --data .ntm/data/20newsgroups --out report
    xdg-open .ntm/reports/ntm-20newsgroups-v3/index.html

The report folder holds top words (CSV, markdown), word clouds, the topic
assignments of sample documents, topic prevalence over the split, an intertopic
distance map, a topic x label heatmap for labelled corpora, and ``index.html``,
one self-contained page with all of it. A model loaded from MLflow gets the
report logged to its run under ``report/``; ``--log-to-run`` names a run for a
model folder. Flags override ``conf/base/explore.yaml`` (then
``conf/local/explore.yaml``, ``--config``, ``--set``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

log = logging.getLogger("jobs.explore")


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
    return parser


def resolve_tracking_uri(flag: Optional[str]) -> str:
    """Return the flag, else ``mlflow.tracking_uri`` from config, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store."""
    from ntm_spark.core.config import load_config
    from ntm_spark.core.uris import default_tracking_uri

    if flag:
        return flag
    cfg = load_config("mlflow")
    return cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm explore``; return 0 on success, 2 for a bad model, data or flag."""
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
