"""``ntm tail``: print what ``ntm stream`` wrote, readably: scored records, dead letters, drift windows.

One line per record:

* scored (the output topic)::

      test/sci.space/61234  ntm-20newsgroups v7  #3 0.41 space orbit launch nasa moon | #8 0.22 ...

  The words are the model's: read from the model the record names (``model_name``,
  ``model_version``): a registered version through the MLflow registry, a model folder when
  it is the stream's ``model_uri`` and its version (the hash of ``model.pt``) matches. When the
  model cannot be found, the words the stream put in the record are shown, else the topic ids
  alone, and the reason is printed once.
* dead letters (the dead-letter topic)::

      documents-1-17  not_json: the message value is not valid JSON  [documents/1@17]  key: 'bad-3'  raw: '{not json'

* drift windows (``<output topic>-drift``): each record as one line of compact JSON.

It reads with a consumer in no group (nothing is committed, nothing is created): without
``follow`` from the first offset to the end offsets seen at start, then stops; with ``follow``
from the end (or the beginning with ``from_beginning``) until interrupted.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ntm_spark.core.text import decode_document_bytes

log = logging.getLogger(__name__)

SCORED, DEAD_LETTERS, DRIFT = "scored", "dead_letters", "drift"
RAW_CHARS = 80


class TailError(RuntimeError):
    """The topic cannot be read (it does not exist, the broker does not answer)."""


# ----------------------------------------------------------------------------- topic words


class TopicWords:
    """Each model version's top words per topic, looked up once per ``(model_name, model_version)``.

    Args:
        words: How many words per topic.
        model_uri: The stream's ``model_uri``; a model folder there is used for records of its version.
        tracking_uri: The MLflow registry for ``models:/`` versions (``None``: the project default).
        report: Called once per model version whose words cannot be found, with the reason.
    """

    def __init__(self, words: int, model_uri: Optional[str], tracking_uri: Optional[str], report: Callable[[str], None]) -> None:
        self.words = words
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.report = report
        self._cache: dict[tuple[str, str], Optional[list[list[str]]]] = {}

    def get(self, name: Optional[str], version: Optional[str]) -> Optional[list[list[str]]]:
        """Each topic's words for the model version, or ``None`` (the reason reported once)."""
        key = (str(name), str(version))
        if key not in self._cache:
            try:
                self._cache[key] = self._lookup(name, version)
            except Exception as err:  # noqa: BLE001 - any lookup failure is reported once, with the fix
                self._cache[key] = None
                self.report(f"no topic words for model {name} version {version}: {err}")
        return self._cache[key]

    def _lookup(self, name: Optional[str], version: Optional[str]) -> list[list[str]]:
        from ntm_spark.core.contract import read_topic_word, read_vocabulary, top_words

        if not name or not version:
            raise LookupError("the record names no model_name/model_version")
        folder = self._folder_for(name, version)
        if folder is not None:
            tw = read_topic_word(folder)
            if tw is None:
                raise LookupError(f"the model folder {folder} has no topic-word matrix")
            return top_words(tw, read_vocabulary(folder).words, self.words)
        if not str(version).isdigit():
            raise LookupError(
                f"it is not a registry version, and the stream's model_uri ({self.model_uri!r}) is not that model folder: "
                "pass the folder the stream scores with as --set model_uri=PATH"
            )
        from ntm_spark.mlops.registry import version_topic_words

        return version_topic_words(name, str(version), self.words, tracking_uri=self.tracking_uri)

    def _folder_for(self, name: str, version: str) -> Optional[str]:
        from ntm_spark.serving.model_loader import folder_version, parse_model_ref

        if not self.model_uri:
            return None
        try:
            ref = parse_model_ref(self.model_uri)
        except ValueError:
            return None
        if ref.kind != "folder" or ref.name != name:
            return None
        return ref.uri if folder_version(ref.uri) == str(version) else None


# ----------------------------------------------------------------------------- formatting


def _short(text: Any, limit: int = RAW_CHARS) -> str:
    text = "" if text is None else str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")


def format_scored(rec: dict, words: Optional[list[list[str]]], n_words: int) -> str:
    """One line for an output record: id, model version, then each top topic with its weight and words."""
    name, version = rec.get("model_name"), rec.get("model_version")
    model = f"{name} v{version}" if str(version).isdigit() else f"{name}@{version}"
    parts = []
    for top in rec.get("top_topics") or []:
        if not isinstance(top, dict):
            continue
        topic = top.get("topic")
        weight = top.get("weight")
        shown = None
        if words is not None and isinstance(topic, int) and 0 <= topic < len(words):
            shown = words[topic][:n_words]
        elif top.get("words"):
            shown = list(top["words"])[:n_words]
        w = f"{weight:.2f}" if isinstance(weight, (int, float)) else str(weight)
        parts.append(f"#{topic} {w}" + (f" {' '.join(map(str, shown))}" if shown else ""))
    return f"{rec.get('id')}  {model}  {' | '.join(parts) or '(no top topics)'}"


def format_dead_letter(rec: dict) -> str:
    """One line for a dead letter: id, error code and message, where it came from, its key (when not the id), the raw value's start."""
    where = f"{rec.get('source_topic')}/{rec.get('source_partition')}@{rec.get('source_offset')}"
    key = rec.get("key")
    shown_key = "" if key is None or key == rec.get("id") else f"  key: {_short(key, 40)}"
    raw = "" if rec.get("raw_value") is None else f"  raw: {_short(rec.get('raw_value'))}"
    return f"{rec.get('id')}  {rec.get('error_code')}: {rec.get('error_message')}  [{where}]{shown_key}{raw}"


