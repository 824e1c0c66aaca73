r"""Send documents to Kafka as the messages ``ntm stream`` reads: JSON lines, CSV or text files, keyed by id.

Usage:
    ntm produce [--topic T] FILE|FOLDER|- [--format auto|jsonl|csv|text] [--text-col text] [--id-col id] \\
        [--bootstrap-servers HOST:PORT] [--config YAML] [--set kafka_options=...] [--no-progress]
    python jobs/produce.py [same flags]

The topic defaults to the stream's input topic (``stream.input_topics``), and the connection
settings are the stream's (``stream.bootstrap_servers``, ``stream.kafka_options``; see
``ntm_spark/tools/kafka_client.py``). Lines or rows that cannot become a document are reported
(file and line) and skipped; the rest is sent. Exit codes: 0 every document sent, 1 some were
skipped or not delivered (each reported), 2 bad usage or unreadable input (nothing sent),
3 the broker cannot be reached, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from ntm_spark.core.config import ConfigError
from ntm_spark.tools.kafka_client import (
    KafkaClientConfigError,
    add_connection_args,
    bootstrap_timeout,
    bytes_producer,
    connection_from_args,
    error_text,
)
from ntm_spark.tools.produce import (
    INPUT_FORMATS,
    ProduceInputError,
    count_inputs,
    detect_format,
    produce_documents,
    read_documents,
)

log = logging.getLogger(__name__)
PROG = "ntm produce"


def build_parser() -> argparse.ArgumentParser:
    """Build the command's flags."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("input", metavar="FILE|FOLDER|-", help="a .jsonl/.csv/.txt file, a folder of text files, or - for standard input (JSON lines)")
    parser.add_argument("--topic", default=None, help="the topic to send to (default: stream.input_topics, when it names one topic)")
    parser.add_argument("--format", dest="input_format", default="auto", choices=INPUT_FORMATS, help="input format (auto: by extension)")
    parser.add_argument("--text-col", default="text", help="the JSON field or CSV column holding the text (default text)")
    parser.add_argument("--id-col", default=None, help="the JSON field or CSV column holding the id (default: id when present, else derived keys)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_connection_args(parser, "override a stream config value, e.g. --set 'kafka_options={\"security.protocol\": \"SSL\"}'")
    return parser


def _progress(total: Optional[int], disabled: bool):  # noqa: ANN202 - a tqdm bar or None
    if disabled:
        return None
    from tqdm import tqdm

    # disable=None: a bar only on a terminal, so logs and pipes stay clean.
    return tqdm(total=total, desc="produce", unit=" docs", file=sys.stderr, disable=None, dynamic_ncols=True)


def main(argv: Optional[list[str]] = None) -> int:
    """Run ``ntm produce``; return the exit code (errors are printed, never raised)."""
    # The clients log every failed connection attempt; this command says what failed, once, with the fix.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    def say(text: str) -> None:
        print(f"{PROG}: {text}", file=sys.stderr)

    try:
        cfg, options = connection_from_args(args)
        fmt = detect_format(args.input, args.input_format)
        items = read_documents(args.input, fmt, text_col=args.text_col, id_col=args.id_col)
        first = next(items, None)  # a problem with the whole input shows up here, before connecting
    except (ConfigError, KafkaClientConfigError, ProduceInputError) as err:
        say(str(err))
        return 2
    topic = args.topic
    if topic is None:
        topics = [t.strip() for t in (cfg.input_topics or "").split(",") if t.strip()]
        if len(topics) != 1:
            say(f"pass --topic T: stream.input_topics={cfg.input_topics!r} does not name exactly one topic.")
            return 2
        topic = topics[0]

    from kafka.errors import KafkaError

    try:
        producer = bytes_producer(options, acks="all", linger_ms=20, max_block_ms=30_000, **bootstrap_timeout(cfg, options))
    except KafkaError as err:
        say(f"cannot reach Kafka at {cfg.bootstrap_servers} ({error_text(err)}): start it (`ntm services up`) or fix --bootstrap-servers.")
        return 3
    bar = _progress(count_inputs(args.input, fmt), args.no_progress)

    def report(text: str) -> None:
        if bar is not None and not bar.disable:
            bar.write(f"{PROG}: {text}", file=sys.stderr)  # above the bar, which is redrawn below
        else:
            say(text)

    def chained():  # noqa: ANN202
        if first is not None:
            yield first
        yield from items

    try:
        summary = produce_documents(producer, topic, chained(), report=report, progress=bar)
    except KeyboardInterrupt:
        say("interrupted: the documents sent so far are flushed on close; rerun to send the rest (keys are stable).")
        return 130
    except ProduceInputError as err:  # an input that fails while it is read (an I/O error)
        say(str(err))
        return 2
    except KafkaError as err:
        say(f"sending to {topic!r} on {cfg.bootstrap_servers} failed ({error_text(err)}): check the broker and the topic.")
        return 3
    finally:
        if bar is not None:
            bar.close()
        producer.close(timeout=10)
    if not (summary.sent or summary.skipped or summary.failed):
        say(f"{args.input!r} holds no documents (only blank lines, or no files): nothing was sent.")
    print(
        f"{PROG}: sent {summary.sent} documents ({summary.bytes:,} bytes) to {topic!r}"
        + (f"; skipped {summary.skipped}" if summary.skipped else "")
        + (f"; {summary.failed} not delivered" if summary.failed else ""),
        file=sys.stderr,
    )
    return 1 if summary.skipped or summary.failed else 0


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
