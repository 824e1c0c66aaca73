"""Keep the streaming query alive: wait out broker outages and missing topics, restart from the checkpoint.

Spark's Kafka source gives up after a few attempts when the broker is away
(``Error in attempt 3 getting Kafka offsets ... TimeoutException``), and a query
that subscribes to a topic that does not exist yet fails with
``UnknownTopicOrPartitionException``. Either ends a plain ``query.awaitTermination()``.
The supervisor in :func:`ntm_spark.spark.stream_query.run_stream` instead:

1. before each start, asks the broker (Kafka's own ``Admin`` client in the driver JVM,
   with the stream's ``kafka.*`` settings, so TLS/SASL options apply) whether it
   answers and whether the input topics exist; while not, it waits with exponential
   backoff, logs one line per attempt and writes ``state: waiting_for_broker`` or
   ``waiting_for_topics`` to the status file (``ntm stream --status``);
2. when the query fails with a Kafka connectivity error, it goes back to 1 and then
   restarts the query from its checkpoint: nothing is lost, and a batch whose
   output write was cut off is replayed (at-least-once, keyed by document id);
3. any other failure restarts the query at most ``max_restarts`` times in a row,
   then the job exits with one line naming the error.

Nothing here imports pyspark at module level; the functions take the session.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

log = logging.getLogger(__name__)

#: Failure texts that mean "the broker (or a topic) is not reachable right now", not a bug.
BROKER_ERROR_PATTERNS = (
    r"org\.apache\.kafka\.common\.errors\.(TimeoutException|NetworkException|DisconnectException|"
    r"UnknownTopicOrPartitionException|LeaderNotAvailableException|NotLeaderOrFollowerException|"
    r"BrokerNotAvailableException|CoordinatorNotAvailableException|NotEnoughReplicasException)",
    r"Error in attempt \d+ getting Kafka offsets",
    r"Failed to send data to Kafka",
    r"Timed out waiting for a node assignment",
    r"Connection to node -?\d+ .* could not be established",
)
_BROKER_RE = re.compile("|".join(BROKER_ERROR_PATTERNS))

BROKER = "broker"
OTHER = "other"


def classify_failure(text: Optional[str]) -> str:
    """Return :data:`BROKER` when a query failure is a Kafka connectivity problem, else :data:`OTHER`."""
    return BROKER if text and _BROKER_RE.search(text) else OTHER


def first_line(text: Any, limit: int = 300) -> str:
    """Return the first meaningful line of an error text (Spark's messages carry whole stack traces)."""
    for line in str(text).splitlines():
        line = line.strip()
        if line and not line.startswith("at ") and line != "=== Streaming Query ===":
            return line[:limit]
    return str(text)[:limit]


@dataclass
class Backoff:
    """Exponential backoff: ``initial_s``, doubling, capped at ``max_s``; :meth:`reset` after a success."""

    initial_s: float = 1.0
    max_s: float = 30.0
    attempt: int = 0

    def next_delay(self) -> float:
        """Return the next delay and count the attempt."""
        delay = min(self.max_s, self.initial_s * (2 ** self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial_s``."""
        self.attempt = 0


@dataclass
class KafkaProbe:
    """What the broker said: whether it answered, and which wanted topics are missing."""

    reachable: bool
    missing_topics: tuple = ()
    error: Optional[str] = None

    @property
    def ready(self) -> bool:
        """The broker answered and every wanted topic exists."""
        return self.reachable and not self.missing_topics


def probe_kafka(spark: Any, kafka_options: dict, topics: Sequence[str] = (), timeout_s: float = 5.0) -> KafkaProbe:
    """Ask the broker for its topic list with Kafka's ``Admin`` client in the driver JVM.

    Args:
        spark: The active session (its JVM has the Kafka client the connector brings).
        kafka_options: The stream's ``kafka.*`` options (the prefix is stripped).
        topics: Topics that must exist.
        timeout_s: How long one probe may take.
    """
    jvm = spark.sparkContext._jvm
    props = jvm.java.util.Properties()
    for key, value in kafka_options.items():
        props.put(key[len("kafka."):] if key.startswith("kafka.") else key, str(value))
    ms = str(max(1000, int(timeout_s * 1000)))
    props.put("request.timeout.ms", ms)
    props.put("default.api.timeout.ms", ms)
    try:
        admin = jvm.org.apache.kafka.clients.admin.Admin.create(props)
    except Exception as err:  # noqa: BLE001 - py4j wraps every JVM error; report it, the caller retries
        return KafkaProbe(False, tuple(topics), first_line(err))
    try:
        names = set(admin.listTopics().names().get(int(ms), jvm.java.util.concurrent.TimeUnit.MILLISECONDS))
    except Exception as err:  # noqa: BLE001
        return KafkaProbe(False, tuple(topics), _cause(err))
    finally:
        try:
            admin.close(jvm.java.time.Duration.ofMillis(500))
        except Exception:  # noqa: BLE001 - closing a client of an unreachable broker may itself fail
            log.debug("closing the Kafka admin client failed", exc_info=True)
    return KafkaProbe(True, tuple(t for t in topics if t not in names))


def count_partitions(spark: Any, kafka_options: dict, topics: Sequence[str], timeout_s: float = 5.0) -> Optional[int]:
    """Return how many partitions ``topics`` have together (Kafka's ``Admin`` in the driver JVM), or ``None``.

    ``None`` when the broker does not answer or a topic does not exist (yet): the caller then
    decides nothing from it (the supervisor waits for the broker and the topics itself).
    """
    if not topics:
        return None
    jvm = spark.sparkContext._jvm
    props = jvm.java.util.Properties()
    for key, value in kafka_options.items():
        props.put(key[len("kafka."):] if key.startswith("kafka.") else key, str(value))
    ms = max(1000, int(timeout_s * 1000))
    props.put("request.timeout.ms", str(ms))
    props.put("default.api.timeout.ms", str(ms))
    names = jvm.java.util.ArrayList()
    for topic in topics:
        names.add(topic)
    try:
        admin = jvm.org.apache.kafka.clients.admin.Admin.create(props)
    except Exception:  # noqa: BLE001 - py4j wraps every JVM error; no count, the caller goes on without it
        log.debug("counting the partitions of %s: no Kafka admin client", list(topics), exc_info=True)
        return None
    try:
        described = admin.describeTopics(names).allTopicNames().get(ms, jvm.java.util.concurrent.TimeUnit.MILLISECONDS)
        return sum(int(described.get(topic).partitions().size()) for topic in topics)
    except Exception:  # noqa: BLE001 - an unreachable broker or a missing topic: no count
        log.debug("counting the partitions of %s failed", list(topics), exc_info=True)
        return None
    finally:
        try:
            admin.close(jvm.java.time.Duration.ofMillis(500))
        except Exception:  # noqa: BLE001 - closing a client of an unreachable broker may itself fail
            log.debug("closing the Kafka admin client failed", exc_info=True)


def _cause(err: Any) -> str:
    text = str(err)
    match = re.search(r"(org\.apache\.kafka\.common\.errors\.\w+: [^\n]*)", text)
    return match.group(1) if match else first_line(text)


def wait_until_ready(
    probe: Callable[[], KafkaProbe],
    bootstrap: str,
    on_wait: Callable[[dict], None],
    backoff: Backoff,
    deadline: Optional[float] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Probe until the broker answers and the topics exist; return ``False`` if ``deadline`` passes first.

    One log line per attempt says what is missing and when the next try is; ``on_wait``
    gets the same as a status dict (``state``, ``reason``, ``attempt``, ``retry_in_s``).
    """
    waited_since = time.time()
    while True:
        result = probe()
        if result.ready:
            if backoff.attempt:
                log.info("Kafka at %s is ready after %.0f s of waiting: (re)starting the query", bootstrap, time.time() - waited_since)
            backoff.reset()
            return True
        delay = backoff.next_delay()
        if not result.reachable:
            state = "waiting_for_broker"
            reason = f"the Kafka broker at {bootstrap} does not answer ({result.error})"
        else:
            state = "waiting_for_topics"
            reason = (
                f"input topic(s) {list(result.missing_topics)} do not exist on {bootstrap} yet: create them "
                f"(e.g. kafka-topics.sh --create --topic {result.missing_topics[0]}), or produce to them"
            )
        log.warning("%s; attempt %d, next check in %.1f s", reason, backoff.attempt, delay)
        on_wait({"state": state, "reason": reason, "attempt": backoff.attempt, "retry_in_s": delay,
                 "waiting_since": waited_since, "updated_at": time.time()})  # fmt: skip
        if deadline is not None and time.monotonic() + delay >= deadline:
            return False
        sleep(delay)


class StreamFailedError(RuntimeError):
    """The query failed in a way restarting did not fix; the message is one line naming the error."""


def run_supervised(
    spark: Any,
    cfg: Any,
    start_query: Callable[[], Any],
    kafka_options: dict,
    timeout: Optional[float] = None,
    max_batches: Optional[int] = None,
    write_state: Optional[Callable[[dict], None]] = None,
    poll_s: float = 0.2,
    model_moved: Optional[Callable[[], Optional[str]]] = None,
    model_check_s: float = 30.0,
) -> list:
    """Run ``start_query()`` until it ends by itself, ``timeout`` passes or ``max_batches`` complete.

    With ``cfg.supervise`` the query is restarted from its checkpoint after a Kafka connectivity
    failure once the broker answers again (however long that takes), and at most
    ``cfg.max_restarts`` times in a row after any other failure.

    Args:
        spark: The active session.
        cfg: The :class:`~ntm_spark.core.config.StreamConfig`.
        start_query: Starts the streaming query (with the checkpoint from ``cfg``) and returns it.
        kafka_options: The ``kafka.*`` options of the source (used to probe the broker).
        timeout: Seconds until the run stops (``None``: until the query ends).
        max_batches: Stop after this many micro-batches with input rows, over all restarts.
        write_state: Called with a status dict while waiting (``state: waiting_for_broker`` ...).
        poll_s: How often the driver checks the query.
        model_moved: Called every ``model_check_s``: a reason when the model the query scores with is
            no longer the one its reference names (real-time mode's JVM scorer resolves an alias once
            per query), else ``None``. The query is then stopped and started again from its checkpoint
            (at-least-once: the records of the cut batch may be written twice, keyed by id).
        model_check_s: How often ``model_moved`` is called.

    Returns:
        Every ``StreamingQueryProgress`` of every query started, in order.

    Raises:
        StreamFailedError: a failure that is not a Kafka outage, more than ``max_restarts`` times in a row
            (or at all without ``supervise``).
    """
    from pyspark.errors import StreamingQueryException

    write_state = write_state or (lambda _state: None)
    deadline = None if timeout is None else time.monotonic() + timeout
    topics = [t.strip() for t in (cfg.input_topics or "").split(",") if t.strip()]
    backoff = Backoff(cfg.restart_backoff_initial_s, cfg.restart_backoff_max_s)
    progresses: list = []
    other_failures = 0
    while True:
        if cfg.supervise:
            ready = wait_until_ready(
                lambda: probe_kafka(spark, kafka_options, topics, cfg.broker_probe_timeout_s),
                cfg.bootstrap_servers,
                write_state,
                backoff,
                deadline,
            )
            if not ready:
                return progresses
        query = start_query()
        done_before = sum(1 for p in progresses if p.numInputRows > 0)
        stopped_by_us = False
        swap_reason = None
        next_model_check = time.monotonic() + model_check_s
        try:
            while query.isActive:
                if deadline is not None and time.monotonic() >= deadline:
                    stopped_by_us = True
                    break
                if model_moved is not None and time.monotonic() >= next_model_check:
                    next_model_check = time.monotonic() + model_check_s
                    swap_reason = model_moved()
                    if swap_reason:
                        break
                if max_batches is not None:
                    now = sum(1 for p in query.recentProgress if p.numInputRows > 0)
                    if done_before + now >= max_batches:
                        stopped_by_us = True
                        break
                try:
                    query.awaitTermination(poll_s)
                except StreamingQueryException:
                    break  # the failure is read from query.exception() below
            error = query.exception()
        finally:
            query.stop()
            progresses.extend(query.recentProgress)
        if swap_reason and error is None:
            log.info("%s: restarting the query from its checkpoint with the new version", swap_reason)
            write_state({"state": "swapping_model", "reason": swap_reason, "updated_at": time.time()})
            continue
        if stopped_by_us or error is None:
            return progresses
        text = str(error)
        kind = classify_failure(text)
        if not cfg.supervise:
            raise StreamFailedError(f"the streaming query failed: {first_line(text)}")
        if kind == BROKER:
            other_failures = 0
            log.warning("the streaming query lost Kafka (%s): waiting for the broker, then restarting from the checkpoint", first_line(text))
            write_state({"state": "waiting_for_broker", "reason": first_line(text), "updated_at": time.time()})
            continue
        other_failures += 1
        if other_failures > cfg.max_restarts:
            raise StreamFailedError(
                f"the streaming query failed {other_failures} times in a row (stream.max_restarts={cfg.max_restarts}); "
                f"last error: {first_line(text)}"
            )
        delay = backoff.next_delay()
        log.error("the streaming query failed (%s): restart %d of %d in %.0f s", first_line(text), other_failures, cfg.max_restarts, delay)
        write_state({"state": "restarting", "reason": first_line(text), "attempt": other_failures, "updated_at": time.time()})
        if deadline is not None and time.monotonic() + delay >= deadline:
            return progresses
        time.sleep(delay)
