r"""Train the neural topic model on the preprocessing output and write the model folder.

Usage:
    ntm train [--data DIR] [--output DIR] [--num-topics K] [--epochs N] [--devices N] [--num-nodes N]
              [--launcher local|torchrun|spark] [--resume CKPT|last] [--warm-start MODEL_URI]
              [--set KEY=VALUE ...] [--config YAML]

    # one machine (Lightning starts one process per device)
    ntm train --data .ntm/data/20newsgroups --num-topics 50 --devices 2

    # several nodes with torchrun (run on every node)
    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m jobs.train --launcher torchrun --data /shared/20ng

    # Spark: TorchDistributor starts the DDP processes on the executors' GPUs (one executor
    # = one instance: mini_batch_size per executor, divided over its --devices ranks)
    spark-submit --master yarn jobs/train.py --launcher spark --devices 4 --num-nodes 2 --data /shared/20ng

    # warm start: from the champion's weights and vocabulary, on new data (a preprocessing output
    # or the stream's Parquet sink), mixed with a replay sample of the old; topics keep their ids
    ntm train --warm-start models:/ntm-20newsgroups@champion --data .ntm/data/new-month
    ntm train --warm-start models:/ntm-20newsgroups@champion --data .ntm/stream/scored

    # Petastorm's Spark converter: read <data>/train as a DataFrame, train through
    # make_spark_converter(df).make_torch_dataloader() (in .venv-petastorm only)
    .venv-petastorm/bin/ntm train --from-spark-df --data .ntm/data/20newsgroups --no-mlflow --set num_workers=0

Flags override ``conf/base/train.yaml`` (then ``conf/local/train.yaml``, then ``--config``,
then ``--set``). With ``--launcher spark`` the data and output folders must be on storage
every executor can reach.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Optional

log = logging.getLogger("jobs.train")


def build_parser() -> argparse.ArgumentParser:
    """Build the job's flags (plus the shared ``--master``/``--spark-conf``/``--config``/``--set``)."""
    from ntm_spark.core.hparams import PRESETS
    from ntm_spark.spark.session import add_spark_args

    parser = argparse.ArgumentParser(prog="ntm train", description="Train the NTM (Lightning, DDP) and write the model folder.")
    parser.add_argument("--data", default=None, help="preprocessing output folder (train.data_dir)")
    parser.add_argument("--output", default=None, help="model folder to write (train.output_dir)")
    parser.add_argument("--num-topics", type=int, default=None, help="number of topics K (2-1000)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping may end sooner)")
    parser.add_argument("--devices", default=None, help="devices (ranks) per node, or 'auto'")
    parser.add_argument("--num-nodes", type=int, default=None, help="number of nodes")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS), help="model preset")
    parser.add_argument(
        "--launcher",
        default="local",
        choices=["local", "torchrun", "spark"],
        help="local: Lightning starts the ranks; torchrun: already started by torchrun; spark: TorchDistributor",
    )
    parser.add_argument("--resume", default=None, metavar="CKPT", help="resume from a checkpoint path, or 'last'")
    parser.add_argument(
        "--warm-start",
        default=None,
        metavar="MODEL_URI",
        help="start from this model's weights and vocabulary (models:/<name>@champion, models:/<name>/<version> or a "
        "model folder); --data may be a preprocessing output or the stream's Parquet sink (train.warm_start)",
    )
    parser.add_argument(
        "--from-spark-df",
        action="store_true",
        help="read <data>/train into a Spark DataFrame and train through Petastorm's Spark converter "
        "(make_spark_converter(df).make_torch_dataloader(); needs .venv-petastorm, num_workers=0)",
    )
    mlf = parser.add_argument_group("MLflow")
    mlf.add_argument("--no-mlflow", action="store_true", help="do not track the run in MLflow (nor register it)")
    mlf.add_argument("--no-register", action="store_true", help="track the run but do not register the model")
    mlf.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: conf mlflow.tracking_uri, "
                     "$MLFLOW_TRACKING_URI, then sqlite:///.ntm/mlflow.db)")
    mlf.add_argument("--run-name", default=None, help="MLflow run name")
    return add_spark_args(parser)