def format_record(kind: str, value: Optional[bytes], where: str, words: Optional[TopicWords], n_words: int, as_json: bool) -> str:
    """The line for one Kafka record of ``kind``; a value that is not a JSON object is shown raw, never raised."""
    if value is None:
        return f"{where}  (no value: a tombstone)"
    text, _ = decode_document_bytes(value)
    try:
        rec = json.loads(text)
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        return f"{where}  (not a JSON object) raw: {_short(text)}"
    if as_json or kind == DRIFT:
        return json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
    if kind == DEAD_LETTERS:
        if "error_code" not in rec:
            return f"{rec.get('id', where)}  (not a dead letter: no error_code; fields {sorted(rec)[:8]}): is this the dead-letter topic?"
        return format_dead_letter(rec)
    if "top_topics" not in rec:
        return f"{rec.get('id', where)}  (not a scored record: no top_topics; fields {sorted(rec)[:8]}): is --topic the stream's output topic?"
    topic_words = words.get(rec.get("model_name"), rec.get("model_version")) if words is not None else None
    return format_scored(rec, topic_words, n_words)


# ----------------------------------------------------------------------------- reading


@dataclass
class TailSummary:
    """What :func:`tail_topics` printed, per topic."""

    printed: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Records printed over all topics."""
        return sum(self.printed.values())


def _partitions(consumer: Any, topic: str) -> list:
    from kafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or [])]


def tail_topics(
    consumer: Any,
    topics: dict[str, str],
    emit: Callable[[str], None],
    words: Optional[TopicWords] = None,
    n_words: int = 5,
    follow: bool = False,
    from_beginning: bool = True,
    max_records: Optional[int] = None,
    as_json: bool = False,
    poll_ms: int = 500,
    wait_topics: bool = False,
    idle_timeout_s: float = 30.0,
    note: Callable[[str], None] = log.info,
) -> TailSummary:
    """Print the records of ``topics`` (topic name -> ``scored`` | ``dead_letters`` | ``drift``).

    Args:
        consumer: A kafka-python consumer in no group (:func:`ntm_spark.tools.kafka_client.bytes_consumer`).
        topics: What to read and how to show it.
        emit: Called with each line.
        words: Topic words for scored records.
        n_words: Words shown per topic.
        follow: Keep waiting for new records (until ``KeyboardInterrupt``, which ends it quietly).
        from_beginning: Start at the first offset (else at the end: only new records).
        max_records: Stop after this many lines.
        as_json: Print the records as compact JSON instead of the readable line.
        poll_ms: How long one poll waits.
        wait_topics: With ``follow``, wait for topics that do not exist yet instead of failing.
        idle_timeout_s: Without ``follow``, give up when nothing arrives for this long before the end offsets.
        note: Called with a status line (waiting for a topic).

    Raises:
        TailError: when a topic does not exist (and ``wait_topics`` is off).
    """
    summary = TailSummary({t: 0 for t in topics})
    try:
        existing = set(consumer.topics())
        missing = [t for t in topics if t not in existing]
        if missing and follow and wait_topics:
            note(f"waiting for topic(s) {missing} to exist (Ctrl-C to stop)")
        while missing and follow and wait_topics:
            time.sleep(1.0)
            existing = set(consumer.topics())
            missing = [t for t in topics if t not in existing]
        if missing:
            known = sorted(t for t in existing if not t.startswith("__"))
            raise TailError(f"topic(s) {missing} do not exist (topics there: {known[:20]})")
        parts = [tp for t in topics for tp in _partitions(consumer, t)]
        consumer.assign(parts)
        if from_beginning or not follow:
            consumer.seek_to_beginning(*parts)
        else:
            consumer.seek_to_end(*parts)
        end = consumer.end_offsets(parts) if not follow else {}
        remaining = {tp for tp, off in end.items() if consumer.position(tp) < off}
        last_progress = time.monotonic()
        while follow or remaining:
            batch = consumer.poll(timeout_ms=poll_ms)
            if batch:
                last_progress = time.monotonic()
            elif not follow and time.monotonic() - last_progress > idle_timeout_s:
                raise TailError(
                    f"no records arrived for {idle_timeout_s:.0f} s although {sorted(str(tp) for tp in remaining)} "
                    "had more when it started (deleted by retention?); what was read is printed above"
                )
            for tp, records in batch.items():
                for msg in records:
                    if not follow and msg.offset >= end.get(tp, 0):
                        continue
                    where = f"{tp.topic}/{tp.partition}@{msg.offset}"
                    emit(format_record(topics[tp.topic], msg.value, where, words, n_words, as_json))
                    summary.printed[tp.topic] += 1
                    if max_records is not None and summary.total >= max_records:
                        return summary
            if not follow:
                remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
    except KeyboardInterrupt:
        pass
    return summary


def read_topic_records(consumer: Any, topic: str, idle_timeout_s: float = 30.0) -> tuple[list[dict], int]:
    """Read a topic of JSON records (the drift topic) once, from the first offset to the end offsets seen at start.

    The same reading as ``ntm tail --drift`` (:func:`tail_topics`, no follow), collected instead of printed.

    Args:
        consumer: A kafka-python consumer in no group (:func:`ntm_spark.tools.kafka_client.bytes_consumer`).
        topic: The topic.
        idle_timeout_s: Give up when nothing arrives for this long before the end offsets.

    Returns:
        The JSON objects, in partition then offset order, and how many messages were not a JSON
        object (tombstones, other bytes): those are left out, never raised.

    Raises:
        TailError: when the topic does not exist or stops delivering before its end offsets.
    """
    lines: list[str] = []
    tail_topics(consumer, {topic: DRIFT}, lines.append, as_json=True, idle_timeout_s=idle_timeout_s)
    records, not_json = [], 0
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:  # format_record's "(not a JSON object)" / "(no value)" line
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
        else:
            not_json += 1
    return records, not_json
