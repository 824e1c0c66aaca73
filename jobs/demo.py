"""Run every stage end to end on embedded defaults: services, preprocess, train, register, explore, stream.

Usage:
    ntm demo [--quick] [--messages N] [--keep-services] [--set KEY=VALUE ...]
    make demo                       # == ntm demo --quick, after installing what is missing

Steps (each logs one line, long ones show a progress bar):
    1. services up: the Kafka broker (KRaft) and the MLflow server (UI), on 127.0.0.1
    2. preprocess 20 Newsgroups (Spark) into bag-of-words Parquet + vocabulary
    3. train the NTM (CPU by default; the GPU when present), tracked in MLflow
    4. register the model and promote it through the quality gate
    5. write the exploration report
    6. start the streaming job (Kafka -> topic mixtures -> Kafka)
    7. produce the 20 Newsgroups test documents to Kafka
    8. print tagged messages with their true newsgroup and top topics, and the latency
    9. print where to browse: the MLflow UI and the report
   10. stop everything it started

``--quick`` uses a sample of the corpus and a few epochs (a few minutes on 2 cores);
the full mode reproduces the seed notebook's setting (vocabulary 2,000, K = 20).
Re-running is safe: the demo's data, model and checkpoints under ``.ntm/demo`` are
reset, and each run uses fresh topic names.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional


def build_parser() -> argparse.ArgumentParser:
    """Return the demo's flags."""
    parser = argparse.ArgumentParser(prog="ntm demo", description="Run every stage end to end.")
    parser.add_argument("--quick", action="store_true", help="a corpus sample and few epochs (minutes on 2 cores)")
    parser.add_argument("--messages", type=int, default=None, help="test documents to stream (default: 300 quick, all full)")
    parser.add_argument("--num-topics", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=None, help="default: 8 quick, 50 full (early stopping applies)")
    parser.add_argument("--keep-services", action="store_true", help="leave Kafka and the MLflow server running")
    parser.add_argument("--workdir", default=None, help="demo state folder (default .ntm/demo)")
    parser.add_argument("--stream-timeout", type=float, default=None, help="seconds to wait for every tagged record")
    parser.add_argument("--kafka-port", type=int, default=None, help="broker port (default services.kafka_port)")
    parser.add_argument("--kafka-controller-port", type=int, default=None)
    parser.add_argument("--mlflow-port", type=int, default=None, help="MLflow server port (default services.mlflow_port)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run the demo; return 0 when every streamed document came back tagged."""
    args = build_parser().parse_args(argv)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    from jobs import explore, preprocess, train
    from ntm_spark.tools.demo import run_demo
    from ntm_spark.tools.services import ServiceError

    try:
        # The steps that are jobs of their own run through their main(): the library never imports jobs.
        return run_demo(args, {"preprocess": preprocess.main, "train": train.main, "explore": explore.main})
    except (ServiceError, RuntimeError) as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