def resolve_config(args: argparse.Namespace):
    """Lay the flags over the layered train config."""
    from ntm_spark.core.config import load_config

    overrides = list(args.overrides or [])
    for flag, key in (
        ("data", "data_dir"),
        ("output", "output_dir"),
        ("num_topics", "num_topics"),
        ("epochs", "epochs"),
        ("devices", "devices"),
        ("num_nodes", "num_nodes"),
        ("preset", "preset"),
        ("resume", "resume"),
        ("warm_start", "warm_start.model"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_config("train", overrides=overrides, config_file=args.config)


def _train(args: argparse.Namespace, cfg, loggers: list) -> Any:
    if cfg.warm_start.model:
        from ntm_spark.core.config import ConfigError

        if args.from_spark_df or args.launcher == "spark":
            raise ConfigError(
                "--warm-start runs with --launcher local or torchrun (it prepares the data on this machine); "
                "drop --from-spark-df / --launcher spark."
            )
        from lightning_module.train import train_model
        from ntm_spark.serving.warm_start import prepare_warm_start

        warm, cfg = prepare_warm_start(cfg, args.tracking_uri or _tracking_uri(args))
        return train_model(cfg, loggers=loggers, warm_start=warm)
    if args.from_spark_df:
        from ntm_spark.core import storage
        from ntm_spark.spark.petastorm_train import check_converter_config, converter_spark_config, train_from_dataframe
        from ntm_spark.spark.session import build_spark_session, spark_config_from_args, stop_spark_session

        check_converter_config(cfg)  # before a JVM starts
        spark = build_spark_session(converter_spark_config(spark_config_from_args(args)), app_name="ntm-train")
        try:
            return train_from_dataframe(spark.read.parquet(storage.join(cfg.data_dir, "train")), cfg, loggers=loggers)
        finally:
            stop_spark_session(spark)
    if args.launcher == "spark":
        from ntm_spark.spark.distributed import run_with_distributor
        from ntm_spark.spark.session import build_spark_session, spark_config_from_args, stop_spark_session

        spark = build_spark_session(spark_config_from_args(args), app_name="ntm-train")
        try:
            # Ranks run on executors, where no logger can be handed in: the finished
            # model folder is logged afterwards (its CSV logs give the epoch history).
            return run_with_distributor(spark, cfg)
        finally:
            stop_spark_session(spark)
    from lightning_module.train import train_model

    return train_model(cfg, loggers=loggers)


def _tracking_uri(args: argparse.Namespace) -> Optional[str]:
    from ntm_spark.core.config import load_config
    from ntm_spark.core.uris import resolve_tracking_uri

    return resolve_tracking_uri(load_config("mlflow"))


def main(argv: Optional[list[str]] = None) -> int:
    """Parse flags, resolve the config and train; return the exit code."""
    import os

    from ntm_spark.core.config import ConfigError
    from ntm_spark.core.threads import WAIT_POLICY

    # spark-submit jobs/train.py does not pass through `ntm`: set it here too, before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)

    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = resolve_config(args)
        if args.launcher == "torchrun":
            from lightning_module.train import apply_torchrun_env

            cfg = apply_torchrun_env(cfg)
        from ntm_spark.mlops.tracking import mlflow_config_or_none, train_and_track

        mlflow_cfg = mlflow_config_or_none(args.no_mlflow, args.tracking_uri)
        if mlflow_cfg is None:
            result = _train(args, cfg, [])
        else:
            result = train_and_track(lambda loggers: _train(args, cfg, loggers), cfg, mlflow_cfg, args.run_name, not args.no_register)
    except (ConfigError, FileNotFoundError) as err:
        print(f"ntm train: {err}", file=sys.stderr)
        return 2
    if result is not None:
        log.info("model folder: %s (npmi=%s)", result.model_dir, result.metrics.get("npmi"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
