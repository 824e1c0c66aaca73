"""The ``ntm`` command: one entry point whose subcommands call each job's ``main(argv)``.

Usage:
    ntm services up|down|status|reset     local Kafka broker (KRaft) and MLflow server
    ntm data wordnet|archive              offline NLTK WordNet data
    ntm preprocess [flags]                raw corpus -> bag-of-words Parquet + vocabulary
    ntm train [flags]                     train the NTM (Lightning, DDP)
    ntm registry list|show|register|promote|rollback
    ntm serve [flags]                     the registered model over REST (no 5xx for bad input)
    ntm stream [flags]                    Kafka -> topic mixtures -> Kafka
    ntm produce [--topic T] FILE|-        send JSON lines, CSV or text files to Kafka as documents
    ntm tail [--dead-letters] [--drift]   print the stream's records readably
    ntm backfill [flags]                  score a whole corpus to Parquet
    ntm explore [flags]                   topic exploration report
    ntm demo [--quick]                    every stage end to end

``ntm <subcommand> --help`` shows each one's flags.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Optional

from ntm_spark.core.threads import WAIT_POLICY

#: subcommand -> (module with ``main(argv)``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "services": ("ntm_spark.tools.services", "start, stop or check the local Kafka broker and MLflow server"),
    "data": ("ntm_spark.tools.nltk_data_cli", "install offline NLTK WordNet data or pack it for a cluster"),
    "preprocess": ("jobs.preprocess", "raw corpus -> bag-of-words Parquet and vocabulary"),
    "import-recordio": ("jobs.import_recordio", "SageMaker RecordIO training channels -> bag-of-words Parquet and vocabulary"),
    "export-recordio": ("jobs.export_recordio", "bag-of-words Parquet -> SageMaker RecordIO training channels"),
    "train": ("jobs.train", "train the neural topic model"),
    "registry": ("jobs.registry", "MLflow model registry: list, show, register, promote, rollback"),
    "serve": ("jobs.serve", "serve the registered model over REST (MLflow's scoring app, guarded)"),
    "stream": ("jobs.stream_score", "tag a Kafka stream of documents with topic mixtures"),
    "produce": ("jobs.produce", "send JSON lines, CSV or text files to Kafka as documents for the stream"),
    "tail": ("jobs.tail", "print the stream's scored records, dead letters or drift windows readably"),
    "backfill": ("jobs.backfill", "score a whole corpus to Parquet"),
    "explore": ("jobs.explore", "write the topic exploration report"),
    "demo": ("jobs.demo", "run every stage end to end"),
}


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: ntm <command> [args...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `ntm <command> --help` for a command's flags."]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Dispatch ``ntm <command> ...`` to the command's ``main(argv)``; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ntm: unknown command {name!r}; choose one of {', '.join(COMMANDS)}.\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "py4j", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    module_name = COMMANDS[name][0]
    # Before torch loads OpenMP (it reads the policy once): waiting threads sleep instead of
    # spinning on a core another process needs (ntm_spark/core/threads.py).
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        print(f"ntm {name}: cannot import {module_name} ({err}). Install the extras with `make install`.", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
