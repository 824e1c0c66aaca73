r"""Print what ``ntm stream`` writes, readably: scored records (id, top topics with words, model version), dead letters, drift windows.

Usage:
    ntm tail [--topic T] [--dead-letters] [--drift] [--scored] [--follow] [--from-beginning] [--max N] \\
        [--words 5] [--json] [--bootstrap-servers HOST:PORT] [--config YAML] [--set KEY=VALUE]
    python jobs/tail.py [same flags]

``--topic`` is the stream's output topic (default ``stream.output_topic``); ``--dead-letters``
reads the dead-letter topic (``stream.dead_letter_topic``, or ``--dead-letter-topic``) and
``--drift`` the ``<output topic>-drift`` topic; ``--scored`` adds the output topic back to either.
Without ``--follow`` it prints what the topics hold and exits; with it, it waits for new records
(from the end, or from the start with ``--from-beginning``) until Ctrl-C. The connection settings
are the stream's (``stream.bootstrap_servers``, ``stream.kafka_options``). Exit codes: 0 done,
1 a topic does not exist, 2 bad usage, 3 the broker cannot be reached.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

from ntm_spark.core.config import ConfigError
from ntm_spark.tools.kafka_client import (
    KafkaClientConfigError,
    add_connection_args,
    bootstrap_timeout,
    bytes_consumer,
    connection_from_args,
    error_text,
)
from ntm_spark.tools.tail import DEAD_LETTERS, DRIFT, SCORED, TailError, TopicWords, tail_topics

log = logging.getLogger(__name__)
PROG = "ntm tail"


def build_parser() -> argparse.ArgumentParser:
    """Build the command's flags."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", default=None, help="the stream's output topic (default: stream.output_topic)")
    parser.add_argument("--dead-letters", action="store_true", help="print the dead letters, with their reasons")
    parser.add_argument("--dead-letter-topic", default=None, help="the dead-letter topic (default: stream.dead_letter_topic)")
    parser.add_argument("--drift", action="store_true", help="print the drift windows of <output topic>-drift, one JSON line each")
    parser.add_argument("--scored", action="store_true", help="also print scored records (the default without --dead-letters/--drift)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep waiting for new records until Ctrl-C")
    parser.add_argument("--from-beginning", action="store_true", help="with --follow: start at the first record, not at the end")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="stop after printing N records")
    parser.add_argument("--words", type=int, default=5, metavar="N", help="words shown per topic (default 5)")
    parser.add_argument("--json", action="store_true", help="print each record as compact JSON")
    add_connection_args(parser, "override a stream config value (model_uri, tracking_uri, kafka_options...)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm tail``; return the exit code (errors are printed, never raised)."""
    # Topic words may come from an MLflow server: fail fast instead of MLflow's long retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # The clients log every failed connection attempt; this command says what failed, once, with the fix.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    def say(text: str) -> None:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)

    if args.max is not None and args.max < 1:
        say(f"--max {args.max} must be >= 1.")
        return 2
    if args.words < 0:
        say(f"--words {args.words} must be >= 0.")
        return 2
    try:
        cfg, options = connection_from_args(args)
    except (ConfigError, KafkaClientConfigError) as err:
        say(str(err))
        return 2
    output = args.topic or cfg.output_topic
    topics: dict[str, str] = {}
    if args.scored or not (args.dead_letters or args.drift):
        topics[output] = SCORED
    if args.dead_letters:
        topics[args.dead_letter_topic or cfg.dead_letter_topic] = DEAD_LETTERS
    if args.drift:
        topics[f"{output}-drift"] = DRIFT

    from kafka.errors import KafkaError

    try:
        consumer = bytes_consumer(options, allow_auto_create_topics=False, **bootstrap_timeout(cfg, options))
    except KafkaError as err:
        say(f"cannot reach Kafka at {cfg.bootstrap_servers} ({error_text(err)}): start it (`ntm services up`) or fix --bootstrap-servers.")
        return 3
    words = TopicWords(args.words, cfg.model_uri, cfg.tracking_uri, report=lambda why: say(f"{why}; showing the record's own words or topic ids"))
    try:
        summary = tail_topics(
            consumer, topics, lambda line: print(line, flush=True), words=words, n_words=args.words, follow=args.follow,
            from_beginning=args.from_beginning, max_records=args.max, as_json=args.json, wait_topics=args.follow, note=say,
        )  # fmt: skip
    except KeyboardInterrupt:  # Ctrl-C while connecting or looking topics up: a normal way to stop
        summary = None
    except TailError as err:
        hint = " The drift topic is written by drift monitoring (docs/streaming.md)." if DRIFT in topics.values() else ""
        say(f"{err}: check --topic and that `ntm stream` writes there.{hint}")
        return 1
    except KafkaError as err:
        say(f"reading from {cfg.bootstrap_servers} failed ({error_text(err)}): check the broker.")
        return 3
    finally:
        consumer.close()
    if summary is None:
        return 0
    counts = ", ".join(f"{n} from {t!r}" for t, n in summary.printed.items())
    say(f"printed {summary.total} records ({counts})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
